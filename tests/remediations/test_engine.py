"""Pure ladder and safety tables for the remediation engine (no sockets, no Docker): freeze events in, plans out."""
from __future__ import annotations

import pytest

from remediations.engine import Remediator
from remediations.model import ActionOutcome, HistoryEntry, RemediationPolicy, RemediationTarget

CTR = RemediationTarget(box="c1", kind="container", ipv4="192.0.2.10", container="ctr1", network="net1",
                        ladder=("reconnect_network", "restart_container"))
CTR2 = RemediationTarget(box="c2", kind="container", ipv4="192.0.2.11", container="ctr2", network="net1",
                         ladder=("reconnect_network", "restart_container"))
VM = RemediationTarget(box="vm1", kind="vm", ipv4="192.0.2.20", command=("reset", "{box}"),
                       ladder=("reconnect_network", "restart_container", "command"))

POLICY = RemediationPolicy(cooldown_s=30, max_per_box_per_hour=3, max_per_hour=20, verify_s=10,
                           reset_after_s=300, retry_deferred_s=5)


class Sim:
    """Drives a Remediator like the listener and the service do, with a fake clock and a scripted reprobe."""

    def __init__(self, policy=POLICY, targets=(CTR, CTR2, VM)):
        self.now = 1000.0
        self.healthy: dict[str, bool] = {}
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

    def tick(self):
        self.run(self.remediator.tick(self.now))

    def freeze(self, box, layer="l2"):
        self.healthy[box] = False
        self.remediator.freeze_opened(box, layer, self.now, self.now)
        self.tick()

    def deepen(self, box, layer):
        self.remediator.freeze_layer_changed(box, layer, self.now)
        self.tick()

    def close(self, box):
        self.healthy[box] = True
        self.remediator.freeze_closed(box, self.now)
        self.tick()

    def advance(self, seconds, step_s=1.0):
        end = self.now + seconds
        while self.now < end:
            self.now += step_s
            self.tick()

    def actions(self, box=None):
        return [a for (_, b, a, _) in self.ran if box is None or b == box]

    def outcomes(self, box=None):
        return [(r.action, r.outcome) for r in self.records if box is None or r.box == box]


R, S, C = "reconnect_network", "restart_container", "command"


# Steps: open:LAYER (a freeze opens), deepen:LAYER, fail (the running action does not recover the box:
# verify, then cooldown), ok (it recovers the box; the freeze closes), defer (Docker unreachable for the
# next action), wait (past the deferral retry), cool (past the cooldown).
@pytest.mark.parametrize("box, steps, expected", [
    pytest.param("c1", ["open:l2"], [R], id="l2-starts-at-reconnect"),
    pytest.param("c1", ["open:l3"], [R], id="l3-starts-at-reconnect"),
    pytest.param("c1", ["open:l4"], [S], id="l4-starts-at-restart"),
    pytest.param("c1", ["open:l7"], [S], id="l7-starts-at-restart"),
    pytest.param("c1", ["open:l7", "fail", "deepen:l3", "cool"], [S, S, R], id="l7-deepened-to-l3-reconnects"),
    pytest.param("vm1", ["open:l3"], [C], id="vm-starts-at-command"),
    pytest.param("c1", ["open:l2", "fail"], [R, S], id="l2-failed-reconnect-escalates"),
    pytest.param("c1", ["open:l2", "fail", "fail"], [R, S, S], id="exhausted-repeats-last-step"),
    pytest.param("c1", ["open:l4", "fail"], [S, S], id="l4-never-reconnects"),
    pytest.param("c1", ["open:l4", "fail", "deepen:l2", "cool"], [S, S, R],
                 id="deepened-freeze-runs-the-skipped-step"),
    pytest.param("c1", ["open:l4", "deepen:l2", "fail"], [S, R], id="deepened-while-verifying"),
    pytest.param("c1", ["open:l4", "ok", "open:l2"], [S, R], id="lab-sequence-l4-then-l2-restart-then-reconnect"),
    pytest.param("c1", ["open:l2", "fail", "ok", "open:l2"], [R, S, R], id="each-freeze-starts-its-own-ladder"),
    pytest.param("c1", ["defer", "open:l2", "wait", "fail"], [R, R, S], id="deferred-step-is-not-consumed"),
    pytest.param("vm1", ["open:l4", "fail", "deepen:l2", "cool"], [C, C, C], id="vm-only-command"),
])
def test_ladder_belongs_to_the_freeze(box, steps, expected):
    sim = Sim()
    for step in steps:
        word, _, layer = step.partition(":")
        if word == "open":
            sim.freeze(box, layer)
        elif word == "deepen":
            sim.deepen(box, layer)
        elif word == "fail":
            sim.advance(POLICY.verify_s + POLICY.cooldown_s + 1)
        elif word == "ok":
            sim.healthy[box] = True
            sim.advance(POLICY.verify_s + 1)
            sim.close(box)
            sim.advance(POLICY.cooldown_s + 1)
        elif word == "defer":
            sim.defer_next = 1
        elif word == "cool":
            sim.advance(POLICY.cooldown_s + 1)
        elif word == "wait":
            sim.advance(POLICY.retry_deferred_s + 1)
    assert sim.actions(box) == expected


def test_no_action_before_the_tick_and_only_once_per_freeze():
    sim = Sim()
    sim.remediator.freeze_opened("c1", "l2", sim.now, sim.now)
    assert sim.actions() == []
    sim.tick()
    sim.remediator.freeze_opened("c1", "l2", sim.now, sim.now)  # the same freeze again (e.g. after a restart)
    sim.tick()
    assert sim.actions() == [R]


def test_recovered_after_verification_records_once_and_does_not_escalate():
    sim = Sim()
    sim.freeze("c1")
    sim.healthy["c1"] = True
    sim.advance(9)
    assert sim.records == []  # verification window not over yet
    sim.advance(2)
    assert [(r.action, r.ok, r.recovered, r.trigger, r.outcome) for r in sim.records] == [(R, True, True, "auto", "done")]
    sim.advance(120)
    assert sim.actions() == [R]


def test_no_action_while_recovering_and_none_after_the_freeze_closed():
    sim = Sim()
    sim.freeze("c1")
    sim.remediator.recovering("c1", sim.now)
    sim.advance(60)
    assert sim.actions() == [R]
    sim.remediator.relapsed("c1", sim.now)
    sim.tick()
    assert sim.actions() == [R, S]
    sim.close("c1")
    sim.advance(120)
    assert sim.actions() == [R, S]


def test_never_recovering_box_stops_at_per_box_cap_and_says_so_once():
    sim = Sim()
    sim.freeze("c1")
    sim.advance(600)
    assert sim.actions("c1") == [R, S, S]
    caps = [r for r in sim.records if r.outcome == "refused"]
    assert len(caps) == 1 and "max_per_box_per_hour=3" in caps[0].reason and caps[0].ok is False
    assert sim.remediator.status(sim.now)["c1"].capped.startswith("cap reached")
    sim.advance(3600, step_s=5)  # the sliding hour frees a slot: acting resumes, still frozen
    times = [t for (t, b, _, _) in sim.ran if b == "c1"]
    assert len(times) > 3
    assert all(later - earlier >= 3600 for earlier, later in zip(times, times[3:], strict=False))


def test_global_cap_counts_all_boxes():
    policy = RemediationPolicy(cooldown_s=0, max_per_box_per_hour=10, max_per_hour=2, verify_s=5)
    sim = Sim(policy=policy)
    sim.freeze("c1")
    sim.freeze("c2")
    sim.freeze("vm1", "l3")
    assert sim.actions() == [R, R]
    caps = [r for r in sim.records if r.box == "vm1"]
    assert [(r.outcome, r.action) for r in caps] == [("refused", C)] and "max_per_hour=2" in caps[0].reason


def test_dry_run_describes_each_step_once_and_spends_nothing():
    sim = Sim(policy=RemediationPolicy(dry_run=True, cooldown_s=30, max_per_box_per_hour=1, verify_s=10))
    sim.freeze("c1")
    sim.advance(200)
    assert sim.actions("c1") == [R, S]            # the whole ladder, described, past the cap of 1
    assert sim.outcomes("c1") == [(R, "dry_run"), (S, "dry_run")]
    assert all(r.dry_run and not r.ok and not r.recovered for r in sim.records)
    assert sim.remediator.history_entries(sim.now) == []
    assert sim.remediator.status(sim.now)["c1"].actions_last_hour == 0


def test_manual_dry_run_is_recorded_at_once_and_spends_nothing():
    sim = Sim()
    res = sim.remediator.request("c1", S, "manual", sim.now, dry_run=True)
    assert res.accepted and res.outcome == "dry_run" and res.planned.dry_run
    sim.run([res.planned])
    assert sim.outcomes() == [(S, "dry_run")]
    assert sim.remediator.history_entries(sim.now) == []
    assert sim.remediator.request("c1", S, "manual", sim.now).accepted   # no cooldown from a dry run


@pytest.mark.parametrize("setup, box, action, trigger, outcome, reason", [
    pytest.param(None, "c1", S, "alert", "refused", "is not frozen", id="alert-for-a-healthy-box"),
    pytest.param("frozen", "c1", "reboot", "alert", "refused", "unknown action 'reboot'", id="unknown-action"),
    pytest.param("frozen", "c1", S, "alert", "refused", "busy: verifying reconnect_network", id="busy"),
    pytest.param("held", "c1", S, "alert", "held", "segment freeze of net1", id="held"),
    pytest.param("cooldown", "c1", S, "alert", "refused", "cooldown:", id="cooldown"),
    pytest.param(None, "vm1", S, "manual", "refused", "has no container configured", id="vm-has-no-container"),
    pytest.param(None, "c1", C, "manual", "refused", "has no command configured", id="no-command"),
])
def test_every_refused_request_is_recorded_with_its_reason(setup, box, action, trigger, outcome, reason):
    sim = Sim()
    if setup == "frozen":
        sim.freeze(box)
    elif setup == "held":
        sim.remediator.held(box, "segment", "segment freeze of net1 open", sim.now)
        sim.freeze(box)
    elif setup == "cooldown":
        sim.freeze(box)
        sim.advance(POLICY.verify_s + 1)
    sim.records.clear()
    res = sim.remediator.request(box, action, trigger, sim.now)
    assert not res.accepted and reason in res.reason and res.outcome == outcome
    rec, = sim.remediator.take_records()
    assert (rec.box, rec.trigger, rec.outcome, rec.ok, rec.recovered) == (box, trigger, outcome, False, False)
    assert reason in rec.reason


def test_unknown_box_is_answered_not_recorded():
    sim = Sim()
    res = sim.remediator.request("nope", None, "alert", sim.now)
    assert not res.accepted and "unknown box 'nope'" in res.reason and sim.remediator.take_records() == []
    with pytest.raises(ValueError, match="unknown remediation action 'reboot'"):
        Remediator(POLICY, [RemediationTarget("x", "vm", ladder=("reboot",))])


def test_force_bypasses_cooldown_and_caps_once_and_is_recorded_with_who_and_why():
    sim = Sim(policy=RemediationPolicy(cooldown_s=30, max_per_box_per_hour=1, verify_s=10))
    sim.freeze("c1")
    sim.advance(11)
    res = sim.remediator.request("c1", S, "manual", sim.now)
    assert not res.accepted and res.reason.startswith("cooldown")
    res = sim.remediator.request("c1", S, "manual", sim.now, force=True, who="alice", why="vendor ticket 42")
    assert res.accepted and res.planned.forced
    sim.run([res.planned])
    sim.advance(11)
    done = [r for r in sim.records if r.outcome == "done" and r.action == S]
    assert [(r.forced, r.who, r.why) for r in done] == [(True, "alice", "vendor ticket 42")]
    later = sim.remediator.request("c1", S, "manual", sim.now + 100)  # once: the cap applies again
    assert not later.accepted and "cap reached" in later.reason
    with pytest.raises(ValueError, match="manual"):
        sim.remediator.request("c1", S, "alert", sim.now, force=True)


def test_reset_clears_halt_and_budget_and_is_recorded():
    sim = Sim()
    sim.freeze("c1")
    sim.advance(600)
    assert sim.remediator.status(sim.now)["c1"].capped
    n = len(sim.actions("c1"))
    sim.remediator.reset("c1", sim.now, who="alice", why="cable replaced")
    st = sim.remediator.status(sim.now)["c1"]
    assert st.capped is None and st.actions_last_hour == 0
    rec = sim.remediator.take_records()[-1]
    assert (rec.action, rec.outcome, rec.who, rec.why) == ("reset", "reset", "alice", "cable replaced")
    sim.tick()
    assert len(sim.actions("c1")) == n + 1   # acting resumes at once, the ladder from its start
    assert sim.actions("c1")[-1] == R


def test_resets_made_elsewhere_drop_older_history():
    sim = Sim()
    sim.freeze("c1")
    sim.advance(600)
    sim.remediator.apply_resets({"c1": sim.now})
    assert sim.remediator.status(sim.now)["c1"].actions_last_hour == 0
    from remediations.model import HistoryEntry
    sim.remediator.merge_history([HistoryEntry(sim.now - 10, "c1", R, "auto")])  # older than the reset
    assert sim.remediator.status(sim.now)["c1"].actions_last_hour == 0


def test_deferred_is_recorded_retried_and_not_counted():
    sim = Sim()
    sim.defer_next = 2
    sim.freeze("c1")
    assert sim.outcomes() == [(R, "deferred")]
    assert sim.remediator.history_entries(sim.now) == []
    assert "deferred reconnect_network" in sim.remediator.status(sim.now)["c1"].busy
    sim.advance(5)
    sim.advance(5)
    assert sim.actions() == [R] * 3
    assert sim.outcomes() == [(R, "deferred")] * 2
    sim.healthy["c1"] = True
    sim.advance(11)
    assert [(r.outcome, r.ok, r.recovered) for r in sim.records][-1] == ("done", True, True)
    assert len(sim.remediator.history_entries(sim.now)) == 1


def test_disabled_does_not_act_automatically_but_manual_works():
    sim = Sim(policy=RemediationPolicy(enabled=False))
    sim.freeze("c1")
    sim.advance(200)
    assert sim.actions() == []
    assert not sim.remediator.request("c1", None, "alert", sim.now).accepted
    assert sim.remediator.request("c1", None, "manual", sim.now).accepted


def test_failed_action_is_judged_at_once():
    sim = Sim()
    sim.remediator.freeze_opened("c1", "l2", sim.now, sim.now)
    sim.run(sim.remediator.tick(sim.now), ok=False)
    sim.advance(1)
    assert [(r.ok, r.recovered, r.outcome) for r in sim.records] == [(False, False, "done")]


def test_reprobe_error_counts_as_not_recovered():
    def boom(box):
        raise RuntimeError("probe exploded")
    r = Remediator(POLICY, [CTR], reprobe=boom)
    r.freeze_opened("c1", "l2", 0.0, 0.0)
    plan, = r.tick(0.0)
    r.on_outcome(plan, ActionOutcome(True, "done", 0.1, 0.0), 0.0)
    r.tick(11.0)
    rec, = r.take_records()
    assert rec.recovered is False


@pytest.mark.parametrize("kind, recorded", [pytest.param("segment", True, id="segment-hold-recorded-once"),
                                            pytest.param("settling", True, id="settling-hold-recorded-once")])
def test_held_box_is_not_acted_on_until_the_hold_ends_then_judged_alone(kind, recorded):
    sim = Sim()
    sim.remediator.held("c1", kind, "held for a test", sim.now)
    sim.freeze("c1")
    sim.advance(200)
    assert sim.actions() == []
    assert sim.outcomes() == ([(R, "held")] if recorded else [])
    assert sim.remediator.status(sim.now)["c1"].held == "held for a test"
    sim.remediator.released("c1", sim.now)
    sim.tick()
    assert sim.actions() == [R]


def test_released_after_the_freeze_closed_does_nothing():
    sim = Sim()
    sim.remediator.held("c1", "segment", "seg", sim.now)
    sim.freeze("c1")
    sim.close("c1")
    sim.remediator.released("c1", sim.now)
    sim.advance(100)
    assert sim.actions() == []


@pytest.mark.parametrize("seen, reason", [
    pytest.param("up", "box 'c1' is not frozen: it is healthy: every probe answers", id="healthy"),
    pytest.param("recovering", "box 'c1' is not frozen: it is recovering", id="recovering"),
    pytest.param("stopped", "box 'c1' is not frozen: it is stopped by an operator", id="stopped-by-operator"),
    pytest.param("maintenance", "box 'c1' is not frozen: it is in a maintenance window", id="maintenance"),
    pytest.param("never", "box 'c1' is not frozen: it was never probed", id="never-probed"),
    pytest.param(None, "box 'c1' is not frozen (healthy, or not yet judged frozen by the agent)", id="not-asked"),
])
def test_an_alert_about_a_box_not_seen_failing_is_refused_with_its_own_reason(seen, reason):
    """Issue 26.3: each state the agent sees a box in has its own refusal; every one is recorded."""
    sim = Sim()
    res = sim.remediator.request("c1", S, "alert", sim.now, seen=seen)
    assert (res.accepted, res.outcome) == (False, "refused") and res.reason.startswith(reason), res
    rec, = sim.remediator.take_records()
    assert (rec.trigger, rec.outcome, rec.reason) == ("alert", "refused", res.reason)


def test_a_freeze_an_alert_opened_waits_for_the_alert_and_is_the_ladders_after_a_refusal():
    """opened_by alert: no tick takes the alert's action; refused by cooldown, the ladder acts later as usual."""
    sim = Sim()
    sim.remediator.freeze_opened("c1", "l2", sim.now, sim.now, opened_by="alert")
    assert sim.remediator.tick(sim.now) == []
    res = sim.remediator.request("c1", None, "alert", sim.now, seen="frozen")
    assert res.accepted and res.planned.trigger == "alert"
    sim = Sim()
    sim.remediator.merge_history([HistoryEntry(sim.now - 1, "c1", S, "auto", False)])
    sim.remediator.freeze_opened("c1", "l2", sim.now, sim.now, opened_by="alert")
    res = sim.remediator.request("c1", None, "alert", sim.now, seen="frozen")
    assert res.outcome == "refused" and res.reason.startswith("cooldown")
    assert sim.remediator.tick(sim.now + POLICY.cooldown_s + 1) != []   # the freeze's own ladder goes on
