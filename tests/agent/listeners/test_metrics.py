"""The metrics listener through the real pipeline (scripted probe results), its HTTP server and the config keys."""
from __future__ import annotations

import math
import urllib.request

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from agent import wiring
from agent.core.config import ConfigError, loads
from agent.core.correlation import CorrelationSettings, Correlator, memberships_from_config
from agent.listeners.metrics import MetricsListener, MetricsServer
from agent.pipeline import Pipeline
from remediations import ActionContext, RemediationService, Remediator
from tests.agent.test_pipeline import BOXES, RecordingStorage, Script, _no_docker, config_text, running


def service(cfg, script, storage, auto: bool = True, on_status=None):
    """The real engine and service (not started: decided plans stay queued; no Docker is touched)."""
    assert cfg.remediation.policy().auto is auto   # [remediation] auto reaches the engine's policy
    engine = Remediator(cfg.remediation.policy(), [b.remediation_target() for b in cfg.boxes],
                 reprobe=lambda box: BOXES[box] not in script.failing)
    return RemediationService(engine, ActionContext(docker_factory=_no_docker), clock=script.clock,
                              on_record=lambda r: storage.write([wiring.record_point(r, cfg.agent.site)]),
                              on_status=on_status)


def make(tmp_path, extra: str = "", storage=None):
    cfg = loads(config_text(str(tmp_path / "state")) + extra)
    script, storage = Script(), storage if storage is not None else RecordingStorage()
    rem = service(cfg, script, storage, auto=cfg.remediation.auto)
    metrics = MetricsListener({b.name: b.kind for b in cfg.boxes}, cfg.agent.site, counters=storage.counters,
                              segments={b.name: b.segment_name(cfg.agent.site) for b in cfg.boxes})
    listeners = wiring.build_listeners(cfg, storage, remediation=rem, metrics=metrics)
    correlator = Correlator(CorrelationSettings.from_config(cfg.correlation), memberships_from_config(cfg))
    pipeline = Pipeline(cfg, listeners, sweep=script.sweep, clock=script.clock, correlator=correlator)
    return pipeline, script, metrics, rem


def run(pipeline, script, failing_per_cycle):
    for failing in failing_per_cycle:
        script.failing = {BOXES[b] for b in failing}
        pipeline.run_cycle()
        script.now += 10


def samples(metrics: MetricsListener) -> dict[tuple, float]:
    """(sample name, sorted labels) -> value, from the exposition text itself."""
    text = generate_latest(metrics.registry).decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def box_labels(box, **more):
    return tuple(sorted({"box": box, "kind": "container", "vobox_site": "test", **more}.items()))


def test_a_freeze_shows_in_state_layer_up_counters_and_closes_into_the_histogram(tmp_path):
    pipeline, script, metrics, _ = make(tmp_path)
    run(pipeline, script, [(), ("a",), ("a",)])   # fail_cycles = 2: frozen at the third cycle
    s = samples(metrics)
    assert s[("vobox_box_state", box_labels("a", state="frozen"))] == 1
    assert s[("vobox_box_state", box_labels("a", state="up"))] == 0
    assert s[("vobox_box_state", box_labels("b", state="up"))] == 1
    assert s[("vobox_box_up", box_labels("a"))] == 0
    assert s[("vobox_box_up", box_labels("b"))] == 1
    assert s[("vobox_box_layer", box_labels("a", layer="l2"))] == 1   # arp fails too: the deepest layer
    assert s[("vobox_freezes_total", box_labels("a", layer="l2"))] == 1
    assert math.isnan(s[("vobox_probe_rtt_seconds", box_labels("a", probe="icmp"))])
    assert s[("vobox_probe_rtt_seconds", box_labels("b", probe="icmp"))] == pytest.approx(0.0002)
    assert s[("vobox_probe_success", box_labels("a", probe="tcp"))] == 0
    assert s[("vobox_box_freeze_start_timestamp_seconds", box_labels("a"))] == pytest.approx(1_800_000_010.0)
    run(pipeline, script, [(), ()])               # recover_cycles = 2
    s = samples(metrics)
    assert s[("vobox_box_state", box_labels("a", state="up"))] == 1
    assert s[("vobox_freeze_duration_seconds_count", box_labels("a"))] == 1
    assert s[("vobox_freeze_duration_seconds_sum", box_labels("a"))] == pytest.approx(20.0)   # 1st fail -> 1st ok
    assert s[("vobox_freeze_duration_seconds_bucket", box_labels("a", le="30.0"))] == 1
    assert s[("vobox_freeze_duration_seconds_bucket", box_labels("a", le="10.0"))] == 0
    assert s[("vobox_agent_cycles_total", (("vobox_site", "test"),))] == 5
    assert s[("vobox_agent_boxes", (("vobox_site", "test"),))] == 3


def test_a_segment_freeze_and_its_holds(tmp_path):
    pipeline, script, metrics, _ = make(tmp_path)
    run(pipeline, script, [("a", "b", "c"), ("a", "b", "c")])
    s = samples(metrics)
    seg = (("segment", "net1"), ("vobox_site", "test"))
    assert s[("vobox_segment_frozen", seg)] == 1
    assert s[("vobox_segment_frozen_boxes", seg)] == 3
    assert s[("vobox_segment_freezes_total", seg)] == 1
    assert s[("vobox_box_remediation_held", box_labels("a"))] == 1
    run(pipeline, script, [("a", "b", "c"), (), (), ()])
    s = samples(metrics)
    assert s[("vobox_segment_frozen", seg)] == 0
    assert s[("vobox_segment_freezes_total", seg)] == 1        # one freeze, however many cycles it lasted
    assert s[("vobox_box_remediation_held", box_labels("a"))] == 0


def test_storage_counters_and_misfires_become_counters_that_only_grow(tmp_path):
    pipeline, script, metrics, _ = make(tmp_path)
    counts = {"write_errors": 3}

    class C:
        spool_points, queued, dropped, rejected = 7, 2, 0, 1

        @property
        def write_errors(self):
            return counts["write_errors"]

    metrics.counters = C
    run(pipeline, script, [()])
    pipeline.misfires = 2
    counts["write_errors"] = 5
    run(pipeline, script, [()])
    s = samples(metrics)
    site = (("vobox_site", "test"),)
    assert s[("vobox_agent_write_errors_total", site)] == 5
    assert s[("vobox_agent_misfires_total", site)] == 2
    assert s[("vobox_agent_spool_points", site)] == 7
    assert s[("vobox_agent_rejected_points_total", site)] == 1
    assert s[("vobox_agent_cycle_duration_seconds_count", site)] == 2
    assert s[("vobox_agent_last_cycle_timestamp_seconds", site)] > 1_700_000_000


def test_remediation_records_are_counted_by_outcome(tmp_path):
    _, _, metrics, _ = make(tmp_path)
    metrics.on_remediation("a", "restart_container", "alert", "done", True, True)
    metrics.on_remediation("a", "restart_container", "auto", "done", False, False)
    metrics.on_remediation("a", "restart_container", "auto", "deferred", False, False)
    metrics.on_remediation("a", "restart_container", "alert", "refused", False, False)
    s = samples(metrics)
    for trigger, result in (("alert", "recovered"), ("auto", "failed"), ("auto", "deferred"), ("alert", "refused")):
        assert s[("vobox_remediations_total", box_labels("a", action="restart_container", trigger=trigger,
                                                         result=result))] == 1


def test_names_units_and_labels_follow_the_prometheus_conventions(tmp_path):
    pipeline, script, metrics, _ = make(tmp_path)
    run(pipeline, script, [(), ("a",), ("a",), (), ()])
    metrics.on_remediation("a", "restart_container", "alert", "done", True, True)
    bounded = {"box", "kind", "vobox_site", "probe", "layer", "state", "segment", "action", "trigger", "result", "le",
               "version", "python"}   # vobox_build_info's: one value each per process
    text = generate_latest(metrics.registry).decode()
    fams = list(text_string_to_metric_families(text))
    assert len(fams) >= 20
    for fam in fams:
        assert fam.name.startswith("vobox_"), fam.name
        assert not fam.name.endswith(("_ms", "_milliseconds", "_s")), fam.name
        if fam.type == "counter" and fam.samples:
            assert any(s.name == fam.name + "_total" for s in fam.samples), fam.name
        for s in fam.samples:
            assert set(s.labels) <= bounded, (s.name, s.labels)
    # the global default registry is not used
    from prometheus_client import REGISTRY
    assert "vobox_box_up" not in generate_latest(REGISTRY).decode()


def test_the_server_serves_the_registry_and_stops(tmp_path):
    _, _, metrics, _ = make(tmp_path)
    server = MetricsServer(metrics.registry, "127.0.0.1", 0)
    server.start()
    try:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            body = resp.read().decode()
            assert resp.headers["Content-Type"].startswith("text/plain")
        assert 'vobox_box_up{box="a",kind="container",vobox_site="test"} 1.0' in body
    finally:
        server.stop()
    with pytest.raises(OSError):
        opener.open(f"http://127.0.0.1:{server.port}/metrics", timeout=2)


def test_auto_false_acts_only_on_alerts(tmp_path):
    """[remediation] auto = false: a frozen box gets no automatic step; an alert for it is queued."""
    cfg_text = config_text(str(tmp_path / "state")).replace("enabled = true", "enabled = true\nauto = false")
    script = Script()
    cfg = loads(cfg_text)
    assert (cfg.remediation.enabled, cfg.remediation.auto) == (True, False)
    storage = RecordingStorage()
    rem = service(cfg, script, storage, auto=False)
    p = Pipeline(cfg, wiring.build_listeners(cfg, storage, remediation=rem), sweep=script.sweep, clock=script.clock)
    run(p, script, [("a",), ("a",), ("a",)])
    rem.tick()
    assert rem.status()["a"].frozen and running(rem) == {}          # frozen, known, not acted on
    result = rem.request("a", None, "alert")
    assert result.outcome == "queued" and result.action == "restart_container", result
    assert list(running(rem)) == ["a"] and "restart_container" in running(rem)["a"]
    # the same freeze with auto on is acted on without any alert
    cfg2 = loads(config_text(str(tmp_path / "s2")))
    on = service(cfg2, script, RecordingStorage())
    p2 = Pipeline(cfg2, wiring.build_listeners(cfg2, RecordingStorage(), remediation=on), sweep=script.sweep,
                  clock=script.clock)
    run(p2, script, [("a",), ("a",), ("a",)])
    on.tick()
    assert "a" in running(on)


@pytest.mark.parametrize("text, error", [
    pytest.param('[metrics]\nlisten = "nope"\n', "metrics.listen", id="bad-listen"),
    pytest.param('[metrics]\nport = 9788\n', "metrics.port", id="unknown-key"),
    pytest.param('[remediation]\nauto = "no"\n', "remediation.auto", id="auto-not-bool"),
])
def test_config_keys_are_strict(tmp_path, text, error):
    base = config_text(str(tmp_path / "state")).replace("[remediation]\nenabled = true\n", "")
    with pytest.raises(ConfigError, match=error):
        loads(base + text)


def test_metrics_are_off_by_default(tmp_path):
    cfg = loads(config_text(str(tmp_path / "state")))
    assert cfg.metrics.listen is None
    cfg = loads(config_text(str(tmp_path / "state")) + '[metrics]\nlisten = "[::1]:9788"\n')
    assert (cfg.metrics.host, cfg.metrics.port) == ("::1", 9788)


def test_a_box_set_change_starts_new_series_and_removes_a_removed_boxs_series():
    """Discovery: a forgotten container's series disappear (Prometheus marks them stale), a new box's start."""
    m = MetricsListener({"a": "container", "b": "container"}, "site1")
    m.on_remediation("b", "restart_container", "auto", "done", True, True)
    m.rtt.labels("b", "container", "site1", "icmp").set(0.001)
    m.set_kinds({"a": "container", "c": "container"})
    families = list(text_string_to_metric_families(generate_latest(m.registry).decode()))
    boxes = {s.labels.get("box") for f in families for s in f.samples if "box" in s.labels}
    assert boxes == {"a", "c"}
    assert next(s.value for f in families for s in f.samples if s.name == "vobox_agent_boxes") == 2
    up_c = [s.value for f in families for s in f.samples if s.name == "vobox_box_up" and s.labels["box"] == "c"]
    assert up_c == [1.0]


def test_a_box_in_maintenance_has_state_maintenance_and_no_freeze(tmp_path):
    from agent.core.maintenance import Active

    pipeline, script, metrics, rem = make(tmp_path)
    pipeline.maintenance = lambda now_s, names: {"a": Active("upgrade", "bob (uid 0)", None, "command")}
    run(pipeline, script, ["a"] * 5)
    s = samples(metrics)
    assert s[("vobox_box_state", box_labels("a", state="maintenance"))] == 1
    assert s[("vobox_box_state", box_labels("a", state="frozen"))] == 0
    assert ("vobox_box_up", box_labels("a")) not in s and s[("vobox_box_up", box_labels("b"))] == 1  # not observed
    assert running(rem) == {}


def test_retention_drops_and_clock_steps_are_counters(tmp_path):
    pipeline, script, metrics, _ = make(tmp_path)
    counts = {"retention_dropped": 200}

    class C:
        spool_points, queued, dropped, rejected, write_errors = 0, 0, 0, 0, 0

        @property
        def retention_dropped(self):
            return counts["retention_dropped"]

    metrics.counters = C
    site = (("vobox_site", "test"),)
    assert samples(metrics)[("vobox_agent_clock_steps_total", site)] == 0       # exported from the start
    assert samples(metrics)[("vobox_agent_retention_dropped_points_total", site)] == 0
    run(pipeline, script, [()])
    counts["retention_dropped"] = 250
    metrics.on_clock_step()
    run(pipeline, script, [()])
    s = samples(metrics)
    assert s[("vobox_agent_retention_dropped_points_total", site)] == 250
    assert s[("vobox_agent_clock_steps_total", site)] == 1


def _influx_view(points):
    """What InfluxDB would hold of the recorded points: the last write per (measurement, tags, time) wins."""
    last = {}
    for p in points:
        last[(p.measurement, tuple(sorted((k, v) for k, v in p.tags.items() if v is not None)), p.time_ns)] = p
    return list(last.values())


def test_the_counters_report_reads_agree_with_the_points_exactly(tmp_path):
    """The counters `report --prometheus` reads count what InfluxDB's points hold (agent.report.prom):
    down cycles (a freeze opened by an alert too), freezes closed by their deepest layer, maintenance cycles."""
    from agent.core.maintenance import Active

    storage = RecordingStorage()
    pipeline, script, metrics, _ = make(tmp_path, storage=storage)
    run(pipeline, script, [(), ("a",), ("a",), ("a",), (), (), ()])    # a freeze of a, closed
    run(pipeline, script, [("b",)])                                   # b suspect ...
    assert pipeline.alert_witness("b") == "frozen"                   # ... opened by an alert
    run(pipeline, script, [("b",), (), (), ()])
    pipeline.maintenance = lambda now_s, names: {"a": Active("upgrade", "bob (uid 0)", None, "command")}
    run(pipeline, script, [(), ()])
    s = samples(metrics)
    points = _influx_view(storage.points)
    for box in ("a", "b"):
        ups = [p.fields["up"] for p in points if p.measurement == "box" and p.tags["box"] == box
               and p.fields.get("up") is not None]
        assert s[("vobox_box_cycles_total", box_labels(box))] == len(ups)
        assert s[("vobox_box_down_cycles_total", box_labels(box))] == ups.count(0) > 0, box
        closed = [p for p in points if p.measurement == "freeze" and p.tags["box"] == box and not p.fields["open"]]
        assert len(closed) == 1
        assert s[("vobox_freezes_closed_total", box_labels(box, layer=closed[0].fields["layer"]))] == 1
    maint = [p for p in points if p.measurement == "box" and p.tags.get("maintenance") == "true"]
    assert s[("vobox_box_maintenance_cycles_total", box_labels("a"))] == len(maint) == 2
    assert s[("vobox_box_maintenance_cycles_total", box_labels("b"))] == 0
