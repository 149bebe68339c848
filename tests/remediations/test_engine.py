"""Pure ladder and safety tables for the remediation engine (no sockets, no Docker)."""
from __future__ import annotations

import pytest

from remediations.engine import Remediator
from remediations.model import ActionOutcome, RemediationPolicy, RemediationTarget

CTR = RemediationTarget(box="c1", kind="container", ipv4="192.0.2.10", container="ctr1", network="net1",
                        ladder=("reconnect_network", "restart_container"))
CTR2 = RemediationTarget(box="c2", kind="container", ipv4="192.0.2.11", container="ctr2", network="net1",
                         ladder=("reconnect_network", "restart_container"))
VM = RemediationTarget(box="vm1", kind="vm", ipv4="192.0.2.20", command=("reset", "{box}"),
                       ladder=("reconnect_network", "restart_container", "command"))

POLICY = RemediationPolicy(cooldown_s=30, max_per_box_per_hour=3, max_per_hour=20, verify_s=10,
                           reset_after_s=300, retry_deferred_s=5)


class Sim:
    """Drives a Remediator like the service does, with a fake clock and a scripted reprobe."""

    def __init__(self, policy=POLICY, targets=(CTR, CTR2, VM), healthy_after=None):
        self.now = 1000.0
        self.healthy = {}
        self.remediator = Remediator(policy, targets, reprobe=lambda box: self.healthy.get(box, False))
        self.ran: list[tuple[float, str, str, str]] = []
        self.records = []
        self.defer_next = 0

    def run(self, plans, ok=True):
        for plan in plans:
            self.ran.append((self.now, plan.box, plan.action, plan.trigger))
            if self.defer_next:
                self.defer_next -= 1
                out = ActionOutcome(False, "deferred: docker daemon unreachable", 0.1, self.now,
                                    deferred_reason="docker daemon unreachable")
            else:
                out = ActionOutcome(ok, "done" if ok else "failed", 0.1, self.now)
            self.remediator.on_outcome(plan, out, self.now)
        self.records += self.remediator.take_records()

    def state(self, box, state, layer="l2"):
        self.run(self.remediator.on_freeze_state(box, state, layer, self.now))

    def advance(self, seconds, step_s=1.0):
        end = self.now + seconds
        while self.now < end:
            self.now += step_s
            self.run(self.remediator.tick(self.now))

    def actions(self, box=None):
        return [a for (_, b, a, _) in self.ran if box is None or b == box]


@pytest.mark.parametrize("layer, kind_target, first", [
    pytest.param("l2", "c1", "reconnect_network", id="l2-container-reconnects-first"),
    pytest.param("l3", "c1", "reconnect_network", id="l3-container-reconnects-first"),
    pytest.param("l4", "c1", "restart_container", id="l4-skips-reconnect"),
    pytest.param("l3", "vm1", "command", id="vm-skips-docker-actions"),
])
def test_first_action_depends_on_layer_and_box(layer, kind_target, first):
    sim = Sim()
    sim.state(kind_target, "frozen", layer)
    assert sim.actions() == [first]


def test_no_action_before_frozen_and_only_once_per_freeze():
    sim = Sim()
    for state in ("suspect", "suspect"):
        sim.state("c1", state)
    assert sim.actions() == []
    sim.state("c1", "frozen")
    sim.state("c1", "frozen")
    sim.state("c1", "frozen")
    assert sim.actions() == ["reconnect_network"]


def test_recovered_after_verification_records_once_and_does_not_escalate():
    sim = Sim()
    sim.state("c1", "frozen")
    sim.healthy["c1"] = True
    sim.advance(9)
    assert sim.records == []  # verification window not over yet
    sim.advance(2)
    assert [(r.action, r.ok, r.recovered, r.trigger) for r in sim.records] == [
        ("reconnect_network", True, True, "auto")]
    sim.advance(120)
    assert sim.actions() == ["reconnect_network"]


def test_escalates_only_while_frozen_after_cooldown():
    sim = Sim()
    sim.state("c1", "frozen")
    sim.advance(15)  # verified: not recovered, but cooldown (30 s) not over
    assert sim.actions() == ["reconnect_network"]
    assert sim.records[0].recovered is False
    sim.advance(16)
    assert sim.actions() == ["reconnect_network", "restart_container"]
    t_first, t_second = sim.ran[0][0], sim.ran[1][0]
    assert t_second - t_first >= POLICY.cooldown_s


def test_no_escalation_when_box_came_back_during_verification():
    sim = Sim()
    sim.state("c1", "frozen")
    sim.state("c1", "recovering")
    sim.advance(60)
    assert sim.actions() == ["reconnect_network"]


def test_never_recovering_box_stops_at_per_box_cap_and_says_so_once():
    sim = Sim()
    sim.state("c1", "frozen")
    sim.advance(600)
    assert sim.actions("c1") == ["reconnect_network", "restart_container", "restart_container"]
    caps = [r for r in sim.records if r.detail.startswith("cap reached")]
    assert len(caps) == 1 and caps[0].ok is False and "max_per_box_per_hour=3" in caps[0].detail
    assert sim.remediator.status(sim.now)["c1"].capped.startswith("cap reached")
    # The sliding hour frees a slot: acting resumes, still frozen.
    sim.advance(3600, step_s=5)
    times = [t for (t, b, _, _) in sim.ran if b == "c1"]
    assert len(times) > 3
    assert all(later - earlier >= 3600 for earlier, later in zip(times, times[3:]))


def test_global_cap_counts_all_boxes():
    policy = RemediationPolicy(cooldown_s=0, max_per_box_per_hour=10, max_per_hour=2, verify_s=5)
    sim = Sim(policy=policy)
    sim.state("c1", "frozen")
    sim.state("c2", "frozen")
    sim.state("vm1", "frozen", "l3")
    assert sim.actions() == ["reconnect_network", "reconnect_network"]
    caps = [r for r in sim.records if r.box == "vm1"]
    assert len(caps) == 1 and "max_per_hour=2" in caps[0].detail


def test_ladder_resets_after_being_up_for_reset_after():
    sim = Sim()
    sim.state("c1", "frozen")
    sim.state("c1", "recovering")
    sim.advance(40)
    sim.state("c1", "up")
    sim.advance(100)
    sim.state("c1", "up")
    sim.state("c1", "frozen")  # back within reset_after_s: next step
    sim.state("c1", "recovering")
    sim.advance(40)
    sim.state("c1", "up")
    sim.advance(301)
    sim.state("c1", "up")      # up for reset_after_s: ladder back to step 0
    sim.state("c1", "frozen")
    assert sim.actions() == ["reconnect_network", "restart_container", "reconnect_network"]


def test_cooldown_refuses_explicit_requests_with_a_reason():
    sim = Sim()
    res = sim.remediator.request("c1", "restart_container", "alert", sim.now)
    assert res.accepted
    sim.run([res.planned])
    sim.advance(11)
    res2 = sim.remediator.request("c1", "restart_container", "alert", sim.now)
    assert not res2.accepted and res2.reason.startswith("cooldown:")


@pytest.mark.parametrize("box, action, reason", [
    pytest.param("nope", None, "unknown box 'nope'", id="unknown-box"),
    pytest.param("vm1", "restart_container", "has no container configured", id="vm-has-no-container"),
    pytest.param("c1", "command", "has no command configured", id="no-command"),
])
def test_request_refusals(box, action, reason):
    res = Sim().remediator.request(box, action, "manual", 1000.0)
    assert not res.accepted and reason in res.reason


def test_unknown_action_names_valid_ones():
    with pytest.raises(ValueError, match="valid: reconnect_network, restart_container, command"):
        Sim().remediator.request("c1", "reboot", "manual", 1000.0)
    with pytest.raises(ValueError, match="unknown remediation action 'reboot'"):
        Remediator(POLICY, [RemediationTarget("x", "vm", ladder=("reboot",))])


def test_busy_box_refuses_second_request():
    sim = Sim()
    sim.state("c1", "frozen")
    res = sim.remediator.request("c1", "restart_container", "alert", sim.now)
    assert not res.accepted and res.reason == "busy: verifying reconnect_network"


def test_deferred_is_recorded_retried_and_not_counted():
    sim = Sim()
    sim.defer_next = 2
    sim.state("c1", "frozen")
    assert [r.deferred for r in sim.records] == [True]
    assert sim.remediator.history_entries(sim.now) == []
    assert "deferred reconnect_network" in sim.remediator.status(sim.now)["c1"].busy
    sim.advance(5)
    sim.advance(5)
    assert sim.actions() == ["reconnect_network"] * 3
    assert [r.deferred for r in sim.records] == [True, True]
    sim.healthy["c1"] = True
    sim.advance(11)
    assert [(r.deferred, r.ok, r.recovered) for r in sim.records][-1] == (False, True, True)
    assert len(sim.remediator.history_entries(sim.now)) == 1


@pytest.mark.parametrize("policy, target, expect_dry", [
    pytest.param(RemediationPolicy(dry_run=True), CTR, True, id="global-dry-run"),
    pytest.param(RemediationPolicy(), RemediationTarget(**{**{f: getattr(CTR, f) for f in CTR.__slots__},
                                                           "dry_run": True}), True, id="box-dry-run"),
    pytest.param(RemediationPolicy(), CTR, False, id="live"),
])
def test_dry_run_flags(policy, target, expect_dry):
    sim = Sim(policy=policy, targets=(target,))
    sim.state("c1", "frozen")
    sim.advance(policy.verify_s + 1)
    assert [r.dry_run for r in sim.records] == [expect_dry]


def test_disabled_does_not_act_automatically_but_manual_works():
    sim = Sim(policy=RemediationPolicy(enabled=False))
    sim.state("c1", "frozen")
    sim.advance(200)
    assert sim.actions() == []
    assert not sim.remediator.request("c1", None, "alert", sim.now).accepted
    assert sim.remediator.request("c1", None, "manual", sim.now).accepted


def test_failed_action_is_judged_at_once():
    sim = Sim()
    plans = sim.remediator.on_freeze_state("c1", "frozen", "l2", sim.now)
    sim.run(plans, ok=False)
    sim.advance(1)
    assert [(r.ok, r.recovered) for r in sim.records] == [(False, False)]


def test_reprobe_error_counts_as_not_recovered():
    def boom(box):
        raise RuntimeError("probe exploded")
    r = Remediator(POLICY, [CTR], reprobe=boom)
    plan, = r.on_freeze_state("c1", "frozen", "l2", 0.0)
    r.on_outcome(plan, ActionOutcome(True, "done", 0.1, 0.0), 0.0)
    r.tick(11.0)
    rec, = r.take_records()
    assert rec.recovered is False


def test_held_box_is_not_acted_on_until_the_hold_ends():
    sim = Sim()
    for _ in range(3):
        sim.run(sim.remediator.on_freeze_state("c1", "frozen", "l2", sim.now, held=True))
        sim.advance(60)
    assert sim.actions() == []
    sim.state("c1", "frozen")
    assert sim.actions() == ["reconnect_network"]
