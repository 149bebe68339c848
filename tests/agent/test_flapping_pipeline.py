"""Flapping through the real pipeline and listeners (scripted probe results): degraded is shown, stored, served
on /metrics, survives a restart, and is never remediated for that alone."""
from __future__ import annotations

import json

from agent.pipeline import Pipeline
from tests.agent.listeners.test_metrics import box_labels, make, run, samples
from tests.agent.test_pipeline import remediation_points, running


def box_points(storage, box):
    return [p for p in storage.points if p.measurement == "box" and p.tags["box"] == box and "state" in p.fields]


def test_a_box_failing_every_other_cycle_is_degraded_not_frozen_not_remediated(tmp_path):
    pipeline, script, metrics, rem = make(tmp_path)
    storage = pipeline.listeners[0].storage
    run(pipeline, script, [("a",), ()] * 15)             # fail_cycles = 2: never two failures in a row
    assert pipeline.states["a"].state == "up"
    assert [p for p in storage.points if p.measurement == "freeze"] == []
    # degraded alone is never remediated: nothing planned, nothing recorded
    assert running(rem) == {} and remediation_points(storage) == []
    pts = box_points(storage, "a")
    assert len(pts) == 30 and all(p.fields["up"] == 1 for p in pts)     # freeze-based: 100 % available
    assert sum(1 - p.fields["healthy"] for p in pts) == 15               # every failed cycle: 50 %
    assert pts[-1].fields["degraded"] == 1 and pts[-1].fields["percent_state_change"] > 90
    assert 0.45 < pts[-1].fields["failed_share"] < 0.55
    assert [p.fields["degraded"] for p in box_points(storage, "b")][-1] == 0
    st = pipeline.listeners[-2].status(script.now)["boxes"]["a"]       # the status listener (metrics is last)
    assert st["state"] == "up" and st["degraded"]["degraded"] is True and "flapping" in st["degraded"]["reason"]
    s = samples(metrics)
    assert s[("vobox_box_degraded", box_labels("a"))] == 1
    assert s[("vobox_box_degraded", box_labels("b"))] == 0
    assert s[("vobox_box_percent_state_change", box_labels("a"))] > 90
    assert s[("vobox_box_cycles_total", box_labels("a"))] == 30
    assert s[("vobox_box_failed_cycles_total", box_labels("a"))] == 15
    assert s[("vobox_box_down_cycles_total", box_labels("a"))] == 0


def test_a_freeze_is_not_degraded_and_the_counters_follow_the_rewrites(tmp_path):
    pipeline, script, metrics, rem = make(tmp_path)
    storage = pipeline.listeners[0].storage
    run(pipeline, script, [("a",), ()] * 12 + [("a",)] * 4 + [()] * 3)
    assert [p.fields["open"] for p in storage.points if p.measurement == "freeze"][-1] == 0   # one freeze, closed
    pts = box_points(storage, "a")
    assert pts[23].fields["degraded"] == 1 and pts[24].fields["degraded"] == 1   # suspect: not yet a freeze
    assert not any(p.fields.get("degraded") for p in pts[25:])   # the freeze emptied the window
    down = {p.time_ns for p in pts if p.fields["up"] == 0} | {p.time_ns for p in storage.points
                                                              if p.measurement == "box" and p.tags["box"] == "a"
                                                              and set(p.fields) == {"up"}}
    s = samples(metrics)
    assert s[("vobox_box_down_cycles_total", box_labels("a"))] == len(down) == 4
    assert s[("vobox_box_failed_cycles_total", box_labels("a"))] == 12 + 4
    assert s[("vobox_box_degraded", box_labels("a"))] == 0


def test_the_window_survives_a_restart(tmp_path):
    pipeline, script, metrics, rem = make(tmp_path)
    run(pipeline, script, [("a",), ()] * 11)
    assert pipeline.flaps["a"].degraded
    with open(tmp_path / "state" / "agent-state.json") as fh:
        assert len(json.load(fh)["flapping"]["a"]["history"]) == 21
    again = Pipeline(pipeline.config, [], sweep=script.sweep, clock=script.clock)
    assert again.flaps["a"] == pipeline.flaps["a"]


def test_a_discovered_box_gets_a_window_and_a_removed_one_loses_it(tmp_path):
    pipeline, script, metrics, rem = make(tmp_path)
    boxes = pipeline.config.boxes
    pipeline.set_boxes([b for b in boxes if b.name != "c"])
    assert "c" not in pipeline.flaps
    run(pipeline, script, [("a",), ()] * 3)
    pipeline.set_boxes(boxes)
    assert pipeline.flaps["c"].history == ()
    run(pipeline, script, [("c",), ()] * 11)
    assert pipeline.flaps["c"].degraded and len(pipeline.flaps["c"].history) == 21
