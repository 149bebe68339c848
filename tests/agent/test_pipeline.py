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


def test_independent_faults_on_a_segment_that_answers_are_box_freezes(tmp_path):
    """Two unrelated faults at once (a, b of 3) while c answers ARP and ping: no segment freeze, both acted on.

    (Was: a segment freeze held both until b recovered; issue 26: a segment that answers works.)
    """
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["ab", "ab"])
    assert running(rem) == {"a": "running restart_container", "b": "running restart_container"}
    assert [p for p in storage.points if p.measurement == "segment_freeze"] == []
    assert [r for r in remediation_points(storage) if r[1] == "held"] == []


def test_a_segment_hold_ends_when_the_segment_answers_again(tmp_path):
    """Every box down: one segment freeze holds them; the first cycle in which c answers ends it, and says so:
    a and b are then judged alone (acted on, still frozen)."""
    import json

    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["abc", "abc", "abc"])
    assert running(rem) == {}
    status = json.loads((tmp_path / "state" / "status.json").read_text())["boxes"]
    assert status["a"]["held"]["kind"] == "segment" and status["a"]["held"]["segment"] == "net1"
    assert status["a"]["held"]["since_s"] is not None
    assert "remediate --force" in status["a"]["held"]["reason"]
    run(agent, script, ["ab"])      # c answers: the segment works, the hold's evidence is gone
    assert running(rem) == {"a": "running restart_container", "b": "running restart_container"}
    status = json.loads((tmp_path / "state" / "status.json").read_text())["boxes"]
    assert status["a"]["held"] is None and status["a"]["state"] == "frozen"
    seg = {}
    for p in storage.points:
        if p.measurement == "segment_freeze":
            seg[p.time_ns] = (p.fields["open"], p.fields["reason"])
    ((open_, reason),) = seg.values()
    assert open_ == 0 and reason.startswith("the segment answers again: box c answered ARP/NDP or ping at "), reason


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

@pytest.mark.parametrize("acting", [pytest.param(True, id="during-our-action"), pytest.param(False, id="otherwise")])
def test_a_mac_change_during_our_own_action_is_recorded_as_ours(tmp_path, acting):
    """A Podman restart gives the box a new MAC: the mac_change the next ARP answer shows is ours (ours=1)."""
    from agent.core.macwatch import MacWatch

    agent, script, storage, rem = make_agent(tmp_path)
    agent.macwatch = MacWatch()
    agent.acting = lambda box: acting and box == "a"
    mac = {"a": "02:00:00:00:00:01"}

    def sweep(targets, timeout_s, interface=None, recorder=None):
        return [ProbeResult(t.address, t.probe, t.port, True, 0.2, None,
                            mac["a"] if t.probe == "arp" and t.address == BOXES["a"] else None, script.now + 0.1)
                for t in targets]

    agent.sweep = sweep
    agent.run_cycle()
    script.now += 10
    mac["a"] = "02:00:00:00:00:02"
    agent.run_cycle()
    points = [p for p in storage.points if p.measurement == "mac_change"]
    assert [(p.tags["box"], p.fields["old"], p.fields["new"]) for p in points] == [
        ("a", "02:00:00:00:00:01", "02:00:00:00:00:02")]
    assert points[0].fields.get("ours") == (1 if acting else None)


# ---- the container state cache joined to the verdict ------------------------------------------------
def make_agent_with_states(tmp_path, states):
    agent, script, storage, rem = make_agent(tmp_path)
    agent.container_states = lambda: dict(states)
    return agent, script, storage, rem


def test_a_paused_container_whose_network_answers_is_an_l7_freeze_shown_and_stored(tmp_path):
    from agent.engines.watcher import ContainerState

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
    from agent.engines.watcher import ContainerState

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
    from agent.engines.watcher import ContainerState

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


# ---- alerts as a second witness (issue 26.3) ---------------------------------------------------------


def alert(agent, rem, box, action=None):
    return wiring.alert_handler(rem, lambda: agent)(box, action)


def test_an_alert_about_a_suspect_box_opens_its_freeze_and_acts_at_once(tmp_path):
    """fail_cycles = 2: after one failing cycle a is suspect; an alert about it is the second witness."""
    agent, script, storage, rem = make_agent(tmp_path)
    first_s = script.now
    run(agent, script, ["a"])
    assert agent.states["a"].state == "suspect" and running(rem) == {}
    result = alert(agent, rem, "a")
    assert (result.accepted, result.outcome, result.action) == (True, "queued", "restart_container")
    assert running(rem) == {"a": "running restart_container"} and rem._queue.qsize() == 1
    st = agent.states["a"]
    assert (st.state, st.freeze_start_s, st.layer) == ("frozen", first_s, "l2")
    freeze = [p for p in storage.points if p.measurement == "freeze"]
    assert [(p.tags["box"], p.time_ns, p.fields["open"], p.fields["layer"], p.fields["opened_by"]) for p in freeze] == [
        ("a", int(first_s * 1e9), 1, "l2", "alert")]
    # the suspect cycle's box point (written up=1) is rewritten up=0: the report counts the outage from its start
    rewrites = [p for p in storage.points if p.measurement == "box" and p.tags["box"] == "a" and p.fields.get("up") == 0]
    assert [p.time_ns for p in rewrites] == [int(first_s * 1e9)]
    run(agent, script, ["a"])   # the next cycle continues the same freeze, the engine plans nothing more
    assert agent.states["a"].freeze_start_s == first_s and rem._queue.qsize() == 1


@pytest.mark.parametrize("cycles, box, reason", [
    pytest.param(["a"], "b", "box 'b' is not frozen: it is healthy: every probe answers", id="healthy"),
    pytest.param([], "a", "box 'a' is not frozen: it was never probed", id="never-probed"),
])
def test_an_alert_about_a_box_the_agent_does_not_see_failing_is_refused_with_its_reason(tmp_path, cycles, box,
                                                                                        reason):
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, cycles)
    before = dict(agent.states)
    busy = running(rem)
    result = alert(agent, rem, box)
    assert (result.accepted, result.outcome) == (False, "refused") and result.reason.startswith(reason), result
    assert agent.states == before and running(rem) == busy
    assert ("refused" in [o for b, o, _ in remediation_points(storage) if b == box])


def test_an_alert_on_a_dead_segment_is_held(tmp_path):
    """Every box failing, nothing answers: the alert's freeze joins the segment's (opened now), the alert is held."""
    agent, script, storage, rem = make_agent(tmp_path)
    run(agent, script, ["abc", "abc"])            # all three frozen: a segment freeze holds them
    run(agent, script, ["abc"])
    result = alert(agent, rem, "a")
    assert (result.accepted, result.outcome) == (False, "held") and result.reason.startswith("segment freeze of net1")
    assert running(rem) == {}


# ---- the [correlation] witness (issue 26.1) ------------------------------------------------------------

WITNESS = "198.51.100.1"


def make_witness_agent(tmp_path, script=None):
    from remediations import ActionContext, RemediationService, Remediator

    cfg = loads(config_text(str(tmp_path / "state")).replace("window = 60", f'window = 60\nwitness = "{WITNESS}"'))
    script, storage = script or Script(), RecordingStorage()
    correlator = Correlator(CorrelationSettings.from_config(cfg.correlation), memberships_from_config(cfg))
    engine = Remediator(cfg.remediation.policy(), [b.remediation_target() for b in cfg.boxes],
                        reprobe=lambda box: BOXES[box] not in script.failing)
    rem = RemediationService(engine, ActionContext(docker_factory=_no_docker), clock=script.clock,
                             on_record=lambda r: storage.write([wiring.record_point(r, cfg.agent.site)]))
    agent = Pipeline(cfg, wiring.build_listeners(cfg, storage, remediation=rem), sweep=script.sweep,
                     clock=script.clock, correlator=correlator)
    return agent, script, storage, rem


def test_the_witness_is_probed_every_cycle_stored_and_never_remediated(tmp_path):
    agent, script, storage, rem = make_witness_agent(tmp_path)
    probed = []
    sweep = script.sweep

    def recording_sweep(targets, *args, **kw):
        probed.append([(t.address, t.probe) for t in targets if t.address == WITNESS])
        return sweep(targets, *args, **kw)

    agent.sweep = recording_sweep
    run(agent, script, ["", ""])
    assert probed == [[(WITNESS, "arp"), (WITNESS, "icmp")]] * 2
    points = [p for p in storage.points if p.measurement == "witness"]
    assert sorted((p.tags["probe"], p.tags["address"], p.fields["ok"]) for p in points) == [
        ("arp", WITNESS, 1), ("arp", WITNESS, 1), ("icmp", WITNESS, 1), ("icmp", WITNESS, 1)]
    assert WITNESS not in {p.tags.get("address") for p in storage.points if p.measurement == "probe"}
    assert set(rem.status()) == set(BOXES)   # the witness is no box: nothing can remediate it


@pytest.mark.parametrize("witness_answers, segment_freezes, acting", [
    pytest.param(True, 0, {"a", "b", "c"}, id="witness-answers-every-box-is-its-own-freeze"),
    pytest.param(False, 1, set(), id="witness-silent-too-one-segment-freeze-holds-all"),
])
def test_every_box_down_while_the_witness_answers_is_no_segment_freeze(tmp_path, witness_answers, segment_freezes,
                                                                        acting):
    agent, script, storage, rem = make_witness_agent(tmp_path)
    for _ in range(3):
        script.failing = {BOXES[b] for b in "abc"} | (set() if witness_answers else {WITNESS})
        agent.run_cycle()
        script.now += 10
    seg = {p.time_ns for p in storage.points if p.measurement == "segment_freeze"}
    assert len(seg) == segment_freezes
    assert set(running(rem)) == acting


def test_a_bad_witness_is_one_clear_error(tmp_path):
    from agent.core.config import ConfigError

    for value, message in (('"gateway"', 'correlation.witness: expected an IPv4 or IPv6 address, got "gateway"'),
                           ("5", "correlation.witness: expected an IPv4 or IPv6 address, got 5")):
        with pytest.raises(ConfigError) as exc:
            loads(config_text(str(tmp_path)).replace("window = 60", f"window = 60\nwitness = {value}"))
        assert str(exc.value) == message


def test_a_released_hold_says_why(tmp_path):
    """BoxReleased carries the evidence that ended the hold (issue 26: a hold never outlives its evidence)."""
    from agent.core.events import BoxReleased, CycleEvents

    agent, script, storage, rem = make_agent(tmp_path)
    seen = []
    agent.bus.subscribe(CycleEvents, lambda msg: seen.extend(msg.events), name="recording")
    run(agent, script, ["abc", "abc", "abc", "ab"])
    released = sorted((e.box, e.kind, e.reason) for e in seen if isinstance(e, BoxReleased))
    assert [(b, k) for b, k, _ in released] == [("a", "segment"), ("b", "segment"), ("c", "segment")]
    for _box, _, reason in released[:2]:
        assert reason.startswith("segment freeze of net1 over: the segment answers again (box c answered ARP/NDP or "
                                 "ping at "), reason
    assert released[2][2] == "no longer frozen (recovering)"


def test_an_address_conflict_is_an_event_a_point_a_hold_and_no_remediation(tmp_path):
    """a's address answered from two MACs in one sweep while its service fails: the conflict opens (event,
    point, metric), the freeze is held ("address_conflict"), nothing is remediated; one MAC again: released."""
    from agent.core.macwatch import MacWatch

    class Conflict(Script):
        macs: tuple = ("02:00:00:00:00:0a", "02:00:00:00:00:0b")

        def sweep(self, targets, timeout_s, interface=None, recorder=None):
            out = []
            for r in super().sweep(targets, timeout_s, interface, recorder):
                if r.target == BOXES["a"] and r.probe == "arp":
                    r = ProbeResult(r.target, r.probe, None, True, 0.2, None, self.macs[0], r.time_s, macs=self.macs)
                elif r.target == BOXES["a"] and r.probe == "tcp":
                    r = ProbeResult(r.target, r.probe, r.port, False, None, "timeout", None, r.time_s, layer="l4")
                out.append(r)
            return out

    script = Conflict()
    agent, _, storage, rem = make_agent(tmp_path, script=script)
    agent.macwatch = MacWatch()
    run(agent, script, ["", "", ""])
    assert agent.states["a"].state == "frozen"
    assert running(rem) == {}
    assert [(b, o) for b, o, _ in remediation_points(storage)] in ([], [("a", "held")]), remediation_points(storage)
    conflict = [p for p in storage.points if p.measurement == "address_conflict"]
    assert [(p.tags["box"], p.tags["address"], p.fields["macs"], p.fields["open"]) for p in conflict] == \
        [("a", BOXES["a"], "02:00:00:00:00:0a,02:00:00:00:00:0b", 1)]
    st = agent.listeners[-1].status(script.now)["boxes"]["a"]
    assert st["held"]["kind"] == "address_conflict", st
    assert st["held"]["reason"] == (f"address conflict: {BOXES['a']} answered from MACs "
                                    "02:00:00:00:00:0a, 02:00:00:00:00:0b"), st
    assert [p for p in storage.points if p.measurement == "mac_change"] == []
    script.macs = ("02:00:00:00:00:0a",)
    run(agent, script, [""])
    closed = [p for p in storage.points if p.measurement == "address_conflict"][-1]
    assert closed.fields["open"] == 0
    run(agent, script, [""])
    assert running(rem) == {"a": "running restart_container"}   # judged alone again: the ladder runs


def test_the_engine_going_away_is_one_event_holding_the_frozen_container_boxes_then_each_is_judged_alone(tmp_path):
    """The container engine is unreachable (the state cache says so): one EngineDownChanged, the frozen
    container boxes held ("engine_down"), no action; back: one closing event, holds released, the ladder runs."""
    from agent.engines.watcher import ContainerStates

    agent, script, storage, rem = make_agent(tmp_path)
    cache = ContainerStates()
    agent.container_states = cache
    run(agent, script, ["", ""])
    cache.set_engine_down(script.now - 1, "ConnectionError: engine gone")
    run(agent, script, [("a", "b")] * 3)   # their containers went with the engine
    assert agent.states["a"].state == agent.states["b"].state == "frozen"
    assert [p for p in storage.points if p.measurement == "segment_freeze"] == []   # the engine, not the segment
    assert running(rem) == {}
    st = agent.listeners[-1].status(script.now)["boxes"]
    assert st["a"]["held"]["kind"] == "engine_down" and st["a"]["held"]["reason"] == \
        "engine down: ConnectionError: engine gone", st["a"]
    down = [p for p in storage.points if p.measurement == "engine_down"]
    assert [(p.fields["open"], p.fields["reason"]) for p in down] == [(1, "ConnectionError: engine gone")]
    cache.set_engine_down(None)
    run(agent, script, ["a"])
    down = [p for p in storage.points if p.measurement == "engine_down"]
    assert [p.fields["open"] for p in down] == [1, 0] and down[1].fields["duration_s"] > 0
    run(agent, script, ["a"])
    assert running(rem) == {"a": "running restart_container"}
    assert agent.listeners[-1].status(script.now)["boxes"]["a"]["held"] is None


class LayerScript(Script):
    """A sweep where only the probe kinds in `failing_kinds` fail for the failing addresses (tcp only: l4)."""

    failing_kinds: frozenset[str] = frozenset()

    def sweep(self, targets, timeout_s, interface=None, recorder=None):
        bad = [t.address in self.failing and (not self.failing_kinds or t.probe in self.failing_kinds)
               for t in targets]
        return [ProbeResult(t.address, t.probe, t.port, not b, None if b else 0.2, "timeout" if b else None, None,
                            self.now + 0.1) for t, b in zip(targets, bad, strict=True)]


def test_every_write_of_a_freeze_carries_its_detected_layer_across_a_deepening_and_a_restart(tmp_path):
    """issue 31 item 6: the freeze point's tag detected_layer is the layer at detection in every write (open, each
    cycle's rewrite, the deepening, the close), also after a restart, so the freeze stays one series."""
    script = LayerScript()
    agent, script, storage, _ = make_agent(tmp_path, script)
    script.failing_kinds = frozenset({"tcp"})
    run(agent, script, ["a", "a", "a"])                 # l4: tcp only
    script.failing_kinds = frozenset()
    run(agent, script, ["a"])                           # deepens: nothing answers
    agent.close()
    agent2, _, storage2, _ = make_agent(tmp_path, script)   # restarted on the same state_dir
    run(agent2, script, ["a", "", ""])
    writes = [p for p in storage.points + storage2.points if p.measurement == "freeze"]
    assert len(writes) >= 5 and len({p.time_ns for p in writes}) == 1
    assert {p.tags.get("detected_layer") for p in writes} == {"l4"}
    assert writes[0].fields["layer"] == "l4" and writes[-1].fields["layer"] == "l2"
    assert writes[-1].fields["open"] == 0
