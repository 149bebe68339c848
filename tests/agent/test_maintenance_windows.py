"""Maintenance windows: the pure core (ad-hoc and recurring windows, boundaries, DST), the config, the freeze
state machine in maintenance, the file and its source, the pipeline, the engine's refusals, the command."""
from __future__ import annotations

import json
import os
import re
import stat
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from agent import maintenance as store
from agent.cli import main
from agent.core import config
from agent.core.events import FreezeClosed, FreezeOpened, MaintenanceChanged
from agent.core.freeze import FreezeThresholds, Verdict, initial, step, up_decision
from agent.core.maintenance import Active, Recurring, Window, end_boxes, from_json, in_maintenance, to_json
from remediations.engine import Remediator
from remediations.model import RemediationPolicy, RemediationTarget

BOXES = ("a", "b", "c")


def utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# ---- the pure core ------------------------------------------------------------------------------

@pytest.mark.parametrize("now,expected", [
    pytest.param(99.999, set(), id="before-start"),
    pytest.param(100.0, {"a", "b"}, id="at-start-inclusive"),
    pytest.param(199.999, {"a", "b"}, id="just-before-end"),
    pytest.param(200.0, set(), id="at-end-exclusive"),
])
def test_an_adhoc_window_is_half_open(now, expected):
    w = Window(("a", "b"), 100.0, 200.0, "upgrade", "alice (uid 1000)")
    found = in_maintenance(BOXES, [w], (), now)
    assert set(found) == expected
    if expected:
        assert found["a"] == Active("upgrade", "alice (uid 1000)", 200.0, "command")


def test_a_window_for_all_boxes_and_one_until_ended():
    found = in_maintenance(BOXES, [Window(None, 0.0, None, "all down")], (), 1e9)
    assert set(found) == set(BOXES) and found["c"].until_s is None


def test_where_windows_overlap_the_longest_one_is_shown():
    ws = [Window(("a",), 0.0, 50.0, "short"), Window(("a",), 10.0, 90.0, "long"), Window(("a",), 20.0, 60.0, "mid")]
    assert in_maintenance(BOXES, ws, (), 30.0)["a"].reason == "long"
    assert in_maintenance(BOXES, ws + [Window(("a",), 0.0, None, "open")], (), 30.0)["a"].reason == "open"


@pytest.mark.parametrize("now,inside", [
    pytest.param("2026-11-29 01:59:59", False, id="sunday-before"),
    pytest.param("2026-11-29 02:00:00", True, id="sunday-at-start"),
    pytest.param("2026-11-29 03:29:59", True, id="sunday-inside"),
    pytest.param("2026-11-29 03:30:00", False, id="sunday-at-end"),
    pytest.param("2026-11-30 02:30:00", False, id="monday-not-a-day"),
])
def test_a_weekly_window(now, inside):
    r = Recurring(("a",), (6,), 120, 5400.0, "UTC", "weekly")
    assert (r.occurrence(utc(now)) is not None) == inside
    assert set(in_maintenance(BOXES, (), [r], utc(now))) == ({"a"} if inside else set())


def test_a_recurring_window_across_midnight_counts_from_its_start_day():
    r = Recurring(None, (4,), 23 * 60, 3 * 3600.0, "UTC", "friday night")   # Fri 23:00 .. Sat 02:00
    assert r.occurrence(utc("2026-11-28 01:59:00")) == (utc("2026-11-27 23:00:00"), utc("2026-11-28 02:00:00"))
    assert r.occurrence(utc("2026-11-28 02:00:00")) is None
    assert r.occurrence(utc("2026-11-28 23:30:00")) is None   # a Saturday start is not one of its days


def test_a_recurring_window_follows_its_time_zone_across_dst():
    r = Recurring(None, (), 2 * 60 + 30, 3600.0, "Europe/Zurich", "nightly")
    winter = datetime(2026, 1, 15, 2, 30, tzinfo=ZoneInfo("Europe/Zurich")).timestamp()
    summer = datetime(2026, 7, 15, 2, 30, tzinfo=ZoneInfo("Europe/Zurich")).timestamp()
    assert r.occurrence(winter) == (winter, winter + 3600) and r.occurrence(summer) == (summer, summer + 3600)
    assert summer - datetime(2026, 7, 15, tzinfo=UTC).timestamp() == 30 * 60   # 02:30 CEST = 00:30 UTC


def test_ending_some_boxes_keeps_the_others_and_drops_windows_over():
    ws = [Window(None, 0.0, None, "all"), Window(("a", "b"), 0.0, 500.0, "ab"), Window(("c",), 0.0, 50.0, "over"),
          Window(("a",), 900.0, 1000.0, "later")]
    left = end_boxes(ws, ["a"], BOXES, 100.0)
    assert left == [Window(("b", "c"), 0.0, None, "all"), Window(("b",), 0.0, 500.0, "ab"),
                    Window(("a",), 900.0, 1000.0, "later")]
    assert set(in_maintenance(BOXES, left, (), 100.0)) == {"b", "c"}
    assert end_boxes(ws, None, BOXES, 100.0) == [Window(("a",), 900.0, 1000.0, "later")]


def test_the_file_document_round_trips_and_refuses_garbage():
    ws = [Window(None, 1.5, None, "x", None), Window(("a",), 2.0, 3.0, "y", "bob (uid 0)")]
    assert from_json(json.loads(json.dumps(to_json(ws)))) == ws
    with pytest.raises(ValueError, match="version"):
        from_json({"windows": []})
    with pytest.raises(ValueError, match=r"windows\[0\]"):
        from_json({"version": 1, "windows": [{"boxes": "a", "start_s": 1, "reason": "r"}]})


# ---- the freeze state machine ---------------------------------------------------------------------

TH = FreezeThresholds(3, 2)


def test_maintenance_closes_an_open_freeze_and_opens_none_then_a_persisting_fault_freezes_again():
    st, t = initial("a"), 100.0
    for _ in range(3):
        st, evs = step(st, Verdict(False, "l2"), t, TH)
        t += 10
    assert st.state == "frozen" and st.freeze_start_s == 100.0
    st, evs = step(st, Verdict(False, "l2", maintenance=True), t, TH)   # at 130
    assert st.state == "maintenance" and [type(e) for e in evs if e.__class__.__name__ != "StateChanged"] == [
        FreezeClosed]
    assert evs[-1].end_s == 130.0 and up_decision(initial("a"), st).up is None
    for _ in range(10):   # failing all along: nothing opens
        t += 10
        st, evs = step(st, Verdict(False, "l2", maintenance=True), t, TH)
        assert st.state == "maintenance" and not [e for e in evs if isinstance(e, FreezeOpened)]
    opened = []
    for _ in range(3):
        t += 10
        st, evs = step(st, Verdict(False, "l2"), t, TH)
        opened += [e for e in evs if isinstance(e, FreezeOpened)]
    assert st.state == "frozen" and opened[0].start_s == t - 20   # a new freeze, from the first cycle after


def test_a_suspect_run_is_dropped_by_maintenance():
    st, _ = step(initial("a"), Verdict(False, "l3"), 0.0, TH)
    st, evs = step(st, Verdict(False, "l3", maintenance=True), 10.0, TH)
    assert st.state == "maintenance" and st.fail_times == () and not [e for e in evs if isinstance(e, FreezeClosed)]
    st, _ = step(st, Verdict(True), 20.0, TH)
    assert st.state == "up"


# ---- config ---------------------------------------------------------------------------------------

BASE = """
[agent]
state_dir = "{state}"
[[box]]
name = "a"
kind = "vm"
ipv4 = "192.0.2.5"
[[box]]
name = "b"
kind = "vm"
ipv4 = "192.0.2.6"
"""


def test_a_recurring_window_in_the_config():
    cfg = config.loads(BASE.format(state="/tmp/x") + """
[[maintenance]]
boxes = ["b"]
weekdays = ["sat", "sun"]
start = "02:00"
duration = 7200
reason = "weekend patching"
timezone = "Europe/Zurich"
[[maintenance]]
boxes = "all"
start = "23:30"
duration = 600
reason = "nightly backup"
""")
    first, second = cfg.maintenance
    assert first.recurring() == Recurring(("b",), (5, 6), 120, 7200.0, "Europe/Zurich", "weekend patching")
    assert second.boxes is None and second.recurring().weekdays == ()


@pytest.mark.parametrize("body,error", [
    pytest.param('boxes = ["x"]\nstart = "02:00"\nduration = 60\nreason = "r"',
                 'maintenance[0].boxes[0]: unknown box "x"', id="unknown-box"),
    pytest.param('boxes = "some"\nstart = "02:00"\nduration = 60\nreason = "r"',
                 "maintenance[0].boxes: expected a list of a box name", id="boxes-not-all"),
    pytest.param('boxes = "all"\nstart = "2:00"\nduration = 60\nreason = "r"',
                 'maintenance[0].start: expected a time "HH:MM"', id="start-format"),
    pytest.param('boxes = "all"\nstart = "02:00"\nduration = 0\nreason = "r"',
                 "maintenance[0].duration: expected a number > 0", id="duration-zero"),
    pytest.param('boxes = "all"\nstart = "02:00"\nduration = 60', "maintenance[0].reason: missing", id="no-reason"),
    pytest.param('boxes = "all"\nstart = "02:00"\nduration = 60\nreason = "r"\nweekdays = ["sunday"]',
                 'maintenance[0].weekdays[0]: expected one of "mon"', id="weekday"),
    pytest.param('boxes = "all"\nstart = "02:00"\nduration = 60\nreason = "r"\ntimezone = "CEST+2"',
                 "maintenance[0].timezone: expected an IANA time zone name", id="timezone"),
    pytest.param('boxes = "all"\nstart = "02:00"\nduration = 60\nreason = "r"\nduraton = 5',
                 "maintenance[0].duraton: unknown key (did you mean 'duration'?", id="typo"),
])
def test_config_errors_name_the_key_path(body, error):
    with pytest.raises(config.ConfigError) as exc:
        config.loads(BASE.format(state="/tmp/x") + "[[maintenance]]\n" + body + "\n")
    assert len(exc.value.errors) == 1 and exc.value.errors[0].startswith(error), exc.value.errors


# ---- the file and the source ----------------------------------------------------------------------

def test_the_file_is_private_and_the_source_rereads_it_only_when_it_changes(tmp_path, caplog):
    path = store.path_in(str(tmp_path))
    src = store.MaintenanceSource(path, [Recurring(("c",), (), 0, 86400.0, "UTC", "always")])
    assert set(src(1000.0, BOXES)) == {"c"}
    store.start(path, ["a"], 1000.0, 60.0, "upgrade", "alice (uid 1000)")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert src(1001.0, BOXES)["a"] == Active("upgrade", "alice (uid 1000)", 1060.0, "command")
    assert "a" not in src(1060.0, BOXES)
    with open(path, "w") as fh:   # a half-written file: the windows read before stay
        fh.write("{")
    assert "a" in src(1001.0, BOXES) and "unreadable" in caplog.text
    with pytest.raises(ValueError):
        store.start(path, ["b"], 1000.0, None, "x", None)   # a file that is not ours is left alone
    os.remove(path)
    assert set(src(1001.0, BOXES)) == {"c"}


# ---- the remediation engine ------------------------------------------------------------------------

CTR = RemediationTarget(box="c1", kind="container", ipv4="192.0.2.10", container="ctr1", network="net1",
                        ladder=("reconnect_network", "restart_container"))
POLICY = RemediationPolicy(cooldown_s=30, max_per_box_per_hour=3, max_per_hour=20, verify_s=10)


@pytest.mark.parametrize("trigger,force", [("alert", False), ("manual", False), ("manual", True)])
def test_the_engine_refuses_every_request_in_maintenance_even_forced(trigger, force):
    eng = Remediator(POLICY, [CTR])
    eng.freeze_opened("c1", "l2", 100.0, 100.0)
    eng.maintenance("c1", "kernel upgrade", 100.0)
    res = eng.request("c1", "reconnect_network", trigger, 101.0, force=force, who="bob")
    assert not res.accepted and res.outcome == "refused" and res.reason == "maintenance: kernel upgrade"
    rec = eng.take_records()
    assert [(r.outcome, r.reason) for r in rec] == [("refused", "maintenance: kernel upgrade")]
    assert eng.tick(102.0) == []   # and nothing automatic either
    eng.maintenance("c1", None, 103.0)
    assert [p.action for p in eng.tick(104.0)] == ["reconnect_network"]


# ---- the pipeline ----------------------------------------------------------------------------------

def test_the_pipeline_marks_points_opens_no_freeze_and_announces_the_window(tmp_path):
    from agent.listeners.points import PointsListener
    from agent.pipeline import Pipeline
    from probes import ProbeResult

    cfg = config.loads(BASE.format(state=str(tmp_path / "state")))
    now = [1_800_000_000.0]
    active: dict[str, Active] = {}

    class Sink:
        points: list = []

        def write(self, pts):
            self.points.extend(pts)

        def counters(self):
            from agent.storage.store import StorageCounters
            return StorageCounters(0, 0, 0, 0, 0, 0)

    from agent.listeners import CycleListener

    class Catch(CycleListener):   # subscribes to the cycle's events
        name = "catch"
        events: list = []

        def on_events(self, evs):
            self.events.extend(evs)

    sink, catch = Sink(), Catch()

    def sweep(targets, timeout_s, interface=None, recorder=None):   # box a never answers
        return [ProbeResult(t.address, t.probe, t.port, t.address != "192.0.2.5", None, None, None, now[0])
                for t in targets]

    p = Pipeline(cfg, [PointsListener(sink, None, {"a": "vm", "b": "vm"}), catch], sweep=sweep,
                 clock=lambda: now[0], maintenance=lambda t, names: dict(active))
    p.run_cycle()
    active["a"] = Active("upgrade", "alice (uid 1000)", None, "command")
    for _ in range(6):
        now[0] += 10
        p.run_cycle()
    assert p.states["a"].state == "maintenance" and p.states["b"].state == "up"
    assert not [e for e in catch.events if isinstance(e, FreezeOpened)]
    changes = [e for e in catch.events if isinstance(e, MaintenanceChanged)]
    assert [(e.box, e.active, e.reason) for e in changes] == [("a", True, "upgrade")]
    marked = [pt for pt in sink.points if pt.tags.get("maintenance") == "true"]
    assert {pt.measurement for pt in marked} == {"box", "probe"} and {pt.tags["box"] for pt in marked} == {"a"}
    assert all(pt.fields.get("up") is None for pt in marked if pt.measurement == "box")
    # A restart keeps the window known (no second start event); the end is announced once.
    p2 = Pipeline(cfg, [catch], sweep=sweep, clock=lambda: now[0], maintenance=lambda t, names: dict(active))
    catch.events.clear()
    del active["a"]
    now[0] += 10
    p2.run_cycle()
    assert [(e.box, e.active) for e in catch.events if isinstance(e, MaintenanceChanged)] == [("a", False)]
    assert p2.states["a"].state == "suspect"
    maint = [pt for pt in sink.points if pt.measurement == "maintenance"]
    assert [(pt.tags["event"], pt.tags["origin"], pt.fields["reason"]) for pt in maint] == [
        ("start", "agent", "upgrade")]


# ---- the command -------------------------------------------------------------------------------------

def test_the_command_starts_lists_and_ends_and_says_when_influxdb_is_unreachable(tmp_path, capsys):
    state = tmp_path / "state"
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(BASE.format(state=state) + '[influxdb]\nurl = "http://127.0.0.1:9"\nwrite_timeout = 1\n'
                        + '[[maintenance]]\nboxes = ["b"]\nstart = "00:00"\nduration = 86400\nreason = "always"\n')
    c = str(cfg_path)
    assert main(["maintenance", "start", "-c", c, "a", "--for", "2h", "--reason", "kernel"]) == 0
    out = capsys.readouterr()
    assert "maintenance started for a" in out.out and "not recorded in InfluxDB" in out.err
    assert main(["maintenance", "list", "-c", c, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["boxes"]["a"]["reason"] == "kernel" and listed["boxes"]["b"]["source"] == "config"
    assert 7190 <= listed["boxes"]["a"]["until_s"] - listed["now_s"] <= 7200
    assert main(["maintenance", "end", "-c", c, "--all"]) == 0
    out = capsys.readouterr()
    assert "maintenance ended for a" in out.out and "box b stays in maintenance" in out.err
    assert main(["maintenance", "list", "-c", c]) == 0
    assert "a " not in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("argv,message", [
    (["start", "x"], "unknown box 'x'"),
    (["start"], "name boxes or give --all"),
    (["start", "a", "--all"], "name boxes or give --all"),
    (["start", "a", "--for", "soon"], "--for:"),
    (["end", "zz"], "unknown box 'zz'"),
])
def test_the_command_refuses_bad_arguments(tmp_path, capsys, argv, message):
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(BASE.format(state=tmp_path / "state"))
    assert main(["maintenance", argv[0], "-c", str(cfg_path), *argv[1:]]) == 2
    assert message in capsys.readouterr().err
    assert not os.path.exists(store.path_in(str(tmp_path / "state")))


def test_the_command_fails_when_the_file_cannot_be_written(tmp_path, capsys):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o500)
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(BASE.format(state=state))
    try:
        if os.geteuid() == 0:   # root writes anyway: make the file's place a directory instead
            os.chmod(state, 0o700)
            os.mkdir(store.path_in(str(state)))
        assert main(["maintenance", "start", "-c", str(cfg_path), "a"]) == 1
        assert "NOT STARTED" in capsys.readouterr().err
    finally:
        os.chmod(state, 0o700)


def test_the_webhook_refuses_an_alert_for_a_box_in_maintenance_with_the_reason():
    """The real receiver over HTTP on loopback, the real service and engine (not started: nothing runs)."""
    import http.client

    from remediations import ActionContext, RemediationService, WebhookReceiver

    records = []
    eng = Remediator(POLICY, [CTR])
    svc = RemediationService(eng, ActionContext(docker_factory=lambda: None), on_record=records.append)
    eng.freeze_opened("c1", "l2", 100.0, 100.0)
    svc.maintenance("c1", "rack move")
    rx = WebhookReceiver("127.0.0.1", 0, "tok", ["c1"], lambda b, a: svc.request(b, a, "alert"), max_bytes=4096)
    rx.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", rx.address[1], timeout=10)
        body = {"status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": "VOBoxFrozen",
                                                                               "box": "c1"}}]}
        conn.request("POST", "/webhook", json.dumps(body).encode(),
                     {"Content-Type": "application/json", "Authorization": "Bearer tok"})
        resp = conn.getresponse()
        reply = json.loads(resp.read())
        conn.close()
    finally:
        rx.stop()
    assert resp.status == 202 and reply["queued"] == [], reply
    assert [r["reason"] for r in reply["refused"]] == ["maintenance: rack move"], reply
    assert [(r.outcome, r.trigger, r.reason) for r in records] == [("refused", "alert", "maintenance: rack move")]


# ---- the report ----------------------------------------------------------------------------------------

def test_the_report_shows_maintenance_time_and_leaves_it_out_of_every_figure():
    from agent.report import stats
    from agent.report.html import render_html
    from agent.report.text import render_text

    def report(maintenance_cycles: int):
        boxes = (stats.BoxRecord("c1", "container", 8640, 8600, maintenance_cycles=maintenance_cycles),
                 stats.BoxRecord("v1", "vm", 8640, 8640))
        freezes = (stats.FreezeRecord("c1", "container", 3_600_000, "l2", 400.0, False),)
        return stats.build_report(stats.FleetObservation(0, 86_400_000 + maintenance_cycles * 10_000, 10.0, None,
                                                         boxes, freezes, (), 86400, first_ms=0, last_ms=86_390_000))

    plain, with_window = report(0), report(360)   # one hour in maintenance on top of the same judged day
    c1, c1m = plain.boxes[0], with_window.boxes[0]
    assert c1m.maintenance_s == 3600.0 and c1.maintenance_s == 0.0
    assert (c1m.availability, c1m.rate_per_box_day, c1m.mtbf_s, c1m.mttr_s, c1m.box_days) == (
        c1.availability, c1.rate_per_box_day, c1.mtbf_s, c1.mttr_s, c1.box_days)
    assert with_window.kinds[0].maintenance_s == 3600.0
    text = render_text(with_window)
    header = text.splitlines()[3].split()
    assert header[-1] == "maintenance" and "1h" in text and "left out of" in text
    assert re.search(r"<th[^>]*>maintenance</th>", render_html(with_window))


def test_with_discovery_a_window_may_name_a_box_not_in_the_config(tmp_path, capsys):
    cfg = config.loads(BASE.format(state="/tmp/x") + '[discovery]\ndocker = true\n[[maintenance]]\nboxes = ["ctr-9"]\n'
                       'start = "02:00"\nduration = 60\nreason = "r"\n')
    assert cfg.maintenance[0].boxes == ("ctr-9",)
    state = tmp_path / "state"
    state.mkdir()
    (state / "status.json").write_text(json.dumps({"boxes": {"found-1": {"kind": "container"}}}))
    cfg_path = tmp_path / "agent.toml"
    cfg_path.write_text(BASE.format(state=state) + '[influxdb]\nurl = "http://127.0.0.1:9"\nwrite_timeout = 1\n')
    assert main(["maintenance", "start", "-c", str(cfg_path), "found-1"]) == 0   # seen by the agent
    assert main(["maintenance", "start", "-c", str(cfg_path), "ctr-9"]) == 2     # discovery off: unknown
    capsys.readouterr()
    cfg_path.write_text(cfg_path.read_text() + "[discovery]\ndocker = true\n")
    assert main(["maintenance", "start", "-c", str(cfg_path), "ctr-9"]) == 0
    assert "not seen yet" in capsys.readouterr().err
    assert {w.boxes for w in store.load(store.path_in(str(state)))} == {("found-1",), ("ctr-9",)}
