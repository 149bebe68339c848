"""`report`, the dashboards' InfluxQL and /metrics agree on the same data (issue 13, item 6).

A known sequence of cycles (scripted probe results) goes through the real pipeline and its real
listeners (points -> agent.storage.Storage -> the lab's real InfluxDB 1.6; metrics -> a real
/metrics server). Then the same figures are read three ways and compared with the truth, which is
computed from the sequence alone:
  - the report (agent.report.read_fleet + build_report);
  - the generated Grafana dashboards' queries, expanded as Grafana does ($variables, $timeFilter;
    tests/grafana/grafana_sim.py) and run against that InfluxDB;
  - /metrics over HTTP: 1 - vobox_box_down_cycles_total / vobox_box_cycles_total,
    1 - vobox_box_failed_cycles_total / vobox_box_cycles_total and vobox_freezes_total.
Figures: per box, the freeze-based availability, the availability from every failed cycle and the
freeze count; per kind, the freeze count.
"""
from __future__ import annotations

import json
import os
import re
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent import netns, wiring
from agent.core.config import loads
from agent.listeners.metrics import MetricsListener, MetricsServer
from agent.pipeline import Pipeline
from agent.report import build_report, read_fleet
from agent.storage.influx import query as influx_query
from agent.storage.store import Storage
from probes import ProbeResult
from tests.agent.storage import conftest as storage_fixtures
from tests.grafana import grafana_sim as g

module_influx = storage_fixtures.module_influx  # the module-scoped InfluxDB fixture, used here too

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
INTERVAL_S = 10
SITE = "agree"
ADDRESSES = {"a": "198.51.100.21", "b": "198.51.100.22", "c": "198.51.100.23"}
KINDS = {"a": "container", "b": "container", "c": "vm"}
# per cycle, H = every probe answers, F = none does; fail_cycles = 2, recover_cycles = 2
SEQUENCE = {
    # 8 lone failures (never two in a row: no freeze), then one freeze of 4 failing cycles (24-27)
    "a": "HF" * 8 + "H" * 8 + "FFFF" + "H" * 32,
    # a freeze 40-42 whose recovery relapses at 44 (43 counts down: one freeze 40-44), then a freeze 52-53
    "b": "H" * 40 + "FFFHFHH" + "H" * 5 + "FFHH" + "H" * 4,
    # two lone failures
    "c": "H" * 10 + "F" + "H" * 19 + "F" + "H" * 29,
}
# the truth, from the sequence and the freeze rule alone: (down cycles in freezes, failed cycles, freezes)
TRUTH = {"a": (4, 12, 1), "b": (7, 6, 2), "c": (0, 2, 0)}
CYCLES = 60


def config_text(state_dir: str, url: str, database: str) -> str:
    text = f"""
[agent]
interval = {INTERVAL_S}
timeout = 1.0
state_dir = "{state_dir}"
site = "{SITE}"

[freeze]
fail_cycles = 2
recover_cycles = 2

[influxdb]
url = "{url}"
database = "{database}"
"""
    for name, ip in ADDRESSES.items():
        text += f'\n[[box]]\nname = "{name}"\nkind = "{KINDS[name]}"\nipv4 = "{ip}"\ntcp_ports = [1093]\n'
        if KINDS[name] == "container":
            text += f'container = "ctr-{name}"\nnetwork = "net1"\n'
    return text


def test_truth_follows_from_the_sequence():
    """The expected figures are the sequence's (a check on the table above, not on the product)."""
    for box, seq in SEQUENCE.items():
        assert len(seq) == CYCLES, box
        assert seq.count("F") == TRUTH[box][1], box


@pytest.fixture(scope="module")
def agreed(module_influx, tmp_path_factory):
    """Run the sequence; return (report, expanded-query runner, /metrics samples, time range)."""
    server = module_influx
    tmp = tmp_path_factory.mktemp("agree")
    cfg = loads(config_text(str(tmp / "state"), server.url, "agree"))
    clock = {"now": 1_800_000_000.0}
    failing: set[str] = set()

    def sweep(targets, timeout_s, interface=None, recorder=None):
        return [ProbeResult(t.address, t.probe, t.port, t.address not in failing,
                            None if t.address in failing else 0.2, "timeout" if t.address in failing else None,
                            None, clock["now"] + 0.1) for t in targets]

    metrics = MetricsListener(KINDS, SITE, interval_s=INTERVAL_S)
    server_m = MetricsServer(metrics.registry, "127.0.0.1", 0)
    server_m.start()
    start_ms = int(clock["now"] * 1000)
    try:
        with netns.entered(server.netns):   # the writer thread starts here: it lives in InfluxDB's namespace
            storage = Storage.from_config(cfg)
            pipeline = Pipeline(cfg, wiring.build_listeners(cfg, storage, metrics=metrics), sweep=sweep,
                                clock=lambda: clock["now"])
            for i in range(CYCLES):
                failing.clear()
                failing.update(ADDRESSES[b] for b, seq in SEQUENCE.items() if seq[i] == "F")
                pipeline.run_cycle()
                clock["now"] += INTERVAL_S
            assert storage.flush(30.0), "InfluxDB took every point"
            storage.close(10.0)
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
                f"http://127.0.0.1:{server_m.port}/metrics", timeout=10) as resp:
            exposition = resp.read().decode()
    finally:
        server_m.stop()
    end_ms = int(clock["now"] * 1000)

    def run(q: str) -> list[dict]:
        with netns.entered(server.netns):
            return influx_query(server.url, q, db="agree", epoch="ms")

    report = build_report(read_fleet(run, start_ms, end_ms, INTERVAL_S, SITE))
    samples: dict[tuple, float] = {}
    for fam in text_string_to_metric_families(exposition):
        for s in fam.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return report, run, samples, (start_ms - 1000, end_ms)


def _dashboard(name: str) -> dict:
    with open(os.path.join(ROOT, "grafana", "dashboards", name), encoding="utf-8") as fh:
        return json.load(fh)


def _panel_query(dash: dict, title: str, ref: str = "A") -> str:
    for p in dash["panels"]:
        for t in p.get("targets", []):
            if p["title"] == title and t["refId"] == ref:
                return t["query"]
    raise AssertionError(f"no panel {title!r} {ref} in {dash['uid']}")


def _variables(dash: dict, box: str | None = None) -> dict[str, g.Variable]:
    out = {}
    for v in dash["templating"]["list"]:
        if v["type"] == "datasource":
            continue
        if v["type"] == "constant":
            out[v["name"]] = g.Variable(v["name"], str(INTERVAL_S))
        elif v["name"] == "box" and box is not None:
            out["box"] = g.Variable("box", box, multi=v["multi"], include_all=v["includeAll"],
                                    all_value=v.get("allValue"), options=sorted(KINDS))
        else:
            out[v["name"]] = g.Variable(v["name"], g.ALL, multi=v["multi"], include_all=v["includeAll"],
                                        all_value=v.get("allValue"))
    return out


def _grafana(run, dash: dict, title: str, rng: tuple[int, int], box: str | None = None,
             ref: str = "A") -> list[dict]:
    q = g.expand(_panel_query(dash, title, ref), _variables(dash, box), *rng)
    assert not re.search(r"\$\{?\w", q), f"a variable or macro left in {q}"
    return run(q)


def _labels(box: str, **more: str) -> tuple:
    return tuple(sorted({"box": box, "kind": KINDS[box], "vobox_site": SITE, **more}.items()))


@pytest.mark.parametrize("box", sorted(SEQUENCE))
def test_availability_agrees_report_dashboards_metrics(agreed, box):
    report, run, samples, rng = agreed
    down, failed, _ = TRUTH[box]
    truth_up = 1 - down / CYCLES
    truth_all = 1 - failed / CYCLES
    g_box = next(x for x in report.boxes if x.name == box)
    fleet = _dashboard("fleet-stability.json")
    per_box = {(r["box"], r["kind"]): r["availability"] / 100
               for r in _grafana(run, fleet, "Availability per box", rng)}
    per_box_all = {(r["box"], r["kind"]): r["availability"] / 100
                   for r in _grafana(run, fleet, "Availability, every failed cycle, per box", rng)}
    detail = _grafana(run, _dashboard("box-detail.json"), "Availability", rng, box=box)
    cycles = samples[("vobox_box_cycles_total", _labels(box))]
    m_up = 1 - samples[("vobox_box_down_cycles_total", _labels(box))] / cycles
    m_all = 1 - samples[("vobox_box_failed_cycles_total", _labels(box))] / cycles
    assert cycles == CYCLES
    figures_up = {"report": g_box.availability.value, "fleet dashboard": per_box[(box, KINDS[box])],
                  "box dashboard": detail[0]["availability"] / 100, "/metrics": m_up}
    figures_all = {"report": g_box.availability_all_failures, "fleet dashboard": per_box_all[(box, KINDS[box])],
                   "/metrics": m_all}
    for where, value in figures_up.items():
        assert value == pytest.approx(truth_up, abs=1e-9), (box, where, figures_up)
    for where, value in figures_all.items():
        assert value == pytest.approx(truth_all, abs=1e-9), (box, where, figures_all)


@pytest.mark.parametrize("box", sorted(SEQUENCE))
def test_freeze_count_agrees_report_dashboards_metrics(agreed, box):
    report, run, samples, rng = agreed
    truth = TRUTH[box][2]
    g_box = next(x for x in report.boxes if x.name == box)
    detail = _grafana(run, _dashboard("box-detail.json"), "Freezes", rng, box=box)
    m = sum(v for (name, labels), v in samples.items()
            if name == "vobox_freezes_total" and dict(labels).get("box") == box)
    figures = {"report": g_box.freezes, "box dashboard": detail[0]["freezes"] if detail else 0, "/metrics": m}
    assert all(v == truth for v in figures.values()), (box, truth, figures)


def test_freeze_count_per_kind_agrees(agreed):
    report, run, samples, rng = agreed
    truth = {"container": TRUTH["a"][2] + TRUTH["b"][2], "vm": TRUTH["c"][2]}
    by_kind = {r["kind"]: r["freezes"] for r in _grafana(run, _dashboard("fleet-stability.json"), "Freezes", rng)}
    rep = {x.kind: x.freezes for x in report.kinds}
    m = {k: sum(v for (name, labels), v in samples.items()
                if name == "vobox_freezes_total" and dict(labels).get("kind") == k) for k in truth}
    assert rep == truth and m == truth
    assert by_kind == {k: v for k, v in truth.items() if v}   # InfluxDB has no row for a kind without freezes


def test_the_flapping_box_shows_degraded_in_report_and_dashboard(agreed):
    report, run, samples, rng = agreed
    assert [b.name for b in report.boxes if b.degraded_boxes] == ["a"]
    rows = {r["box"]: r for r in _grafana(run, _dashboard("fleet-stability.json"), "Degraded boxes", rng)}
    assert rows["a"]["degraded"] == 1 and rows["b"]["degraded"] == 0 and rows["c"]["degraded"] == 0
    assert samples[("vobox_box_degraded", _labels("a"))] == 0   # 44 healthy cycles since: no longer
