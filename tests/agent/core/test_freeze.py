"""The pure freeze state machine as tables of cycles; up semantics; state persistence."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from agent.core import freeze
from agent.core.events import FreezeClosed, FreezeLayerChanged, FreezeOpened, StateChanged
from agent.core.freeze import BoxState, FreezeThresholds, Verdict, initial, step, up_decision


def verdict(c: str) -> Verdict:
    """'.' healthy, '2' / '3' / '4' / '7' failing at l2 / l3 / l4 / l7, 'S' stopped (operator intent, not judged)."""
    if c == "S":
        return Verdict(True, stopped=True)
    return Verdict(True) if c == "." else Verdict(False, f"l{c}")


def run(seq: str, fail: int = 3, rec: int = 2, t0: float = 100.0, dt: float = 10.0):
    """Feed the sequence; return (states after each cycle, compact non-StateChanged events, all events)."""
    st = initial("b1")
    th = FreezeThresholds(fail, rec)
    states, compact, everything = [], [], []
    for i, c in enumerate(seq):
        st, evs = step(st, verdict(c), t0 + i * dt, th)
        states.append(st.state)
        everything.extend(evs)
        for e in evs:
            if isinstance(e, FreezeOpened):
                compact.append(("open", e.time_s, e.start_s, e.layer, e.suspect_cycle_times))
            elif isinstance(e, FreezeClosed):
                compact.append(("close", e.time_s, e.start_s, e.end_s, e.layer))
            elif isinstance(e, FreezeLayerChanged):
                compact.append(("layer", e.time_s, e.old_layer, e.new_layer))
    return states, compact, everything


@pytest.mark.parametrize("seq,fail,rec,states,events", [
    pytest.param("....", 3, 2, "up up up up", [], id="always-up"),
    pytest.param(".33.", 3, 2, "up suspect suspect up", [], id="short-blip-no-freeze"),
    pytest.param("333..", 3, 2, "suspect suspect frozen recovering up",
                 [("open", 120, 100, "l3", (100, 110)), ("close", 140, 100, 130, "l3")], id="basic"),
    pytest.param("3..", 1, 1, "frozen up up",
                 [("open", 100, 100, "l3", ()), ("close", 110, 100, 110, "l3")], id="thresholds-1"),
    pytest.param("432..", 3, 2, "suspect suspect frozen recovering up",
                 [("open", 120, 100, "l2", (100, 110)), ("close", 140, 100, 130, "l2")],
                 id="deepest-layer-of-suspect-run"),
    pytest.param("4443..", 2, 2, "suspect frozen frozen frozen recovering up",
                 [("open", 110, 100, "l4", (100,)), ("layer", 130, "l4", "l3"),
                  ("close", 150, 100, 140, "l3")], id="layer-deepens-while-open"),
    pytest.param("22244..", 3, 2, "suspect suspect frozen frozen frozen recovering up",
                 [("open", 120, 100, "l2", (100, 110)), ("close", 160, 100, 150, "l2")],
                 id="shallower-later-keeps-deepest"),
    pytest.param("333.3.3..", 3, 2,
                 "suspect suspect frozen recovering frozen recovering frozen recovering up",
                 [("open", 120, 100, "l3", (100, 110)), ("close", 180, 100, 170, "l3")],
                 id="flapping-recovery-is-one-freeze"),
    pytest.param("33.33.333..", 3, 2,
                 "suspect suspect up suspect suspect up suspect suspect frozen recovering up",
                 [("open", 180, 160, "l3", (160, 170)), ("close", 200, 160, 190, "l3")],
                 id="flap-below-fail-cycles-counts-from-last-run"),
    pytest.param("333...", 3, 3, "suspect suspect frozen recovering recovering up",
                 [("open", 120, 100, "l3", (100, 110)), ("close", 150, 100, 130, "l3")],
                 id="end-is-first-healthy-not-confirmation"),
    pytest.param("333..333..", 3, 2,
                 "suspect suspect frozen recovering up suspect suspect frozen recovering up",
                 [("open", 120, 100, "l3", (100, 110)), ("close", 140, 100, 130, "l3"),
                  ("open", 170, 150, "l3", (150, 160)), ("close", 190, 150, 180, "l3")],
                 id="two-freezes"),
    # Operator intent (container stopped by someone else): not judged, never a freeze.
    pytest.param("SSSS", 3, 2, "stopped stopped stopped stopped", [], id="stopped-is-never-a-freeze"),
    pytest.param("33SS..", 3, 2, "suspect suspect stopped stopped up up", [], id="stop-drops-suspect-run"),
    pytest.param("333SS.", 3, 2, "suspect suspect frozen stopped stopped up",
                 [("open", 120, 100, "l3", (100, 110)), ("close", 130, 100, 130, "l3")],
                 id="stop-closes-open-freeze-at-stop"),
    pytest.param("3333.S", 3, 2, "suspect suspect frozen frozen recovering stopped",
                 [("open", 120, 100, "l3", (100, 110)), ("close", 150, 100, 140, "l3")],
                 id="stop-while-recovering-closes-at-first-healthy"),
    pytest.param("SS222..", 3, 2, "stopped stopped suspect suspect frozen recovering up",
                 [("open", 140, 120, "l2", (120, 130)), ("close", 160, 120, 150, "l2")],
                 id="failing-after-stop-counts-afresh"),
    pytest.param("S7", 1, 1, "stopped frozen", [("open", 110, 110, "l7", ())], id="stopped-to-frozen-thresholds-1"),
    pytest.param("7777..", 3, 2, "suspect suspect frozen frozen recovering up",
                 [("open", 120, 100, "l7", (100, 110)), ("close", 150, 100, 140, "l7")], id="l7-paused"),
    pytest.param("7744..", 2, 2, "suspect frozen frozen frozen recovering up",
                 [("open", 110, 100, "l7", (100,)), ("layer", 120, "l7", "l4"), ("close", 150, 100, 140, "l4")],
                 id="paused-backlog-fills-l7-to-l4"),
])
def test_transitions(seq, fail, rec, states, events):
    got_states, got_events, _ = run(seq, fail, rec)
    assert " ".join(got_states) == states
    assert got_events == events


def test_state_changed_on_every_transition_only():
    states, _, evs = run("333.3..", 3, 2)
    changes = [(e.old, e.new) for e in evs if isinstance(e, StateChanged)]
    assert changes == [("up", "suspect"), ("suspect", "frozen"), ("frozen", "recovering"),
                       ("recovering", "frozen"), ("frozen", "recovering"), ("recovering", "up")]


def test_failing_verdict_needs_layer():
    with pytest.raises(ValueError, match="needs a layer"):
        Verdict(False)
    with pytest.raises(ValueError, match="must be one of"):
        Verdict(False, "l5")  # not a layer (l7, the service, is one since issue 12)


def simulate_up(seq: str, fail: int, rec: int) -> tuple[dict[float, int], list[FreezeClosed]]:
    """What InfluxDB ends up with: time -> up, applying each cycle's write and rewrites."""
    st = initial("b")
    th = FreezeThresholds(fail, rec)
    written: dict[float, int] = {}
    closed = []
    for i, c in enumerate(seq):
        t = float(i)
        new, evs = step(st, verdict(c), t, th)
        d = up_decision(st, new)
        for tr in d.rewrite_down_times:
            assert tr in written and tr < t
            written[tr] = 0
        written[t] = d.up
        closed += [e for e in evs if isinstance(e, FreezeClosed)]
        st = new
    return written, closed


@pytest.mark.parametrize("seq,fail,rec,down", [
    pytest.param("..333..", 3, 2, "..000..", id="freeze"),
    pytest.param(".33.", 3, 2, ".11.", id="suspect-only-stays-up"),
    pytest.param("333.3..", 3, 2, "00000..", id="aborted-recovery-is-down"),
    pytest.param("3.", 1, 1, "0.", id="thresholds-1"),
    pytest.param(".SS.", 3, 2, ".--.", id="stopped-not-observed"),
    pytest.param("33SS", 3, 2, "11--", id="stop-after-suspect-keeps-up"),
    pytest.param("333S", 3, 2, "000-", id="stop-ends-freeze"),
])
def test_up_semantics_table(seq, fail, rec, down):
    written, _ = simulate_up(seq, fail, rec)
    want = {"0": 0, "-": None}
    assert [written[float(i)] for i in range(len(seq))] == [want.get(c, 1) for c in down]


@pytest.mark.parametrize("seed", range(30))
def test_up_zero_exactly_over_closed_freezes(seed):
    """Random flapping: the up=0 cycles are exactly [start, end) of the freezes, so mean(up) matches."""
    rng = random.Random(seed)
    fail, rec = rng.randint(1, 4), rng.randint(1, 3)
    seq = "".join(rng.choice("..." + "2347" + "S") for _ in range(200)) + "." * rec
    written, closed = simulate_up(seq, fail, rec)
    down = {t for t, up in written.items() if up == 0}
    expected = set()
    for e in closed:
        expected |= {float(t) for t in range(int(e.start_s), int(e.end_s))}
    assert down == expected
    assert sum(e.duration_s for e in closed) == len(down)


def test_save_load_roundtrip_and_continue_after_restart(tmp_path):
    path = str(tmp_path / "state" / "freeze.json")
    th = FreezeThresholds(2, 2)
    st = initial("b")
    all_events = []
    for i, c in enumerate("33."):
        st, evs = step(st, verdict(c), float(i), th)
        all_events += evs
    freeze.save_state(path, {"b": st})
    loaded = freeze.load_state(path)
    assert loaded == {"b": st} and loaded["b"].state == "recovering"
    st = loaded["b"]
    for i, c in enumerate("3..", start=3):
        st, evs = step(st, verdict(c), float(i), th)
        all_events += evs
    opened = [e for e in all_events if isinstance(e, FreezeOpened)]
    closed = [e for e in all_events if isinstance(e, FreezeClosed)]
    assert len(opened) == 1 and len(closed) == 1
    assert (closed[0].start_s, closed[0].end_s) == (0.0, 4.0)
    assert not [p for p in os.listdir(tmp_path / "state") if ".tmp" in p]


def test_state_survives_kill_9(tmp_path):
    """A process saving state every cycle is SIGKILLed; the last saved state loads intact."""
    path = tmp_path / "freeze.json"
    code = f"""
import os, signal
from agent.core import freeze
th = freeze.FreezeThresholds(2, 2)
st = freeze.initial("b")
for i in range(200):
    st, _ = freeze.step(st, freeze.Verdict(i % 7 == 0, "none" if i % 7 == 0 else "l3"), float(i), th)
    freeze.save_state({str(path)!r}, {{"b": st}})
    if i == 150:
        os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.dirname(os.path.abspath(__file__))))))
    assert proc.returncode == -9
    st = freeze.load_state(str(path))["b"]
    assert st.last_time_s == 150.0 and st.state == "frozen"


def test_missing_and_corrupt_state(tmp_path, caplog):
    path = tmp_path / "freeze.json"
    assert freeze.load_state(str(path)) == {}
    path.write_text('{"version": 1, "boxes": {"b": {"box": "b", "state": "melted"}}}')
    assert freeze.load_state(str(path)) == {}
    assert (tmp_path / "freeze.json.corrupt").exists() and not path.exists()
    assert "unreadable" in caplog.text


@pytest.mark.parametrize("raw", [
    pytest.param('{"box": "b", "state": "frozen", "layer": "l2"}', id="frozen-without-start"),
    pytest.param('{"box": "b", "state": "recovering", "layer": "l3", "freeze_start_s": "x"}', id="recovering-bad-start"),
])
def test_an_open_freeze_without_its_start_is_a_corrupt_state_file(tmp_path, raw):
    """step() needs the start of an open freeze: such a file is moved aside, not read into a box that raises."""
    path = tmp_path / "freeze.json"
    path.write_text('{"version": 1, "boxes": {"b": ' + raw + "}}")
    assert freeze.load_state(str(path)) == {}
    assert (tmp_path / "freeze.json.corrupt").exists()


def test_json_is_plain():
    st = BoxState("b", "suspect", (1.0, 2.0), "l3", None, (), 2.0)
    doc = freeze.to_json({"b": st})
    assert json.loads(json.dumps(doc)) == doc
    assert freeze.from_json(doc) == {"b": st}


@pytest.mark.parametrize("state, opens", [
    pytest.param(BoxState("b", "suspect", fail_times=(10.0, 20.0), layer="l4", last_time_s=20.0), True, id="suspect"),
    pytest.param(BoxState("b", "up", last_time_s=20.0), False, id="up"),
    pytest.param(BoxState("b", "frozen", layer="l2", freeze_start_s=5.0, last_time_s=20.0), False, id="frozen"),
    pytest.param(BoxState("b", "recovering", layer="l2", freeze_start_s=5.0, recovery_times=(20.0,)), False,
                 id="recovering"),
    pytest.param(BoxState("b", "stopped"), False, id="stopped"),
    pytest.param(BoxState("b", "maintenance"), False, id="maintenance"),
])
def test_an_alert_opens_the_freeze_of_a_suspect_box_only(state, opens):
    from agent.core.freeze import open_by_alert

    after, events = open_by_alert(state, 25.0)
    if not opens:
        assert (after, events) == (state, [])
        return
    assert (after.state, after.freeze_start_s, after.layer, after.fail_times) == ("frozen", 10.0, "l4", ())
    changed, opened = events
    assert (changed.old, changed.new) == ("suspect", "frozen")
    assert (opened.time_s, opened.start_s, opened.layer, opened.suspect_cycle_times, opened.opened_by) == (
        25.0, 10.0, "l4", (10.0, 20.0), "alert")
    # the next failing cycle continues the same freeze
    nxt, evs = step(after, Verdict(False, "l4"), 30.0, FreezeThresholds(3, 2))
    assert nxt.freeze_start_s == 10.0 and not [e for e in evs if type(e).__name__ == "FreezeOpened"]


def test_the_layer_at_detection_stays_with_the_freeze_while_it_deepens():
    """detected_layer: FreezeOpened's layer, carried by FreezeLayerChanged and FreezeClosed; cleared after."""
    states, _, events = run("4443..4", fail=2, rec=2)
    opened = [e for e in events if isinstance(e, FreezeOpened)]
    deeper = [e for e in events if isinstance(e, FreezeLayerChanged)]
    closed = [e for e in events if isinstance(e, FreezeClosed)]
    assert [e.layer for e in opened] == ["l4"]
    assert [(e.old_layer, e.new_layer, e.detected_layer) for e in deeper] == [("l4", "l3", "l4")]
    assert [(e.layer, e.detected_layer) for e in closed] == [("l3", "l4")]
    st = initial("b1")
    for i, c in enumerate("4443..4"):
        st, _ = step(st, verdict(c), float(i), FreezeThresholds(2, 2))
        if i in (1, 2, 3, 4):   # frozen or recovering
            assert st.detected_layer == "l4"
    assert st.state == "suspect" and st.detected_layer == ""   # closed at i=5, a new suspect run since


def test_an_alert_opened_freeze_is_detected_at_the_suspect_runs_layer():
    st, _ = step(initial("b"), verdict("4"), 1.0, FreezeThresholds(3, 2))
    st, _ = step(st, verdict("3"), 2.0, FreezeThresholds(3, 2))
    st, events = freeze.open_by_alert(st, 3.0)
    assert st.detected_layer == "l3" and [e.layer for e in events if isinstance(e, FreezeOpened)] == ["l3"]


def test_a_state_file_without_detected_layer_loads_and_its_open_freeze_stays_untagged(tmp_path):
    """A file written before detected_layer existed: the open freeze keeps an empty detected_layer (its points
    stay in the untagged series they were written to), a new freeze gets one."""
    path = tmp_path / "freeze.json"
    old = {"box": "b", "state": "frozen", "fail_times": [], "layer": "l2", "freeze_start_s": 5.0,
           "recovery_times": [], "last_time_s": 9.0}
    path.write_text(json.dumps({"version": freeze.STATE_FILE_VERSION, "boxes": {"b": old}}))
    st = freeze.load_state(str(path))["b"]
    assert st.freeze_open and st.detected_layer == ""
    th = FreezeThresholds(1, 1)
    st, events = step(st, verdict("."), 10.0, th)
    assert [(e.layer, e.detected_layer) for e in events if isinstance(e, FreezeClosed)] == [("l2", "")]
    st, events = step(st, verdict("7"), 11.0, th)
    assert st.detected_layer == "l7" and freeze.load_state(str(path))["b"].detected_layer == ""
    freeze.save_state(str(path), {"b": st})
    assert freeze.load_state(str(path))["b"].detected_layer == "l7"
