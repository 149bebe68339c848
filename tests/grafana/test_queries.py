"""Every dashboard, variable, annotation and alert-rule query, expanded as Grafana does, against the lab's
real InfluxDB filled by a real agent run (fleet_data.SCHEDULE); the numbers must match what was injected."""
from __future__ import annotations

import json
import os
import re

import pytest
import yaml

from tests.grafana import grafana_sim as g
from tests.grafana.fleet_data import (
    BOXES,
    EXAMPLE_WINDOW,
    FAIL_CYCLES,
    INTERVAL_S,
    KINDS,
    LAYERS,
    SEGMENT,
    SITE,
    SLACK_S,
    TIMEOUT_S,
    FleetData,
    Span,
)
from tests.grafana.influxql import QueryError, by_tag, rows, run, single

GRAFANA = os.path.join(os.path.dirname(__file__), "..", "..", "grafana")
MIN_INTERVAL_MS = 10_000  # datasource jsonData.timeInterval
UNEXPANDED = re.compile(r"\$\{?\w")


def load_dashboard(name: str) -> dict:
    with open(os.path.join(GRAFANA, "dashboards", name)) as f:
        return json.load(f)


def load_rules() -> list[dict]:
    with open(os.path.join(GRAFANA, "provisioning", "alerting", "vobox-rules.yaml")) as f:
        doc = yaml.safe_load(f)
    return [r for group in doc["groups"] for r in group["rules"]]


FLEET = load_dashboard("fleet-stability.json")
BOX = load_dashboard("box-detail.json")


def panel_targets(dash: dict):
    """(panel title, refId, query text, maxDataPoints) of every query panel."""
    for p in dash["panels"]:
        for t in p.get("targets", []):
            yield p["title"], t["refId"], t["query"], p.get("maxDataPoints", 1000)


def annotation_queries(dash: dict):
    for a in dash["annotations"]["list"]:
        if a.get("builtIn"):
            continue
        yield a["name"], a["target"]["query"]


def variables_for(dash: dict, scenario: dict[str, object]) -> dict[str, g.Variable]:
    """Variables as in the dashboard, with current values from `scenario` (default: dashboard default).

    The hidden constant `cycle_s` is the run's interval (2 s), as an operator would set AGENT_INTERVAL_S
    in grafana/generate.py for an agent with that interval; the committed files say 10."""
    out = {}
    for v in dash["templating"]["list"]:
        if v["type"] == "datasource":
            continue  # picks the InfluxDB; never inside a query
        if v["type"] == "constant":
            assert v["name"] == "cycle_s", f"unexpected constant {v['name']}"
            out[v["name"]] = g.Variable(v["name"], f"{INTERVAL_S:g}")
            continue
        current = scenario.get(v["name"], g.ALL if v.get("includeAll") else None)
        assert current is not None, f"scenario must set {v['name']}"
        out[v["name"]] = g.Variable(v["name"], current, multi=v["multi"], include_all=v["includeAll"],
                                    all_value=v.get("allValue"), options=options_of(v["name"]))
    return out


def options_of(name: str) -> list[str]:
    return {"site": [SITE], "kind": list(KINDS), "box": sorted(BOXES)}[name]


FLEET_SCENARIOS = {
    "all": {},
    "multi-explicit": {"site": [SITE], "kind": list(KINDS), "box": sorted(BOXES)},
}


def expand(dash, query, fleet: FleetData, scenario, from_ms=None, to_ms=None, mdp=1000):
    return g.expand(query, variables_for(dash, scenario), from_ms or fleet.start_ms, to_ms or fleet.end_ms,
                    max_data_points=mdp, min_interval_ms=MIN_INTERVAL_MS)


def nonempty(series: list[dict], what: str) -> None:
    assert series, f"{what}: no series"
    values = [v for s in series for r in s["values"] for v in r[1:] if v is not None]
    assert values, f"{what}: only nulls"


def expected_empty(fleet: FleetData, title: str, box: str) -> bool:
    """Box-detail panels that must be empty for a box because the run gave it nothing of the kind."""
    t = fleet.truth
    return {"Container events": box not in t.container_events,
            "MAC changes": box not in {m[0] for m in t.mac_changes},
            "Remediations": box not in {r.box for r in t.remediations if not r.dry_run},  # dry runs left out
            "Remediations list": box not in {r.box for r in t.remediations},
            "Isolation audit": BOXES[box] == "vm"}.get(title, False)   # the audit is of containers only


def in_span(value, span: Span, what: str) -> None:
    assert value in span, f"{what}: {value!r} not in [{span.lo:.3f}, {span.hi:.3f}]"


# ----------------------------------------------------------------------------- every query runs

# "run": the range is the run; "default": the dashboard's own default range (now-7d / now-24h) ending
# after the run, so $__interval is what Grafana picks there (minutes, not the 10 s minimum).
RANGES = ("run", "default")
FLEET_CASES = [pytest.param(t, r, q, m, s, rng, id=f"{t}/{r}/{s}/{rng}")
               for (t, r, q, m) in panel_targets(FLEET) for s in FLEET_SCENARIOS for rng in RANGES]
BOX_CASES = [pytest.param(t, r, q, m, b, rng, id=f"{t}/{r}/{b}/{rng}")
             for (t, r, q, m) in panel_targets(BOX) for b in sorted(BOXES) for rng in RANGES]


def range_ms(dash: dict, fleet: FleetData, rng: str) -> tuple[int, int]:
    """(from, to) of a range scenario."""
    if rng == "run":
        return fleet.start_ms, fleet.end_ms
    assert dash["time"]["to"] == "now" and dash["time"]["from"].startswith("now-"), dash["time"]
    return fleet.end_ms - g.parse_duration_ms(dash["time"]["from"][4:]), fleet.end_ms


@pytest.mark.parametrize("title,ref,query,mdp,scenario,rng", FLEET_CASES)
def test_fleet_panel_query_returns_data(fleet_data, title, ref, query, mdp, scenario, rng):
    lo, hi = range_ms(FLEET, fleet_data, rng)
    q = expand(FLEET, query, fleet_data, FLEET_SCENARIOS[scenario], from_ms=lo, to_ms=hi, mdp=mdp)
    assert not UNEXPANDED.search(q), f"unexpanded macro or variable in {q!r}"
    if title.startswith("Certificates and proxies"):
        # the fleet run has no tls probe and no x509 check: the query runs, and is empty
        assert not [v for s in run(fleet_data, q) for r in s["values"] for v in r[1:] if v is not None], q
        return
    if title == "Freezes by layer" and ref.lower() not in {f.layer for f in fleet_data.truth.freezes}:
        # a layer the run never froze at (l7: the fleet has no service probe): the query runs, empty
        assert not [v for s in run(fleet_data, q) for r in s["values"] for v in r[1:] if v], q
        return
    nonempty(run(fleet_data, q), f"{title} {ref}: {q}")


@pytest.mark.parametrize("title,ref,query,mdp,box,rng", BOX_CASES)
def test_box_panel_query_returns_data(fleet_data, title, ref, query, mdp, box, rng):
    lo, hi = range_ms(BOX, fleet_data, rng)
    q = expand(BOX, query, fleet_data, {"box": box}, from_ms=lo, to_ms=hi, mdp=mdp)
    assert not UNEXPANDED.search(q), f"unexpanded macro or variable in {q!r}"
    series = run(fleet_data, q)
    if expected_empty(fleet_data, title, box):
        assert series == [], f"{title} for {box}: the run gave it nothing, got {series}"  # it still ran
        return
    nonempty(series, f"{title} {ref} [{box}]: {q}")


def test_every_box_panel_has_data_for_some_box(fleet_data):
    """No box-detail panel is checked only as 'empty': the run fills each one for at least one box."""
    for title, _, _, _ in panel_targets(BOX):
        assert any(not expected_empty(fleet_data, title, b) for b in BOXES), title


@pytest.mark.parametrize("dash", [FLEET, BOX], ids=["fleet", "box"])
def test_annotation_queries(fleet_data, dash):
    for name, query in annotation_queries(dash):
        scenario = {} if dash is FLEET else {"box": "ctr1"}
        q = expand(dash, query, fleet_data, scenario)
        if name == "Privilege changes":
            # The fleet run's boxes keep their privileges; tests/agent/test_audit_influx_lab.py runs this query on
            # a run where a box gains one and checks what it finds.
            assert run(fleet_data, q) == [], f"annotation {name}: {q}"
            continue
        if name == "Maintenance":
            # The fleet run has no maintenance window; tests/agent/test_maintenance_windows_lab.py runs this query
            # on a run that has one and checks what it finds.
            assert run(fleet_data, q) == [], f"annotation {name}: {q}"
            continue
        nonempty(run(fleet_data, q), f"annotation {name}: {q}")


@pytest.mark.parametrize("dash", [FLEET, BOX], ids=["fleet", "box"])
def test_variable_queries(fleet_data, dash):
    """SHOW TAG VALUES queries (with the chained $site/$kind) list the right values."""
    found = {}
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = g.interpolate_variables(v["query"], variables_for(dash, {"box": "ctr1"}))
        found[v["name"]] = sorted(r["value"] for s in run(fleet_data, q) for r in rows(s))
    assert found == {"site": [SITE], "kind": list(KINDS), "box": sorted(BOXES)}
    q = g.interpolate_variables(next(v["query"] for v in dash["templating"]["list"] if v["name"] == "box"),
                                variables_for(dash, {"kind": ["vm"], "box": "ctr1"}))
    assert sorted(r["value"] for s in run(fleet_data, q) for r in rows(s)) == ["vm1"]


def test_broken_query_is_caught(fleet_data):
    """The harness fails on an InfluxQL error (a test that cannot fail is a defect)."""
    with pytest.raises(QueryError):
        run(fleet_data, 'SELECT mean("up") FROM "box" WHERE time >= 0ms GROUP BY time(')


# ----------------------------------------------------------------------------- the numbers

def fleet_query(fleet, title, ref="A", scenario="all", **kw):
    query = next(q for (t, r, q, _) in panel_targets(FLEET) if t == title and r == ref)
    return run(fleet, expand(FLEET, query, fleet, FLEET_SCENARIOS[scenario] if isinstance(scenario, str) else scenario, **kw))


def box_query(fleet, title, box, ref="A", **kw):
    query = next(q for (t, r, q, _) in panel_targets(BOX) if t == title and r == ref)
    return run(fleet, expand(BOX, query, fleet, {"box": box}, **kw))


def test_the_run_has_every_cycle(fleet_data):
    """One `box` point per box and one `agent` point per cycle, as many cycles as the run lasted."""
    t = fleet_data.truth
    assert t.cycles == pytest.approx((t.last_cycle_s - t.first_cycle_s) / INTERVAL_S + 1, abs=0.2)
    (agent,) = run(fleet_data, f'SELECT count("cycle_s") FROM "agent" WHERE time >= {fleet_data.start_ms}ms')
    assert rows(agent)[0]["count"] == t.cycles
    counts = {s["tags"]["box"]: rows(s)[0]["count"]
              for s in run(fleet_data, 'SELECT count("up") FROM "box" GROUP BY "box"')}
    assert counts == {b: t.cycles for b in BOXES}


def test_availability_per_kind_and_box(fleet_data):
    t = fleet_data.truth
    kind = by_tag(fleet_query(fleet_data, "Availability per kind"), "kind", "availability")
    assert sorted(kind) == list(KINDS)
    for k, value in kind.items():
        in_span(value, t.availability(kind=k), f"availability of {k}")
    per_box = {s["tags"]["box"]: rows(s)[0]["availability"] for s in fleet_query(fleet_data, "Availability per box")}
    assert sorted(per_box) == sorted(BOXES)
    for b, value in per_box.items():
        in_span(value, t.availability(box=b), f"availability of {b}")
        # the box-detail stat says the same
        assert single(box_query(fleet_data, "Availability", b), "availability") == pytest.approx(value)


def test_box_frozen_20s_of_120s_is_83_percent(fleet_data):
    """The issue's example: ctr1 frozen 20 s (ctr1-l4) in a 120 s window: about 83 %."""
    box, lo_s, hi_s = EXAMPLE_WINDOW
    t = fleet_data.truth
    lo, hi = t.first_cycle_s + lo_s, t.first_cycle_s + hi_s
    assert hi <= t.last_cycle_s + INTERVAL_S, "the window must lie inside the run"
    assert [f.fault for f in t.freezes_of(box=box) if f.start_s.lo < hi and f.end_s.hi > lo] == ["ctr1-l4"]
    frozen = t.frozen_s(box=box, within=(lo, hi))
    expected = Span(100 * (1 - frozen.hi / 120), 100 * (1 - frozen.lo / 120))
    assert 100 * 100 / 120 in expected  # the nominal 20 s of 120 s
    value = single(box_query(fleet_data, "Availability", box, from_ms=fleet_data.ms(lo), to_ms=fleet_data.ms(hi) - 1),
                   "availability")
    in_span(value, expected, "ctr1 availability over 120 s")
    assert value == pytest.approx(83.3, abs=5)


def test_filter_by_kind(fleet_data):
    series = fleet_query(fleet_data, "Availability per box", scenario={"kind": ["vm"]})
    assert sorted(s["tags"]["box"] for s in series) == ["vm1"]
    series = fleet_query(fleet_data, "Availability per box", scenario={"box": ["ctr2"]})
    assert sorted(s["tags"]["box"] for s in series) == ["ctr2"]


def test_freeze_counts_time_mttr(fleet_data):
    t = fleet_data.truth
    assert by_tag(fleet_query(fleet_data, "Freezes"), "kind", "freezes") == \
        {k: len(t.freezes_of(kind=k)) for k in KINDS} == {"container": 5, "vm": 3}
    frozen = by_tag(fleet_query(fleet_data, "Total frozen time"), "kind", "frozen_s")
    assert sorted(frozen) == list(KINDS)
    for k in KINDS:
        in_span(frozen[k], t.frozen_s(kind=k), f"total frozen time of {k}")
    mttr = by_tag(fleet_query(fleet_data, "MTTR"), "kind", "mttr_s")
    assert sorted(mttr) == list(KINDS)
    for k in KINDS:
        in_span(mttr[k], t.mttr_s(k), f"MTTR of {k}")
    for b in BOXES:
        assert single(box_query(fleet_data, "Freezes", b), "freezes") == len(t.freezes_of(box=b))
        closed = [f.frozen_s for f in t.freezes_of(box=b) if not f.open]
        in_span(single(box_query(fleet_data, "MTTR", b), "mttr_s"),
                Span(sum(s.lo for s in closed) / len(closed), sum(s.hi for s in closed) / len(closed)), f"MTTR of {b}")


def test_mtbf_with_its_transformation(fleet_data):
    """Queries A and B, then the panel's merge + calculateField(uptime_s / freezes)."""
    t = fleet_data.truth
    up = by_tag(fleet_query(fleet_data, "MTBF", "A"), "kind", "uptime_s")
    n = by_tag(fleet_query(fleet_data, "MTBF", "B"), "kind", "freezes")
    panel = next(p for p in FLEET["panels"] if p["title"] == "MTBF")
    calc = next(tr for tr in panel["transformations"] if tr["id"] == "calculateField")["options"]["binary"]
    assert (calc["left"], calc["operator"], calc["right"]) == ("uptime_s", "/", "freezes")
    assert sorted(up) == sorted(n) == list(KINDS)
    for k in KINDS:
        in_span(up[k] / n[k], t.mtbf_s(k), f"MTBF of {k}")


def test_freezes_by_layer(fleet_data):
    t = fleet_data.truth
    got, want = {}, {}
    for layer in LAYERS:
        for kind, n in by_tag(fleet_query(fleet_data, "Freezes by layer", layer.upper()), "kind", layer).items():
            got[(layer, kind)] = n
    for f in t.freezes:
        want[(f.layer, f.kind)] = want.get((f.layer, f.kind), 0) + 1
    assert got == want == {("l2", "container"): 3, ("l3", "container"): 1, ("l4", "container"): 1,
                           ("l2", "vm"): 2, ("l3", "vm"): 1}


def match_freezes(fleet, table: list[dict]) -> list[tuple[dict, object]]:
    """Pair each freeze row with the expected freeze of its box whose start span holds it; all must pair."""
    t = fleet.truth
    pairs, left = [], list(t.freezes)
    for r in sorted(table, key=lambda r: r["time"]):
        start_s = r["time"] / 1000
        cand = [f for f in left if f.box == r["box"] and start_s in f.start_s]
        assert len(cand) == 1, f"freeze row {r} matches {len(cand)} expected freezes of {r['box']}"
        left.remove(cand[0])
        pairs.append((r, cand[0]))
    assert not left, f"no freeze row for {[(f.fault, f.box) for f in left]}"
    return pairs


def test_freeze_table_lists_each_freeze_with_its_layer(fleet_data):
    (series,) = fleet_query(fleet_data, "Freezes list")
    table = rows(series)
    assert [r["time"] for r in table] == sorted((r["time"] for r in table), reverse=True)  # ORDER BY time DESC
    for r, f in match_freezes(fleet_data, table):
        assert (r["kind"], r["layer"], r["open"]) == (f.kind, f.layer, int(f.open)), f.fault
        if f.open:
            # rewritten every cycle while open: its duration is "so far", from its start to the last cycle
            in_span(r["duration_s"], Span(f.end_s.lo - f.start_s.hi, f.end_s.hi - f.start_s.lo),
                    f"{f.fault} duration so far")
        else:
            in_span(r["duration_s"], f.frozen_s, f"{f.fault} duration")
        ev = r["evidence"]
        assert ev and ev.startswith(os.path.join(fleet_data.state_dir, "evidence", f.box)) and os.path.isdir(ev), ev


def test_remediated_freeze_lasted_about_its_detection(fleet_data):
    """vm1's l3 freeze was ended by the agent's own command: it lasted about fail_cycles cycles, not its 20 s."""
    t = fleet_data.truth
    (series,) = fleet_query(fleet_data, "Freezes list")
    (r, f), = [(r, f) for r, f in match_freezes(fleet_data, rows(series)) if f.fault == "vm1-l3-remediated"]
    assert r["duration_s"] <= (FAIL_CYCLES + 1) * INTERVAL_S + SLACK_S < 20
    rem = [x for s in box_query(fleet_data, "Remediations list", "vm1") for x in rows(s) if x["recovered"] == 1]
    assert len(rem) == 1
    on, off = t.applied["vm1-l3-remediated"]
    # the command ran after detection (fast confirmation: passes start confirm_interval apart from the first
    # failing cycle, each failing one lasting the timeout) and before the drop table was seen gone
    from agent.core.config import FreezeConfig
    confirm_s = FreezeConfig().confirm_interval_s
    detected_s = r["time"] / 1000 + (FAIL_CYCLES - 1) * min(INTERVAL_S, max(confirm_s, TIMEOUT_S)) + TIMEOUT_S
    assert detected_s <= rem[0]["time"] / 1000 + 1e-3
    assert rem[0]["time"] / 1000 <= off.hi_s


def test_remediation_counts_and_success(fleet_data):
    t = fleet_data.truth
    real = [r for r in t.remediations if not r.dry_run]
    want_n = {a: sum(1 for r in real if r.action == a) for a in {r.action for r in real}}
    want_ok = {a: 100 * sum(r.recovered for r in real if r.action == a) / n for a, n in want_n.items()}
    assert by_tag(fleet_query(fleet_data, "Remediations"), "action", "actions") == want_n == {"command": 3}
    assert by_tag(fleet_query(fleet_data, "Remediation success rate"), "action", "success") == \
        pytest.approx(want_ok) == {"command": 100 / 3}
    assert by_tag(fleet_query(fleet_data, "Remediations by trigger"), "trigger", "actions") == \
        {"auto": len(real)} == {"auto": 3}  # dry runs left out, as in every remediation count


def test_state_timeline_marks_the_open_freeze(fleet_data):
    series = fleet_query(fleet_data, "Up/down per box", from_ms=fleet_data.end_ms - 120_000)
    last = {s["tags"]["box"]: [r for r in rows(s) if r["min"] is not None][-1]["min"] for s in series}
    sure, maybe = fleet_data.truth.frozen_at(fleet_data.truth.last_cycle_s)
    assert not maybe and sure == {"ctr2"}
    assert last == {b: (0 if b in sure else 1) for b in BOXES}


def test_box_detail_probe_panels(fleet_data):
    """RTT per probe kind and loss: during ctr1's l4 freeze only tcp (both ports, IPv4 and IPv6) is lost."""
    on, off = fleet_data.truth.applied["ctr1-l4"]
    lo, hi = fleet_data.ms(on.hi_s + TIMEOUT_S), fleet_data.ms(off.lo_s)
    loss: dict[tuple[str, str], set] = {}
    for s in box_query(fleet_data, "Loss per probe", "ctr1", from_ms=lo, to_ms=hi, mdp=1):
        values = {r["mean"] for r in rows(s) if r["mean"] is not None}
        loss[(s["tags"]["probe"], s["tags"].get("port", ""))] = values
    # `docker`: the container's state as a pseudo probe (issue 12): running through a port fault, never lost
    assert loss == {("icmp", ""): {0}, ("arp", ""): {0}, ("icmp6", ""): {0}, ("ndp", ""): {0},
                    ("tcp", "1093"): {100}, ("tcp", "8084"): {100}, ("docker", ""): {0}}
    rtt = box_query(fleet_data, "RTT per probe", "ctr1")
    assert {s["tags"]["probe"] for s in rtt} == {"icmp", "arp", "tcp", "icmp6", "ndp"}
    # outside every freeze nothing is lost: the last 10 s before ctr1's first fault
    first = fleet_data.truth.first_cycle_s
    quiet = box_query(fleet_data, "Loss per probe", "vm1", from_ms=fleet_data.ms(first + 17),
                      to_ms=fleet_data.ms(first + 24), mdp=1)
    assert {r["mean"] for s in quiet for r in rows(s) if r["mean"] is not None} == {0}


def test_box_detail_tables(fleet_data):
    t = fleet_data.truth
    for b, events in t.container_events.items():
        got = [r["event"] for s in box_query(fleet_data, "Container events", b) for r in rows(s)]
        assert got == list(reversed(events)), b  # newest first
    # ctr1's l4 is the lab's real port fault (no Docker event); ctr2's l2 is a network disconnect
    assert t.container_events == {"ctr2": ("network_disconnect", "network_connect")}
    (mac,) = box_query(fleet_data, "MAC changes", "ctr1")
    got = sorted((r["address"], r["old"], r["new"]) for r in rows(mac))
    assert got == sorted((a, old, new) for _, a, old, new, _ in t.mac_changes)
    assert len(got) == 4
    for r in rows(mac):
        when = next(w for _, a, old, new, w in t.mac_changes if (a, old, new) == (r["address"], r["old"], r["new"]))
        in_span(r["time"] / 1000, Span(when.lo_s, when.hi_s + INTERVAL_S + SLACK_S), f"MAC change of {r['address']}")
    for b in ("ctr2", "vm1"):
        got = sorted((r["time"], r["action"], r["trigger"], r["ok"], r["recovered"], r["dry_run"])
                     for s in box_query(fleet_data, "Remediations list", b) for r in rows(s))
        # a dry run did nothing: no ok/recovered (outcome dry_run), as for every decision that ran no action
        want = [(x.action, "auto", None if x.dry_run else int(x.ok), None if x.dry_run else int(x.recovered),
                 int(x.dry_run)) for x in t.remediations if x.box == b]
        assert [g_[1:] for g_ in got] == want, b
        ran = [w for w in want if not w[4]]   # the Remediations panel leaves dry runs out, as every count does
        if ran:
            assert single(box_query(fleet_data, "Remediations", b), "actions") == len(ran)
        else:
            assert box_query(fleet_data, "Remediations", b) == [], b
    state = box_query(fleet_data, "State", "ctr2", from_ms=fleet_data.end_ms - 60_000)
    assert [r for r in rows(state[0]) if r["state"] is not None][-1]["state"] == "frozen"
    layer = box_query(fleet_data, "State", "ctr2", ref="B", from_ms=fleet_data.end_ms - 60_000)
    assert [r for r in rows(layer[0]) if r["layer"] is not None][-1]["layer"] == "l3"


def test_segment_freeze_annotation(fleet_data):
    seg = fleet_data.truth.segment
    name, query = next((n, q) for n, q in annotation_queries(FLEET) if n == "Segment freezes")
    (series,) = run(fleet_data, expand(FLEET, query, fleet_data, {}))
    (r,) = rows(series)
    assert (r["boxes"], r["layer"], r["open"]) == (len(BOXES), "l2", 0)
    in_span(r["time"] / 1000, seg.start_s, "segment freeze start")
    in_span(r["duration_s"], seg.frozen_s, "segment freeze duration")


# ----------------------------------------------------------------------------- alert rules

RULES = {r["uid"]: r for r in load_rules()}


def evaluate(rule: dict, fleet: FleetData, now_ms: int) -> dict:
    """Evaluate a provisioned rule like Grafana: InfluxQL node(s), reduce, threshold.

    Returns {frozenset(labels.items()): firing bool}, or {"NoData": ...} when the query had no series.
    """
    nodes = {d["refId"]: d for d in rule["data"]}
    series_by_ref = {}
    for ref, d in nodes.items():
        if d["datasourceUid"] == "__expr__":
            continue
        rt = d["relativeTimeRange"]
        q = g.expand_alert_query(d["model"], rt["from"], rt["to"], now_ms)
        assert not UNEXPANDED.search(q), q
        series_by_ref[ref] = run(fleet, q)
    (ref_a, series), = series_by_ref.items()
    if not series:
        return {"NoData": rule["noDataState"] == "Alerting"}
    reduce_node = next(d["model"] for d in nodes.values() if d["model"].get("type") == "reduce")
    thresh_node = next(d["model"] for d in nodes.values() if d["model"].get("type") == "threshold")
    assert reduce_node["expression"] == ref_a and thresh_node["expression"] == reduce_node["refId"]
    assert rule["condition"] == thresh_node["refId"]
    ev = thresh_node["conditions"][0]["evaluator"]
    out = {}
    for s in series:
        values = [r[1] for r in s["values"] if r[1] is not None]
        value = values[-1] if reduce_node["reducer"] == "last" else None
        fire = {"lt": value < ev["params"][0], "gt": value > ev["params"][0]}[ev["type"]]
        out[frozenset(s.get("tags", {}).items())] = fire
    return out


def firing_boxes(fleet, now_s: float) -> tuple[set[str], set[str]]:
    """What the frozen rule must say at now_s: (sure, unsure) from the last cycle, which is < 1 cycle old."""
    t = fleet.truth
    sure_a, maybe_a = t.frozen_at(now_s - INTERVAL_S - SLACK_S)
    sure_b, maybe_b = t.frozen_at(now_s)
    sure = sure_a & sure_b
    return sure, (sure_a | sure_b | maybe_a | maybe_b) - sure


def test_box_frozen_rule_fires_for_the_frozen_box_with_box_label(fleet_data):
    result = evaluate(RULES["vobox-box-frozen"], fleet_data, fleet_data.end_ms)
    firing = {dict(k)["box"] for k, v in result.items() if v}
    sure, maybe = firing_boxes(fleet_data, fleet_data.end_ms / 1000)
    assert not maybe and firing == sure == {"ctr2"}
    assert {dict(k)["box"] for k in result} == set(BOXES)
    for labels in result:
        assert dict(labels).keys() >= {"box", "kind", "site"}
        assert dict(labels)["kind"] == BOXES[dict(labels)["box"]]


@pytest.mark.parametrize("fault,offset_s,want", [("ctr1-l4", 10, {"ctr1"}), ("vm1-l2", 8, {"vm1"}),
                                                  ("vm1-l2", -11, set())])
def test_box_frozen_rule_during_and_between_freezes(fleet_data, fault, offset_s, want):
    """Inside a freeze only that box fires; between freezes (11 s before vm1-l2: all up) none does."""
    on, _ = fleet_data.truth.applied[fault]
    now_s = on.lo_s + offset_s
    sure, maybe = firing_boxes(fleet_data, now_s)
    assert not maybe and sure == want, (sure, maybe)
    result = evaluate(RULES["vobox-box-frozen"], fleet_data, fleet_data.ms(now_s))
    assert {dict(k)["box"] for k, v in result.items() if v} == want
    assert {dict(k)["box"] for k in result} == set(BOXES)


def test_agent_silent_rule(fleet_data):
    rule = RULES["vobox-agent-silent"]
    assert evaluate(rule, fleet_data, fleet_data.end_ms) == {frozenset(): False}
    # the window (3 cycles of the committed 10 s = 30 s) after the last agent point holds nothing: NoData alerts
    (agent,) = run(fleet_data, 'SELECT last("cycle_s") FROM "agent"')
    last_agent_ms = rows(agent)[0]["time"]  # the point's own ms (the cycle time rounded, not truncated)
    assert abs(last_agent_ms - fleet_data.truth.last_cycle_s * 1000) <= 1
    assert evaluate(rule, fleet_data, last_agent_ms + 30_001) == {"NoData": True}
    assert evaluate(rule, fleet_data, last_agent_ms + 29_000) == {frozenset(): False}


def test_segment_held_rule_runs_and_is_quiet_once_the_segment_freeze_closed(fleet_data):
    """The run's one segment freeze (10 s) closed: the rule's query finds it and nothing fires (issue 26)."""
    result = evaluate(RULES["vobox-segment-held"], fleet_data, fleet_data.end_ms)
    assert result == {frozenset({("segment", SEGMENT), ("site", SITE)}): False}, result
