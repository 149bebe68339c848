"""Every dashboard, variable, annotation and alert-rule query, expanded as Grafana does, against a real InfluxDB."""
from __future__ import annotations

import json
import os
import re

import pytest

from tests.grafana import grafana_sim as g
from tests.grafana.fleet_data import BOXES, FREEZES, SITE, FleetData
from tests.grafana.influxql import QueryError, by_tag, rows, run, single

GRAFANA = os.path.join(os.path.dirname(__file__), "..", "..", "grafana")
MIN_INTERVAL_MS = 10_000  # datasource jsonData.timeInterval
UNEXPANDED = re.compile(r"\$\{?\w")


def load_dashboard(name: str) -> dict:
    with open(os.path.join(GRAFANA, "dashboards", name)) as f:
        return json.load(f)


def load_rules() -> list[dict]:
    with open(os.path.join(GRAFANA, "provisioning", "alerting", "vobox-rules.yaml")) as f:
        doc = g.parse_yaml(f.read(), "vobox-rules.yaml")
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
    """Variables as in the dashboard, with current values from `scenario` (default: dashboard default)."""
    out = {}
    for v in dash["templating"]["list"]:
        if v["type"] == "constant":
            out[v["name"]] = g.Variable(v["name"], v["query"])
            continue
        current = scenario.get(v["name"], g.ALL if v.get("includeAll") else None)
        assert current is not None, f"scenario must set {v['name']}"
        out[v["name"]] = g.Variable(v["name"], current, multi=v["multi"], include_all=v["includeAll"],
                                    all_value=v.get("allValue"), options=options_of(v["name"]))
    return out


def options_of(name: str) -> list[str]:
    return {"site": [SITE], "kind": sorted(set(BOXES.values())), "box": sorted(BOXES)}[name]


FLEET_SCENARIOS = {
    "all": {},
    "multi-explicit": {"site": [SITE], "kind": ["container", "vm"], "box": sorted(BOXES)},
}
BOX_SCENARIOS = {b: {"box": b} for b in ("ctr-1", "vm-2")}


def expand(dash, query, fleet: FleetData, scenario, from_ms=None, to_ms=None, mdp=1000):
    return g.expand(query, variables_for(dash, scenario), from_ms or fleet.start_ms, to_ms or fleet.end_ms,
                    max_data_points=mdp, min_interval_ms=MIN_INTERVAL_MS)


def nonempty(series: list[dict], what: str) -> None:
    assert series, f"{what}: no series"
    values = [v for s in series for r in s["values"] for v in r[1:] if v is not None]
    assert values, f"{what}: only nulls"


# ----------------------------------------------------------------------------- every query runs

FLEET_CASES = [pytest.param(t, r, q, m, s, id=f"{t}/{r}/{s}")
               for (t, r, q, m) in panel_targets(FLEET) for s in FLEET_SCENARIOS]
BOX_CASES = [pytest.param(t, r, q, m, b, id=f"{t}/{r}/{b}")
             for (t, r, q, m) in panel_targets(BOX) for b in BOX_SCENARIOS]


@pytest.mark.parametrize("title,ref,query,mdp,scenario", FLEET_CASES)
def test_fleet_panel_query_returns_data(fleet_data, title, ref, query, mdp, scenario):
    q = expand(FLEET, query, fleet_data, FLEET_SCENARIOS[scenario], mdp=mdp)
    assert not UNEXPANDED.search(q), f"unexpanded macro or variable in {q!r}"
    nonempty(run(fleet_data, q), f"{title} {ref}: {q}")


@pytest.mark.parametrize("title,ref,query,mdp,box", BOX_CASES)
def test_box_panel_query_returns_data(fleet_data, title, ref, query, mdp, box):
    q = expand(BOX, query, fleet_data, BOX_SCENARIOS[box], mdp=mdp)
    assert not UNEXPANDED.search(q), f"unexpanded macro or variable in {q!r}"
    series = run(fleet_data, q)
    if title in ("Container events", "MAC changes") and BOXES[box] == "vm":
        assert series == [], f"{title} for VM {box} should be empty"  # the query still ran without error
        return
    nonempty(series, f"{title} {ref} [{box}]: {q}")


@pytest.mark.parametrize("dash", [FLEET, BOX], ids=["fleet", "box"])
def test_annotation_queries(fleet_data, dash):
    for name, query in annotation_queries(dash):
        scenario = {} if dash is FLEET else {"box": "ctr-1"}
        q = expand(dash, query, fleet_data, scenario)
        nonempty(run(fleet_data, q), f"annotation {name}: {q}")


@pytest.mark.parametrize("dash", [FLEET, BOX], ids=["fleet", "box"])
def test_variable_queries(fleet_data, dash):
    """SHOW TAG VALUES queries (with the chained $site/$kind) list the right values."""
    found = {}
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        q = g.interpolate_variables(v["query"], variables_for(dash, {"box": "ctr-1"}))
        found[v["name"]] = sorted(r["value"] for s in run(fleet_data, q) for r in rows(s))
    assert found == {"site": [SITE], "kind": ["container", "vm"], "box": sorted(BOXES)}
    q = g.interpolate_variables(next(v["query"] for v in dash["templating"]["list"] if v["name"] == "box"),
                                variables_for(dash, {"kind": ["vm"], "box": "ctr-1"}))
    assert sorted(r["value"] for s in run(fleet_data, q) for r in rows(s)) == ["vm-1", "vm-2"]


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


def test_availability_per_kind_and_box(fleet_data):
    f = fleet_data.facts
    kind = by_tag(fleet_query(fleet_data, "Availability per kind"), "kind", "availability")
    assert kind == pytest.approx(f.availability_kind, abs=1e-9)
    per_box = {s["tags"]["box"]: rows(s)[0]["availability"]
               for s in fleet_query(fleet_data, "Availability per box")}
    assert per_box == pytest.approx(f.availability_box, abs=1e-9)
    # vm-1 was frozen 600 + 120 + 1800 s of 172800 s
    assert per_box["vm-1"] == pytest.approx(100 * (1 - 2520 / 172800), abs=1e-9)


def test_box_frozen_20s_of_120s_is_83_percent(fleet_data):
    """The issue's example: ctr-1 frozen 20 s in a 120 s window."""
    f1 = next(f for f in FREEZES if f.box == "ctr-1" and f.duration_s == 20)
    lo, hi = fleet_data.at(f1.offset_s - 50), fleet_data.at(f1.offset_s + 70) - 1
    value = single(box_query(fleet_data, "Availability", "ctr-1", from_ms=lo, to_ms=hi), "availability")
    assert value == pytest.approx(100 * 100 / 120, abs=1e-9)  # 83.33 %


def test_filter_by_kind(fleet_data):
    series = fleet_query(fleet_data, "Availability per box", scenario={"kind": ["vm"]})
    assert sorted(s["tags"]["box"] for s in series) == ["vm-1", "vm-2"]


def test_freeze_counts_time_mttr(fleet_data):
    f = fleet_data.facts
    assert by_tag(fleet_query(fleet_data, "Freezes"), "kind", "freezes") == f.freezes_kind
    assert by_tag(fleet_query(fleet_data, "Total frozen time"), "kind", "frozen_s") == pytest.approx(f.frozen_s_kind)
    assert by_tag(fleet_query(fleet_data, "MTTR"), "kind", "mttr_s") == pytest.approx(f.mttr_kind)
    assert f.freezes_kind == {"container": 5, "vm": 5}


def test_mtbf_with_its_transformation(fleet_data):
    """Queries A and B, then the panel's merge + calculateField(uptime_s / freezes)."""
    f = fleet_data.facts
    up = by_tag(fleet_query(fleet_data, "MTBF", "A"), "kind", "uptime_s")
    n = by_tag(fleet_query(fleet_data, "MTBF", "B"), "kind", "freezes")
    panel = next(p for p in FLEET["panels"] if p["title"] == "MTBF")
    calc = next(t for t in panel["transformations"] if t["id"] == "calculateField")["options"]["binary"]
    assert (calc["left"], calc["operator"], calc["right"]) == ("uptime_s", "/", "freezes")
    mtbf = {k: up[k] / n[k] for k in up}
    assert mtbf == pytest.approx(f.mtbf_kind)


def test_freezes_by_layer(fleet_data):
    f = fleet_data.facts
    got = {}
    for layer in ("l2", "l3", "l4"):
        for kind, n in by_tag(fleet_query(fleet_data, "Freezes by layer", layer.upper()), "kind", layer).items():
            got[(layer, kind)] = n
    assert got == f.freezes_layer_kind


def test_freeze_table_lists_each_freeze_with_its_layer(fleet_data):
    (series,) = fleet_query(fleet_data, "Freezes list")
    table = rows(series)
    assert len(table) == len(FREEZES)
    got = sorted((r["time"] - fleet_data.start_ms - 500, r["box"], r["kind"], r["layer"], r["duration_s"], r["evidence"])
                 for r in table)
    want = sorted((fz.offset_s * 1000, fz.box, BOXES[fz.box], fz.layer, float(fz.duration_s), fz.evidence)
                  for fz in FREEZES)
    assert got == want


def test_remediation_counts_and_success(fleet_data):
    f = fleet_data.facts
    assert by_tag(fleet_query(fleet_data, "Remediations"), "action", "actions") == f.remediations_action
    assert by_tag(fleet_query(fleet_data, "Remediation success rate"), "action", "success") == \
        pytest.approx(f.success_action)
    assert by_tag(fleet_query(fleet_data, "Remediations by trigger"), "trigger", "actions") == f.remediations_trigger


def test_state_timeline_marks_the_open_freeze(fleet_data):
    series = fleet_query(fleet_data, "Up/down per box", from_ms=fleet_data.end_ms - 600_000)
    last = {s["tags"]["box"]: [r for r in rows(s) if r["min"] is not None][-1]["min"] for s in series}
    assert last == {b: (0 if b in fleet_data.facts.frozen_now else 1) for b in BOXES}


def test_box_detail_probe_panels(fleet_data):
    """RTT per probe kind and loss: ctr-1's 40 s l4 freeze an hour before the end loses only tcp."""
    f10 = next(f for f in FREEZES if f.box == "ctr-1" and f.duration_s == 40)
    lo, hi = fleet_data.at(f10.offset_s), fleet_data.at(f10.offset_s + 40) - 1
    loss = {(s["tags"]["probe"], s["tags"].get("port", "")): rows(s)[0]["mean"]
            for s in box_query(fleet_data, "Loss per probe", "ctr-1", from_ms=lo, to_ms=hi, mdp=1)}
    assert loss == {("icmp", ""): 0, ("arp", ""): 0, ("icmp6", ""): 0, ("ndp", ""): 0, ("tcp", "1093"): 100}
    rtt = box_query(fleet_data, "RTT per probe", "ctr-1")
    assert {s["tags"]["probe"] for s in rtt} == {"icmp", "arp", "tcp", "icmp6", "ndp"}


def test_box_detail_tables(fleet_data):
    assert [r["event"] for s in box_query(fleet_data, "Container events", "ctr-1") for r in rows(s)] == \
        ["restart", "restart", "pause"]
    (mac,) = box_query(fleet_data, "MAC changes", "ctr-1")
    assert [(r["old"], r["new"]) for r in rows(mac)] == [("02:42:c0:00:02:0a", "7e:11:22:33:44:55")]
    rem = [r for s in box_query(fleet_data, "Remediations list", "vm-2") for r in rows(s)]
    assert sorted((r["action"], r["trigger"], r["dry_run"]) for r in rem) == [("command", "auto", 0),
                                                                              ("command", "manual", 1)]
    state = box_query(fleet_data, "State", "vm-2", from_ms=fleet_data.end_ms - 300_000)
    assert [r for r in rows(state[0]) if r["state"] is not None][-1]["state"] == "frozen"


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


def test_box_frozen_rule_fires_for_the_frozen_box_with_box_label(fleet_data):
    result = evaluate(RULES["vobox-box-frozen"], fleet_data, fleet_data.end_ms)
    firing = {dict(k)["box"] for k, v in result.items() if v}
    assert firing == set(fleet_data.facts.frozen_now) == {"vm-2"}
    assert {dict(k)["box"] for k in result} == set(BOXES)
    for labels in result:
        assert {"box", "kind", "site"} <= dict(labels).keys()


def test_box_frozen_rule_quiet_when_all_up(fleet_data):
    f1 = next(f for f in FREEZES if f.box == "ctr-1" and f.duration_s == 20)
    result = evaluate(RULES["vobox-box-frozen"], fleet_data, fleet_data.at(f1.offset_s + 5))
    assert {dict(k)["box"] for k, v in result.items() if v} == {"ctr-1"}
    result = evaluate(RULES["vobox-box-frozen"], fleet_data, fleet_data.at(f1.offset_s + 600))
    assert not any(result.values())


def test_agent_silent_rule(fleet_data):
    rule = RULES["vobox-agent-silent"]
    assert evaluate(rule, fleet_data, fleet_data.end_ms) == {frozenset(): False}
    # 3 cycles after the last agent point nothing is left in the window: NoData, which alerts
    last_agent_ms = fleet_data.end_ms - 10_000 + 900
    assert evaluate(rule, fleet_data, last_agent_ms + 30_001) == {"NoData": True}
    assert evaluate(rule, fleet_data, last_agent_ms + 29_000) == {frozenset(): False}
