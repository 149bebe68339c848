"""Table tests for the pure cycle logic: targets per box and layer classification."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from agent.core.cycle import Verdict as CycleVerdict, box_targets, classify, plan_cycle, verdicts, with_container_state
from agent.engines.watcher import ContainerState
from probes import ProbeResult, Target


@dataclass(frozen=True)
class Box:
    name: str
    ipv4: str | None
    ipv6: str | None
    tcp_ports: tuple[int, ...]


def res(probe: str, ok: bool, port: int | None = None, t: float = 100.0) -> ProbeResult:
    return ProbeResult("192.0.2.10", probe, port, ok, 1.0 if ok else None, None if ok else "timeout",
                       None, t)


def test_dual_stack_box_gets_every_probe():
    box = Box("b", "192.0.2.10", "2001:db8::10", (1093, 8084))
    assert box_targets(box) == [
        Target("192.0.2.10", "arp"), Target("192.0.2.10", "icmp"),
        Target("192.0.2.10", "tcp", 1093), Target("192.0.2.10", "tcp", 8084),
        Target("2001:db8::10", "ndp"), Target("2001:db8::10", "icmp6"),
        Target("2001:db8::10", "tcp", 1093), Target("2001:db8::10", "tcp", 8084),
    ]


def test_ipv6_only_box_gets_no_ipv4_probes():
    assert {t.probe for t in box_targets(Box("b", None, "2001:db8::10", (22,)))} == {"ndp", "icmp6", "tcp"}


@pytest.mark.parametrize(
    "oks, expected",
    [
        pytest.param({"arp": 1, "icmp": 1, "tcp": 1}, (True, "none"), id="all-ok"),
        pytest.param({"arp": 0, "icmp": 0, "tcp": 0}, (False, "l2"), id="l2-nothing-answers"),
        pytest.param({"arp": 1, "icmp": 0, "tcp": 0}, (False, "l3"), id="l3-arp-only"),
        pytest.param({"arp": 1, "icmp": 1, "tcp": 0}, (False, "l4"), id="l4-ping-only"),
        pytest.param({"arp": 0, "icmp": 1, "tcp": 1}, (False, "l2"), id="l2-wins-even-if-ip-answers"),
        pytest.param({"ndp": 1, "icmp6": 0, "tcp": 1}, (False, "l3"), id="l3-ipv6"),
    ],
)
def test_classify_picks_the_deepest_failing_layer(oks, expected):
    assert classify([res(p, bool(ok), 1093 if p == "tcp" else None) for p, ok in oks.items()]) == expected


def test_verdicts_split_results_per_box_and_take_latest_time():
    boxes = [Box("a", "192.0.2.10", None, (1093,)), Box("b", "192.0.2.11", None, ())]
    plan = plan_cycle(boxes)
    results = [res("arp", True, t=1.0), res("icmp", True, t=2.0), res("tcp", False, 1093, t=3.0),
               res("arp", True, t=1.5), res("icmp", True, t=1.6)]
    out = verdicts(plan, results, fallback_time_s=0.0)
    assert [(v.box, v.healthy, v.layer, v.time_s) for v in out] == [("a", False, "l4", 3.0), ("b", True, "none", 1.6)]


def test_verdicts_refuse_a_short_result_list():
    plan = plan_cycle([Box("a", "192.0.2.10", None, ())])
    with pytest.raises(ValueError, match="1 results for 2 targets"):
        verdicts(plan, [res("arp", True)], 0.0)


# ---- a container box's Docker state joined to its verdict (pseudo probe "docker") ----------------------


def _ok_verdict(healthy=True, layer="none"):
    r = ProbeResult("192.0.2.10", "icmp", None, healthy, 0.1 if healthy else None, None if healthy else "timeout",
                    None, 5.0)
    return CycleVerdict("b1", healthy, layer, (r,), 5.0)


@pytest.mark.parametrize("cs,probes_ok,want", [
    pytest.param(ContainerState("running"), True, (True, "none", False, True), id="running"),
    pytest.param(ContainerState("paused"), True, (False, "l7", False, False), id="paused-network-answers-l7"),
    pytest.param(ContainerState("running", health="unhealthy"), True, (False, "l7", False, False), id="unhealthy"),
    pytest.param(ContainerState("running", health="starting"), True, (True, "none", False, True), id="starting"),
    pytest.param(ContainerState("exited", exit_code=1), False, (False, "l2", False, False), id="exited-crash"),
    pytest.param(ContainerState("restarting"), True, (False, "l2", False, False), id="restarting-l2"),
    pytest.param(ContainerState("dead"), True, (False, "l2", False, False), id="dead-l2"),
    pytest.param(ContainerState("exited", operator_stopped=True), False, (True, "none", True, None),
                 id="stopped-by-operator-not-judged"),
])
def test_with_container_state(cs, probes_ok, want):
    v = with_container_state(_ok_verdict(probes_ok, "none" if probes_ok else "l3"), "ctr1", cs)
    docker = [r for r in v.results if r.probe == "docker"]
    assert (v.healthy, v.layer, v.stopped) == want[:3]
    if want[3] is None:
        assert docker == []
    else:
        assert len(docker) == 1 and docker[0].ok is want[3] and docker[0].target == "ctr1"
    assert v.container is cs


def test_exited_container_is_l2_even_when_probes_say_less():
    v = with_container_state(_ok_verdict(False, "l3"), "ctr1", ContainerState("exited", exit_code=1))
    assert v.layer == "l2" and v.results[-1].error == "exited"


def test_restart_stopped_judges_an_operator_stop_as_failure():
    cs = ContainerState("exited", operator_stopped=True, exit_code=143)
    v = with_container_state(_ok_verdict(False, "l2"), "ctr1", cs, restart_stopped=True)
    assert (v.healthy, v.layer, v.stopped) == (False, "l2", False)


def test_a_box_stopped_before_stays_stopped_while_its_container_is_down_since_then_whatever_the_exit_code():
    # `docker stop` of a service that exits 0 on SIGTERM, seen by an agent restarted since: the resync
    # cannot tell a stop from a crash, but the box was `stopped` at its last cycle and the container has
    # not run since.
    down = ContainerState("exited", since_s=100.0, exit_code=0)
    v = with_container_state(_ok_verdict(False, "l2"), "ctr1", down, stopped_at_s=150.0)
    assert (v.healthy, v.stopped) == (True, True)
    assert with_container_state(_ok_verdict(False, "l2"), "ctr1", ContainerState("removed"), stopped_at_s=150.0).stopped
    # Started and crashed after that last stopped cycle: a failure again.
    crashed = ContainerState("exited", since_s=160.0, exit_code=0)
    v = with_container_state(_ok_verdict(False, "l2"), "ctr1", crashed, stopped_at_s=150.0)
    assert (v.healthy, v.layer, v.stopped) == (False, "l2", False)
    # Not stopped before: an exit 0 is a failure; restart_stopped still judges a stop.
    assert not with_container_state(_ok_verdict(False, "l2"), "ctr1", down).stopped
    assert not with_container_state(_ok_verdict(False, "l2"), "ctr1", down, True, stopped_at_s=150.0).stopped


def test_unknown_container_state_leaves_the_verdict():
    v0 = _ok_verdict()
    assert with_container_state(v0, "ctr1", None) is v0


def test_a_paused_container_stays_l7_when_its_backlog_fills_but_a_network_fault_still_counts():
    paused = ContainerState("paused")
    tcp_dead = ProbeResult("192.0.2.10", "tcp", 1093, False, None, "timeout", None, 5.0)
    v = CycleVerdict("b1", False, "l4", (res("icmp", True), tcp_dead), 5.0)
    assert with_container_state(v, "ctr1", paused).layer == "l7"
    v = CycleVerdict("b1", False, "l2", (res("arp", False), tcp_dead), 5.0)
    assert with_container_state(v, "ctr1", paused).layer == "l2"
    running = with_container_state(CycleVerdict("b1", False, "l4", (res("icmp", True), tcp_dead), 5.0), "ctr1",
                                   ContainerState("running"))
    assert running.layer == "l4"
