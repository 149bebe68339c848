"""The cycle pipeline with its real listeners and scripted probe results (pure: no sockets, no InfluxDB, no Docker)."""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from agent import wiring
from agent.bus import Bus
from agent.core.config import loads
from agent.core.correlation import CorrelationSettings, Correlator, memberships_from_config
from agent.pipeline import Pipeline
from agent.schedule import ProbeLoop
from agent.storage.store import StorageCounters
from probes import ProbeResult

BOXES = {"a": "198.51.100.11", "b": "198.51.100.12", "c": "198.51.100.13"}


def config_text(state_dir: str) -> str:
    text = f"""
[agent]
interval = 10
timeout = 1.0
state_dir = "{state_dir}"
site = "test"

[freeze]
fail_cycles = 2
recover_cycles = 2

[influxdb]
database = "vobox"

[remediation]
enabled = true

[correlation]
min_boxes = 3
window = 60
"""
    for name, ip in BOXES.items():
        text += f"""
[[box]]
name = "{name}"
kind = "container"
ipv4 = "{ip}"
tcp_ports = [1093]
container = "ctr-{name}"
network = "net1"
remediate = ["restart_container"]
"""
    return text


@dataclass
class RecordingStorage:
    """Stands in for agent.storage.Storage: keeps the points."""

    points: list = field(default_factory=list)

    def write(self, points):
        self.points.extend(points)

    def counters(self):
        return StorageCounters(0, 0, len(self.points), 0, 0, 0)

    def flush(self):
        return True


class Script:
    """A sweep whose failing addresses are set per cycle (everything else answers)."""

    def __init__(self):
        self.failing: set[str] = set()
        self.now = 1_800_000_000.0

    def clock(self):
        return self.now

    def sweep(self, targets, timeout_s, interface=None, recorder=None):
        return [ProbeResult(t.address, t.probe, t.port, t.address not in self.failing,
                            None if t.address in self.failing else 0.2,
                            "timeout" if t.address in self.failing else None, None, self.now + 0.1)
                for t in targets]


def make_agent(tmp_path, script=None, storage=None):
    """A pipeline with its real listeners and the real remediation engine and service (not started: the
    plans it decides stay queued, its status says what runs; no Docker is touched)."""
    from remediations import ActionContext, RemediationService, Remediator

    cfg = loads(config_text(str(tmp_path / "state")))
    script, storage = script or Script(), storage or RecordingStorage()
    correlator = Correlator(CorrelationSettings.from_config(cfg.correlation), memberships_from_config(cfg))
    engine = Remediator(cfg.remediation.policy(), [b.remediation_target() for b in cfg.boxes],
                        reprobe=lambda box: BOXES[box] not in script.failing)
    bus = Bus()   # the service's status reaches status.json by it
    rem = RemediationService(engine, ActionContext(docker_factory=_no_docker), clock=script.clock,
                             on_record=lambda r: storage.write([wiring.record_point(r, cfg.agent.site)]),
                             on_status=bus.publish)
    for listener in wiring.build_listeners(cfg, storage, remediation=rem):
        bus.add(listener)
    agent = Pipeline(cfg, bus, sweep=script.sweep, clock=script.clock, correlator=correlator)
    return agent, script, storage, rem


def _no_docker():
    raise AssertionError("the pipeline test must not reach Docker")


def run(agent, script, failing_per_cycle):
    for failing in failing_per_cycle:
        script.failing = {BOXES[b] for b in failing}
        agent.run_cycle()
        script.now += 10


def running(rem):
    """box -> what the service is running on it now (planned, not yet executed)."""
    return {box: st.busy for box, st in rem.status().items() if st.busy}


def remediation_points(storage):
    return [(p.tags["box"], p.tags["outcome"], p.tags["action"]) for p in storage.points
            if p.measurement == "remediation"]


def test_a_lone_freeze_is_handed_to_remediation(tmp_path):
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["a", "a", "a"])
    assert running(rem) == {"a": "running restart_container"}
    assert rem._queue.qsize() == 1  # one plan for one freeze, not one per frozen cycle
    assert [p for p in storage.points if p.measurement == "segment_freeze"] == []


def test_an_outage_seen_a_cycle_late_by_some_boxes_holds_every_box(tmp_path):
    """a fails one cycle before b and c (the outage began mid-sweep): a must not be restarted meanwhile."""
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["a", "abc", "abc", "abc"])
    assert running(rem) == {}
    seg = {}  # by time: a later write of the same time and tags replaces the earlier one, as in InfluxDB
    for p in storage.points:
        if p.measurement == "segment_freeze":
            seg[p.time_ns] = (p.tags["segment"], p.fields["boxes"], p.fields["open"])
    assert list(seg.values()) == [("net1", 3, 1)]  # opened with 2 (min_share 0.5), grown to 3
    held = [p for p in storage.points if p.measurement == "remediation"]
    # a waited a cycle (settling) before the segment freeze held every box: both holds are stored
    assert sorted(remediation_points(storage)) == [("a", "held", "restart_container")] * 2 + [
        ("b", "held", "restart_container"), ("c", "held", "restart_container")]
    assert all(p.fields["ok"] is None for p in held)
    assert sorted(p.fields["reason"].split(":")[0] for p in held) == ["segment freeze of net1 open since 2027-01-15T08"] * 3 + [
        "waiting a cycle"]


def test_a_segment_hold_ends_when_the_boxes_no_longer_fail_together(tmp_path):
    """Two unrelated faults at once (a, b of 3) make a segment freeze; when b recovers, a is judged alone."""
    import json

    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["ab", "ab", "ab"])
    assert running(rem) == {}
    status = json.loads((tmp_path / "state" / "status.json").read_text())["boxes"]
    assert status["a"]["held"]["kind"] == "segment" and status["a"]["held"]["segment"] == "net1"
    assert status["a"]["held"]["since_s"] is not None and status["c"]["held"] is None
    run(agent, script, ["a", "a"])      # b up for recover_cycles: its freeze closes, and with it the segment's
    assert running(rem) == {"a": "running restart_container"}
    status = json.loads((tmp_path / "state" / "status.json").read_text())["boxes"]
    assert status["a"]["held"] is None and status["a"]["state"] == "frozen"
    seg = {}
    for p in storage.points:
        if p.measurement == "segment_freeze":
            seg[p.time_ns] = p.fields["open"]
    assert list(seg.values()) == [0]


def test_a_hold_survives_an_agent_restart(tmp_path):
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["abc", "abc", "abc"])
    agent.close()
    agent2, _, storage2, rem2 = make_agent(tmp_path, script=script)
    run(agent2, script, ["abc"])
    assert running(rem2) == {}
    assert sorted(b for b, outcome, _ in remediation_points(storage2) if outcome == "held") == ["a", "b", "c"]


def test_a_freeze_point_is_rewritten_each_cycle_with_its_duration_so_far(tmp_path):
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["a", "a", "a", "a", "", ""])
    fr = [(p.time_ns, p.fields["open"], p.fields["duration_s"]) for p in storage.points if p.measurement == "freeze"]
    start = fr[0][0]
    assert all(t == start for t, _, _ in fr)  # one freeze: same time and tags each write, so it replaces
    assert [(o, d) for _, o, d in fr] == [(1, 10.0), (1, 20.0), (1, 30.0), (1, 40.0), (0, 40.0)]


@pytest.mark.parametrize("failing, up", [
    pytest.param(["a", ""], [1, 1], id="one-failing-cycle-is-no-freeze"),
    pytest.param(["a", "a", ""], [0, 0, 1], id="suspect-cycle-rewritten-to-0-when-the-freeze-opens"),
])
def test_up_is_0_exactly_over_the_freeze(tmp_path, failing, up):
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, failing)
    box_a = {}
    for p in storage.points:  # later writes of the same time replace earlier ones, as in InfluxDB
        if p.measurement == "box" and p.tags["box"] == "a":
            box_a[p.time_ns] = p.fields["up"]
    assert [box_a[t] for t in sorted(box_a)] == up


def test_one_box_whose_probes_raise_is_that_boxs_failure_the_others_are_judged(tmp_path):
    """A probe error for one box (here: its sweep raises) fails that box with the error; b and c stay up."""
    agent, script, storage, rem = make_agent(tmp_path)
    plain = script.sweep

    def sweep(targets, timeout_s, interface=None, recorder=None):
        if any(t.address == BOXES["a"] for t in targets):
            raise ValueError("arp target 198.51.100.11: simulated probe bug")
        return plain(targets, timeout_s, interface, recorder)

    agent.sweep = sweep
    agent.run_cycle()
    boxes = {p.tags["box"]: p.fields for p in storage.points if p.measurement == "box"}
    assert {b: f["state"] for b, f in boxes.items()} == {"a": "suspect", "b": "up", "c": "up"}
    errors = {p.fields.get("error") for p in storage.points if p.measurement == "probe" and p.tags["box"] == "a"}
    assert errors == {"probe error: ValueError: arp target 198.51.100.11: simulated probe bug"}
    status = __import__("json").loads((tmp_path / "state" / "status.json").read_text())
    assert status["error"] is None and status["boxes"]["a"]["state"] == "suspect"


def test_a_cycle_that_judges_no_box_says_so_in_status(tmp_path):
    agent, script, storage, rem = make_agent(tmp_path)
    agent.run_cycle()

    def broken(targets, timeout_s, interface=None, recorder=None):
        raise OSError("no such device")

    agent.sweep = broken
    script.now += 10
    summary = agent.run_cycle()
    assert summary.error and "no such device" in summary.error
    status = __import__("json").loads((tmp_path / "state" / "status.json").read_text())
    assert "no such device" in status["error"]
    assert all(b["judged_s"] < status["updated_s"] for b in status["boxes"].values())


def test_fast_confirmation_reprobes_only_the_unsettled_box_and_keeps_the_freeze_start(tmp_path):
    """A first failure is confirmed by quick passes over that box alone; the freeze starts at the first failure."""

    agent, script, storage, rem = make_agent(tmp_path)
    probed: list[set[str]] = []
    plain = script.sweep

    def sweep(targets, timeout_s, interface=None, recorder=None):
        probed.append({t.address for t in targets})
        script.now += 1.0   # each pass a second later
        return plain(targets, timeout_s, interface, recorder)

    agent.sweep = sweep
    script.failing = {BOXES["a"]}
    first_failure_s = script.now          # the cycle's time (read before its sweep)
    agent.run_cycle()
    assert agent.unsettled() == ("a",)
    assert agent.confirm_pass() == 1         # fail_cycles = 2: the cycle and one pass (of one box)
    assert agent.confirm_pass() == 0         # frozen is settled: nothing left to confirm
    assert probed[1] == {BOXES["a"]}         # healthy boxes were not probed again
    assert agent.states["a"].state == "frozen"
    assert agent.states["a"].freeze_start_s == first_failure_s
    opened = [p for p in storage.points if p.measurement == "freeze"]
    assert [(p.time_ns, p.fields["open"]) for p in opened] == [(int(first_failure_s * 1e9), 1)]
    agents = [p for p in storage.points if p.measurement == "agent"]
    assert len(agents) == 1                  # one agent point per cycle, none per confirmation pass


def test_a_confirmation_pass_with_nothing_unsettled_probes_nothing(tmp_path):
    agent, script, storage, rem = make_agent(tmp_path)
    probed: list[int] = []
    plain = script.sweep

    def sweep(targets, timeout_s, interface=None, recorder=None):
        probed.append(len(targets))
        return plain(targets, timeout_s, interface, recorder)

    agent.sweep = sweep
    agent.run_cycle()
    before = len(storage.points)
    assert agent.unsettled() == () and agent.confirm_pass() == 0
    assert len(probed) == 1 and len(storage.points) == before   # one sweep (the cycle); the pass did nothing


def test_confirmation_passes_write_no_box_points_and_rewrite_only_cycles(tmp_path):
    """mean(up) stays one value per cycle: passes add no `box` point, and the rewrite to up=0 hits cycles only."""

    agent, script, storage, rem = make_agent(tmp_path)
    plain = script.sweep

    def sweep(targets, timeout_s, interface=None, recorder=None):
        script.now += 1.0
        return plain(targets, timeout_s, interface, recorder)

    agent.sweep = sweep
    script.failing = {BOXES["a"]}
    cycle_times = []
    for _ in range(3):
        cycle_times.append(script.now)
        agent.run_cycle()
        while agent.confirm_pass():
            pass
        script.now += 10
    box_a = {}
    for p in storage.points:
        if p.measurement == "box" and p.tags["box"] == "a":
            box_a[p.time_ns] = p.fields["up"]
    assert sorted(box_a) == [int(t * 1e9) for t in cycle_times]
    assert [box_a[t] for t in sorted(box_a)] == [0, 0, 0]


@pytest.mark.parametrize("acting, layer", [
    pytest.param(True, "l4", id="our-restart-does-not-deepen-the-freeze"),
    pytest.param(False, "l2", id="a-deeper-failure-otherwise-deepens-it"),
])
def test_a_failure_caused_by_our_own_action_keeps_the_freeze_layer(tmp_path, acting, layer):
    agent, script, storage, rem = make_agent(tmp_path)
    agent.acting = lambda box: acting and box == "a"
    mode = {"a": "l4"}

    def sweep(targets, timeout_s, interface=None, recorder=None):
        out = []
        for t in targets:
            down = t.address == BOXES["a"] and (mode["a"] == "l2" or t.probe == "tcp")
            out.append(ProbeResult(t.address, t.probe, t.port, not down, None if down else 0.2,
                                   "timeout" if down else None, None, script.now + 0.1))
        return out

    agent.sweep = sweep
    for _ in range(2):
        agent.run_cycle()
        script.now += 10
    assert agent.states["a"].state == "frozen" and agent.states["a"].layer == "l4"
    mode["a"] = "l2"          # e.g. the container restarting: no ARP for a moment
    agent.run_cycle()
    assert agent.states["a"].layer == layer

# ---- the container state cache joined to the verdict ------------------------------------------------
def make_agent_with_states(tmp_path, states):
    agent, script, storage, rem = make_agent(tmp_path)
    agent.container_states = lambda: dict(states)
    return agent, script, storage, rem


def test_a_paused_container_whose_network_answers_is_an_l7_freeze_shown_and_stored(tmp_path):
    from remediations.docker_events import ContainerState

    states = {"a": ContainerState("paused", since_s=1_799_999_999.0)}
    agent, script, storage, rem = make_agent_with_states(tmp_path, states)
    run(agent, script, ["", ""])   # every probe answers, as for a paused container's kernel
    assert running(rem) == {"a": "running restart_container"}
    st = agent.listeners[-1].status(script.now)
    assert st["boxes"]["a"]["state"] == "frozen" and st["boxes"]["a"]["layer"] == "l7"
    assert st["boxes"]["a"]["container"]["state"] == "paused"
    assert st["boxes"]["a"]["container"]["since_s"] == 1_799_999_999.0
    assert st["boxes"]["b"]["container"] is None  # no state known for b
    docker_points = [p for p in storage.points if p.measurement == "probe" and p.tags["probe"] == "docker"]
    assert {p.fields["ok"] for p in docker_points} == {0} and docker_points[0].fields["error"] == "paused"
    box_a = [p.fields for p in storage.points if p.measurement == "box" and p.tags["box"] == "a" and "state" in p.fields]
    assert box_a[-1]["container_state"] == "paused" and box_a[-1]["layer"] == "l7"
    states["a"] = ContainerState("running", since_s=1_800_000_100.0)
    run(agent, script, ["", ""])
    assert agent.states["a"].state == "up"
    assert [(p.fields["open"], p.fields["layer"]) for p in storage.points if p.measurement == "freeze"][-1] == (0, "l7")


def test_a_container_stopped_by_an_operator_is_stopped_not_frozen_not_remediated_not_observed(tmp_path):
    from remediations.docker_events import ContainerState

    states = {"a": ContainerState("exited", since_s=1.0, operator_stopped=True, exit_code=143)}
    agent, script, storage, rem = make_agent_with_states(tmp_path, states)
    run(agent, script, ["a"] * 6)   # nothing answers: the container is stopped
    assert agent.states["a"].state == "stopped"
    assert [p for p in storage.points if p.measurement == "freeze"] == []
    assert running(rem) == {} and remediation_points(storage) == []
    box_a = [p for p in storage.points if p.measurement == "box" and p.tags["box"] == "a"]
    assert len(box_a) == 6 and all(p.fields["state"] == "stopped" for p in box_a)
    assert all(" up=" not in p.to_line() and ",up=" not in p.to_line() for p in box_a)  # not observed
    st = agent.listeners[-1].status(script.now)["boxes"]["a"]
    assert st["state"] == "stopped" and st["container"]["operator_stopped"] is True


def test_reprobe_counts_the_container_state(tmp_path):
    """Remediation's verification: a container still paused is not recovered although every probe answers."""
    from remediations.docker_events import ContainerState

    states = {"a": ContainerState("paused")}
    agent, script, storage, rem = make_agent_with_states(tmp_path, states)
    assert agent.reprobe("a") is False and agent.reprobe("b") is True
    states["a"] = ContainerState("running")
    assert agent.reprobe("a") is True


def test_confirmation_passes_are_spaced_start_to_start_so_failing_ones_run_back_to_back(tmp_path):
    """A failing pass lasts its timeout; when that is at least confirm_interval the next starts at once."""
    import time as _time

    agent, script, storage, rem = make_agent(tmp_path)
    plain = script.sweep
    starts = []

    def slow_sweep(targets, timeout_s, interface=None, recorder=None):
        starts.append(_time.monotonic())
        _time.sleep(0.3)   # a failing probe waits its timeout
        return plain(targets, timeout_s, interface, recorder)

    agent.sweep = slow_sweep
    script.failing = {BOXES["a"]}
    # the real probe loop: cycles every 5 s, passes 0.2 s apart start to start
    loop = ProbeLoop(agent.run_cycle, 5.0, 0.0, confirm_pass=agent.confirm_pass, unsettled=agent.unsettled,
                     confirm_interval_s=0.2)
    loop.start()
    try:
        deadline = _time.monotonic() + 4.0
        while agent.states.get("a") is None or agent.states["a"].state != "frozen":
            assert _time.monotonic() < deadline, "not confirmed before the next cycle slot"
            _time.sleep(0.02)
    finally:
        loop.stop()
    assert (loop.cycles, loop.passes) == (1, 1)     # fail_cycles = 2: the cycle and one pass, no second cycle
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(gaps) == 1 and 0.29 <= gaps[0] < 0.45, gaps   # back to back: the cycle's own 0.3 s, no 0.2 s wait
