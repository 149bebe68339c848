"""Pure remediation engine: a ladder per freeze, verification, cooldown, hourly caps, holds, deferral.

Fed freeze events (freeze_opened / freeze_layer_changed / freeze_closed) and holds (held /
released); decides in tick(now_s). No Docker, no clock: every time is passed in. Which action
suits which layer is asked of the actions (remediations.actions.Action.suits), nowhere else.

The ladder belongs to a freeze: each freeze starts at the first step that suits its layer and
escalates only past steps that ran in it and did not recover the box. Only actions that ran
spend budget (cooldown, hourly caps); dry runs and refusals never do.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

from agent.core.events import State
from remediations.actions import ACTIONS, get_action
from remediations.model import (
    TRIGGERS,
    ActionOutcome,
    ActionRecord,
    HistoryEntry,
    PlannedAction,
    RecordOutcome,
    RemediationPolicy,
    RemediationTarget,
    RequestResult,
)

log = logging.getLogger(__name__)

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class BoxStatus:
    """What `status` shows about one box's remediation."""

    box: str
    frozen: bool
    layer: str
    next_step: int              # ladder index the next automatic action would take, -1 when none
    busy: str | None            # "running X", "verifying X", "deferred X: reason"
    last_action_s: float | None
    actions_last_hour: int
    capped: str | None          # the cap message while acting is stopped on this box
    held: str | None = None     # why a hold keeps automatic remediation off this box


# Why an alert is refused, by the box's state as the agent sees it (Pipeline.alert_witness); issue 26.
# Every reason starts "box X is not frozen" (what the alert asked about), then says why in this state.
ALERT_REFUSALS: dict[str, str] = {
    State.UP: "it is healthy: every probe answers (an alert acts on a box the agent sees failing)",
    State.RECOVERING: "it is recovering: it answers again, its freeze closes after [freeze] recover_cycles",
    State.STOPPED: "it is stopped by an operator (its container was stopped on purpose): not remediated",
    State.MAINTENANCE: "it is in a maintenance window: not remediated",
    "never": "it was never probed: the agent has not judged it yet",
    State.SUSPECT: "it is failing but its freeze could not be opened",
    State.FROZEN: "the agent saw it frozen, but remediation was not told of the freeze yet",
}


def alert_refusal(box: str, frozen: bool, seen: str | None) -> str | None:
    """Why an alert about BOX must not act (None: it may, within cooldown, caps, holds and maintenance).

    frozen: remediation knows an open, not recovering freeze of BOX; seen: the agent's state of the
    box (ALERT_REFUSALS keys; None: not asked, the old generic reason). An alert is a second witness
    (issue 26): it confirms a failure the agent sees, it never replaces one.
    """
    if frozen:
        return None
    if seen is None:
        return f"box {box!r} is not frozen (healthy, or not yet judged frozen by the agent)"
    return f"box {box!r} is not frozen: {ALERT_REFUSALS.get(seen, f'state {seen}')}"


@dataclass(slots=True)
class _Box:
    target: RemediationTarget
    frozen: bool = False
    layer: str = "none"
    freeze_start_s: float | None = None
    failed_steps: set[int] = field(default_factory=set)   # ran in this freeze, did not recover it
    dry_steps: set[int] = field(default_factory=set)      # described (dry run) in this freeze
    next_dry_s: float = 0.0
    want_action: bool = False                              # frozen: the next step is due at a tick
    recovering: bool = False                               # frozen, but answering again (not acted on)
    held_kind: str | None = None
    held_reason: str | None = None
    held_recorded: bool = False
    up_since_s: float | None = None
    running: PlannedAction | None = None
    verifying: tuple[PlannedAction, ActionOutcome] | None = None
    verify_due_s: float = 0.0
    deferred: PlannedAction | None = None
    deferred_reason: str = ""
    retry_at_s: float = 0.0
    last_action_s: float | None = None
    capped: str | None = None
    no_action_logged: bool = False
    maintenance: str | None = None                         # the reason while the box is in a maintenance window


@dataclass(slots=True)
class Remediator:
    """Decides which action to run when; the caller runs them and reports back (see RemediationService)."""

    policy: RemediationPolicy
    targets: Iterable[RemediationTarget]
    reprobe: Callable[[str], bool] | None = None   # box -> healthy now?
    history: Iterable[HistoryEntry] = ()
    _boxes: dict[str, _Box] = field(init=False)
    _history: list[HistoryEntry] = field(init=False)
    _resets: dict[str, float] = field(init=False)
    _records: list[ActionRecord] = field(init=False)
    _lock: threading.RLock = field(init=False)

    def __post_init__(self) -> None:
        self._boxes = {}
        for t in self.targets:
            for name in t.ladder:
                get_action(name)  # unknown names fail here, listing valid ones
            self._boxes[t.box] = _Box(target=t)
        self._history = []
        self._resets = {}
        self._records = []
        self._lock = threading.RLock()
        self.merge_history(self.history)

    def set_targets(self, targets: Iterable[RemediationTarget]) -> None:
        """Replace the boxes remediation knows (discovery): new ones start idle, a changed one keeps its ladder state."""
        with self._lock:
            new = {t.box: t for t in targets}
            for t in new.values():
                for name in t.ladder:
                    get_action(name)
            self._boxes = {name: (_replace_target(self._boxes[name], t) if name in self._boxes else _Box(target=t))
                           for name, t in new.items()}
            self.targets = list(new.values())

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the engine while one cycle's events are applied (no tick sees half a cycle)."""
        with self._lock:
            yield

    # ---- freeze events and holds (state only; tick decides) ------------------------------------

    def freeze_opened(self, box: str, layer: str, start_s: float, now_s: float, opened_by: str = "probes") -> None:
        """BOX froze (its freeze started at start_s); a new freeze gets a fresh ladder, a resumed one keeps its own.

        opened_by "alert": the alert that opened it acts through request(); no automatic step is due
        until that request is decided (so a tick in between does not take the alert's action).
        """
        with self._lock:
            b = self._box(box)
            if b.frozen and b.freeze_start_s == start_s:
                b.layer = layer
                return
            b.frozen, b.layer, b.freeze_start_s, b.up_since_s = True, layer, start_s, None
            b.failed_steps, b.dry_steps, b.recovering = set(), set(), False
            b.want_action, b.no_action_logged, b.next_dry_s = opened_by != "alert", False, 0.0

    def freeze_layer_changed(self, box: str, layer: str, now_s: float) -> None:
        """BOX's open freeze got deeper: a step that suits the new layer and has not run yet becomes due."""
        with self._lock:
            b = self._box(box)
            if not b.frozen:
                return
            b.layer = layer
            b.want_action, b.no_action_logged = True, False

    def recovering(self, box: str, now_s: float) -> None:
        """BOX answers again while its freeze is still open (state recovering): no automatic action meanwhile."""
        with self._lock:
            self._box(box).recovering = True

    def relapsed(self, box: str, now_s: float) -> None:
        """BOX failed again before its recovery was confirmed (recovering -> frozen): its ladder goes on."""
        with self._lock:
            b = self._box(box)
            b.recovering = False
            if b.frozen:
                b.want_action, b.no_action_logged = True, False

    def freeze_closed(self, box: str, now_s: float) -> None:
        """BOX's freeze ended (now_s: when that was confirmed)."""
        with self._lock:
            b = self._box(box)
            b.frozen, b.freeze_start_s, b.want_action, b.recovering = False, None, False, False
            b.up_since_s = now_s

    def maintenance(self, box: str, reason: str | None, now_s: float) -> None:
        """BOX is in a maintenance window (REASON) from now_s on, or out of it (None): no action at all meanwhile,
        not even a forced one; a freeze left open is not acted on."""
        with self._lock:
            b = self._box(box)
            b.maintenance = reason
            if reason is None and b.frozen:
                b.want_action = True

    def held(self, box: str, kind: str, reason: str, now_s: float) -> None:
        """A hold (kind "segment" or "settling") keeps automatic remediation off BOX from now_s on."""
        with self._lock:
            b = self._box(box)
            if b.held_kind != kind:
                b.held_recorded = False
            b.held_kind, b.held_reason = kind, reason

    def released(self, box: str, now_s: float) -> None:
        """BOX's hold ended: judged alone from now on (acted on at the next tick if still frozen)."""
        with self._lock:
            b = self._box(box)
            b.held_kind = b.held_reason = None
            b.held_recorded = False
            if b.frozen:
                b.want_action = True

    # ---- explicit requests and admin controls --------------------------------------------------

    def request(self, box: str, action: str | None, trigger: str, now_s: float, *, force: bool = False,
                who: str | None = None, why: str | None = None, dry_run: bool = False,
                seen: str | None = None) -> RequestResult:
        """An explicit request (alert or manual): ACTION or, when None, the box's next ladder step.

        Every refusal is recorded (outcome refused, or held for a held box); FORCE (manual only)
        bypasses cooldown and caps once; DRY_RUN plans a description that spends nothing.
        SEEN (alerts): the box's state as the agent sees it (agent.pipeline.Pipeline.alert_witness:
        up, suspect, frozen, recovering, stopped, maintenance, never); an alert acts only on a frozen
        box (a suspect one was frozen by the alert first), any other state is refused with its own
        reason (alert_refusal); None: judged on the freezes this engine was told about alone.
        """
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r}; valid: {', '.join(TRIGGERS)}")
        if force and trigger != "manual":
            raise ValueError("force is for manual requests only")
        with self._lock:
            b = self._boxes.get(box)
            if b is None:
                return RequestResult(box, action, False, f"unknown box {box!r}; configured: {', '.join(self._boxes)}",
                                     outcome=RecordOutcome.REFUSED)

            def refuse(reason: str, name: str | None, outcome: str = RecordOutcome.REFUSED) -> RequestResult:
                name = name or self._next_step(b)[1]   # the step that would have run, when none was named
                if trigger == "alert" and b.frozen and not b.recovering:
                    b.want_action = True   # a freeze an alert opened is the ladder's from now on
                self._record(b, name or "none", trigger, now_s, outcome, reason, who=who, why=why)
                log.warning("box %s: %s request for %s %s: %s", box, trigger, name or "next step", outcome, reason)
                return RequestResult(box, name, False, reason, outcome=outcome)

            if action is not None and action not in ACTIONS:
                return refuse(f"unknown action {action!r}; valid: {', '.join(ACTIONS)}", action)
            if b.maintenance is not None:   # before everything else: --force does not override a maintenance
                return refuse(f"maintenance: {b.maintenance}", action)
            if not self._idle(b):
                return refuse(f"busy: {self._busy(b)}", action)
            if trigger == "alert":
                refusal = alert_refusal(box, b.frozen and not b.recovering, seen)
                if refusal:
                    return refuse(refusal, action)
            if trigger == "alert" and b.held_kind is not None:
                return refuse(b.held_reason or "held", action, outcome=RecordOutcome.HELD)
            if action is None:
                step, action = self._next_step(b)
                if action is None:
                    return refuse(f"no action of the ladder of box {box!r} suits a {b.layer} freeze "
                                  "(or every one has run)", None)
            else:
                step = -1
                unusable = ACTIONS[action].unusable_reason(b.target)
                if unusable:
                    return refuse(unusable, action)
            dry = dry_run or self._dry_run(b)
            if not dry:
                if not self.policy.enabled and trigger != "manual":
                    return refuse("remediation disabled ([remediation] enabled = false)", action)
                if not force:
                    refusal = self._refusal(b, now_s)
                    if refusal:
                        return refuse(refusal, action)
            plan = self._start(b, action, step, trigger, now_s, dry, force=force and not dry, who=who, why=why)
            return RequestResult(box, action, True, "queued" if not dry else "dry run", plan,
                                 outcome="queued" if not dry else RecordOutcome.DRY_RUN)

    def reset(self, box: str, now_s: float, who: str | None = None, why: str | None = None) -> None:
        """Clear BOX's halt and hourly budget (an admin's `remediate reset`); recorded (action reset)."""
        with self._lock:
            b = self._box(box)
            self.apply_resets({box: now_s})
            b.failed_steps = set()
            if b.frozen:
                b.want_action = True
            self._record(b, "reset", "manual", now_s, RecordOutcome.RESET, "budget and halt cleared by an admin",
                         detail="remediation budget and halt cleared", who=who, why=why)

    def apply_resets(self, resets: Mapping[str, float]) -> None:
        """Resets made elsewhere (box -> time_s): entries of that box at or before it no longer count."""
        with self._lock:
            for box, t in resets.items():
                if t <= self._resets.get(box, float("-inf")):
                    continue
                self._resets[box] = t
                self._history = [e for e in self._history if not (e.box == box and e.time_s <= t)]
                b = self._boxes.get(box)
                if b is not None:
                    b.capped = None
                    mine = [e.time_s for e in self._history if e.box == box]
                    b.last_action_s = mine[-1] if mine else None

    # ---- the executor reports back ---------------------------------------------------------------

    def on_outcome(self, plan: PlannedAction, outcome: ActionOutcome, now_s: float) -> None:
        """Report what running PLAN did; verification follows after verify_s (see tick)."""
        with self._lock:
            b = self._box(plan.box)
            if b.running is plan:
                b.running = None
            if plan.dry_run:
                self._emit(plan, outcome, False, RecordOutcome.DRY_RUN, "")
                if plan.step >= 0:
                    b.dry_steps.add(plan.step)
                b.next_dry_s = now_s + self.policy.cooldown_s
                b.want_action = b.frozen and plan.trigger == "auto"
                return
            if outcome.deferred_reason:
                self._unreserve(plan)
                mine = [e.time_s for e in self._history if e.box == plan.box]
                b.last_action_s = mine[-1] if mine else None  # nothing was done: no cooldown from it
                b.deferred, b.deferred_reason = plan, outcome.deferred_reason
                b.retry_at_s = now_s + self.policy.retry_deferred_s
                self._emit(plan, outcome, False, RecordOutcome.DEFERRED, outcome.deferred_reason)
                return
            if outcome.refused_reason:
                self._unreserve(plan)
                mine = [e.time_s for e in self._history if e.box == plan.box]
                b.last_action_s = mine[-1] if mine else None
                self._emit(plan, outcome, False, RecordOutcome.REFUSED, outcome.refused_reason)
                if plan.step >= 0:
                    b.failed_steps.add(plan.step)  # cannot run here: do not pick it again in this freeze
                b.want_action = b.frozen
                return
            b.verifying = (plan, outcome)
            # A failed action fixed nothing: judge it at once instead of waiting.
            b.verify_due_s = now_s + (self.policy.verify_s if outcome.ok else 0.0)

    def on_verified(self, box: str, healthy: bool, now_s: float) -> None:
        """Close the verification of BOX's last action with the reprobe verdict."""
        with self._lock:
            b = self._box(box)
            if not b.verifying:
                return
            plan, outcome = b.verifying
            b.verifying = None
            self._emit(plan, outcome, healthy, RecordOutcome.DONE, "")
            if not healthy:
                ladder = b.target.ladder
                step = plan.step if plan.step >= 0 else (ladder.index(plan.action) if plan.action in ladder else -1)
                if step >= 0 and b.frozen:
                    b.failed_steps.add(step)
            b.want_action = not healthy and b.frozen
            log.info("box %s: %s %s", box, plan.action, "recovered it" if healthy else "did not recover it")

    def abandon_verifications(self, now_s: float) -> int:
        """The agent stops: record every action still in its verify wait as ran but not verified; how many.

        Its record has outcome done, ok as the action said, recovered None (unknown, so success
        rates leave it out) and the reason; without this a restart that ran would have no record.
        """
        with self._lock:
            waiting = [(b, b.verifying) for b in self._boxes.values() if b.verifying]
            for b, (plan, outcome) in waiting:
                b.verifying = None
                waited_s = max(0.0, now_s - (b.verify_due_s - self.policy.verify_s))
                self._emit(plan, outcome, None, RecordOutcome.DONE,
                           f"not verified: the agent stopped {waited_s:.0f} s into the {self.policy.verify_s:g} s "
                           "verify wait")
            return len(waiting)

    def tick(self, now_s: float) -> list[PlannedAction]:
        """Verify due actions (calls reprobe), retry deferred ones, act on frozen boxes; returns actions to run."""
        with self._lock:
            due = [b for b in self._boxes.values() if b.verifying and now_s >= b.verify_due_s]
        for b in due:
            healthy = self._reprobe(b.target.box)
            self.on_verified(b.target.box, healthy, now_s)
        plans: list[PlannedAction] = []
        with self._lock:
            for b in self._boxes.values():
                if b.deferred and not b.running and now_s >= b.retry_at_s:
                    plan, b.deferred = b.deferred, None
                    if b.maintenance is not None:
                        self._record(b, plan.action, plan.trigger, now_s, RecordOutcome.REFUSED,
                                     f"maintenance: {b.maintenance}")
                        continue
                    if plan.trigger == "auto" and (not b.frozen or b.recovering or b.held_kind):
                        log.info("box %s: deferred %s dropped: box %s", b.target.box, plan.action,
                                 "held" if b.held_kind else "no longer frozen")
                        continue
                    refusal = None if plan.forced else self._refusal(b, now_s, cooldown=False)
                    if refusal:
                        self._record(b, plan.action, plan.trigger, now_s, RecordOutcome.REFUSED, refusal)
                        continue
                    plans.append(self._start(b, plan.action, plan.step, plan.trigger, now_s, plan.dry_run,
                                             force=plan.forced, who=plan.who, why=plan.why))
                elif b.frozen and not b.recovering and b.want_action and self._idle(b) and b.maintenance is None:
                    plans.extend(self._plan_next(b, now_s))
                elif (not b.frozen and b.capped and b.up_since_s is not None
                      and now_s - b.up_since_s >= self.policy.reset_after_s):
                    log.info("box %s: up for %.0f s, halt cleared", b.target.box, now_s - b.up_since_s)
                    b.capped = None
        return plans

    # ---- outputs ------------------------------------------------------------------------------

    def take_records(self) -> list[ActionRecord]:
        """Records produced since the last call (each exactly once)."""
        with self._lock:
            out, self._records = self._records, []
            return out

    def history_entries(self, now_s: float | None = None) -> list[HistoryEntry]:
        """Actions that ran and count towards the caps (the last hour when NOW_S is given)."""
        with self._lock:
            if now_s is None:
                return list(self._history)
            return [e for e in self._history if e.time_s > now_s - HOUR_S]

    def merge_history(self, entries: Iterable[HistoryEntry]) -> None:
        """Add entries recorded elsewhere (e.g. a manual CLI action) without duplicates; dry runs are ignored."""
        entries = [e for e in entries if not e.dry_run and e.time_s > self._resets.get(e.box, float("-inf"))]
        with self._lock:
            seen = set(self._history)
            self._history.extend(e for e in entries if e not in seen)
            self._history.sort(key=lambda e: e.time_s)
            for e in entries:
                b = self._boxes.get(e.box)
                if b and (b.last_action_s is None or e.time_s > b.last_action_s):
                    b.last_action_s = e.time_s

    def status(self, now_s: float) -> dict[str, BoxStatus]:
        """Per-box remediation status for `vobox-agent status`."""
        with self._lock:
            recent = self.history_entries(now_s)
            return {name: BoxStatus(box=name, frozen=b.frozen, layer=b.layer,
                                    next_step=self._next_step(b)[0] if b.frozen else -1,
                                    busy=self._busy(b) or None, last_action_s=b.last_action_s,
                                    actions_last_hour=sum(1 for e in recent if e.box == name),
                                    capped=b.capped, held=b.held_reason if b.held_kind else None)
                    for name, b in self._boxes.items()}

    # ---- internals ----------------------------------------------------------------------------

    def _box(self, box: str) -> _Box:
        try:
            return self._boxes[box]
        except KeyError:
            raise ValueError(f"unknown box {box!r}; configured: {', '.join(self._boxes)}") from None

    @staticmethod
    def _idle(b: _Box) -> bool:
        return b.running is None and b.verifying is None and b.deferred is None

    def acting_on(self, box: str) -> bool:
        """True while a real (not dry-run) action on BOX runs or is being verified: its own effects are ours."""
        with self._lock:
            b = self._boxes.get(box)
            plan = b.running or (b.verifying[0] if b.verifying else None) if b is not None else None
            return plan is not None and not plan.dry_run

    @staticmethod
    def _busy(b: _Box) -> str:
        if b.running:
            return f"running {b.running.action}"
        if b.verifying:
            return f"verifying {b.verifying[0].action}"
        if b.deferred:
            return f"deferred {b.deferred.action}: {b.deferred_reason}"
        return ""

    def _reprobe(self, box: str) -> bool:
        if self.reprobe is None:
            return False
        try:
            return bool(self.reprobe(box))
        except Exception:  # a broken reprobe must not stop remediation of other boxes
            log.exception("box %s: reprobe failed; counting as not recovered", box)
            return False

    def _next_step(self, b: _Box) -> tuple[int, str | None]:
        """The freeze's next step: the first suiting step not yet run (nor described) in it; when every one
        ran, the last suiting step again (bounded by the caps); a dry run describes each step once."""
        ladder = b.target.ladder
        suited = [i for i, name in enumerate(ladder)
                  if ACTIONS[name].unusable_reason(b.target) is None and ACTIONS[name].suits(b.layer)]
        if not suited:
            return -1, None
        left = [i for i in suited if i not in b.failed_steps and i not in b.dry_steps]
        if left:
            return left[0], ladder[left[0]]
        if self._dry_run(b):
            return -1, None
        return suited[-1], ladder[suited[-1]]

    def _refusal(self, b: _Box, now_s: float, cooldown: bool = True) -> str | None:
        """Why an action that would run must not (cooldown, caps), else None; only actions that ran count."""
        box = b.target.box
        if cooldown and b.last_action_s is not None and now_s - b.last_action_s < self.policy.cooldown_s:
            return (f"cooldown: last action on box {box!r} {now_s - b.last_action_s:.0f} s ago, "
                    f"cooldown_s={self.policy.cooldown_s:g}")
        recent = self.history_entries(now_s)
        per_box = [e for e in recent if e.box == box]
        if len(per_box) >= self.policy.max_per_box_per_hour:
            free_s = per_box[0].time_s + HOUR_S - now_s if per_box else HOUR_S
            return (f"cap reached: {len(per_box)} actions on box {box!r} in the last hour "
                    f"(max_per_box_per_hour={self.policy.max_per_box_per_hour}); not acting on it for {free_s:.0f} s")
        if len(recent) >= self.policy.max_per_hour:
            free_s = recent[0].time_s + HOUR_S - now_s if recent else HOUR_S
            return (f"cap reached: {len(recent)} actions on all boxes in the last hour "
                    f"(max_per_hour={self.policy.max_per_hour}); not acting for {free_s:.0f} s")
        return None

    def _dry_run(self, b: _Box) -> bool:
        return self.policy.dry_run or b.target.dry_run

    def _plan_next(self, b: _Box, now_s: float) -> list[PlannedAction]:
        box = b.target.box
        if not self.policy.auto:  # [remediation] auto = false: alerts and manual requests act, never a freeze alone
            b.want_action = False
            return []
        step, action = self._next_step(b)
        if action is None:
            if not b.no_action_logged:
                log.warning("box %s: frozen (%s) but no action of ladder %s suits it%s", box, b.layer,
                            list(b.target.ladder), " (dry run: every step described)" if b.dry_steps else "")
                b.no_action_logged = True
            b.want_action = False
            return []
        if b.held_kind is not None:
            # Every hold is recorded once (a settling one too: it explains why a frozen box waited a cycle).
            if not b.held_recorded:
                self._record(b, action, "auto", now_s, RecordOutcome.HELD, b.held_reason or "held")
                b.held_recorded = True
            return []  # judged again when released
        if not self.policy.enabled:
            return []
        if self._dry_run(b):
            if now_s < b.next_dry_s:
                return []
            return [self._start(b, action, step, "auto", now_s, True)]
        refusal = self._refusal(b, now_s)
        if refusal:
            if refusal.startswith("cap reached") and b.capped is None:  # once per halt, not every tick
                log.warning("box %s: %s refused: %s", box, action, refusal)
                self._record(b, action, "auto", now_s, RecordOutcome.REFUSED, refusal)
                b.capped = refusal
            elif refusal.startswith("cap reached"):
                b.capped = refusal
            return []  # want_action stays: tried again on a later tick
        return [self._start(b, action, step, "auto", now_s, False)]

    def _start(self, b: _Box, action: str, step: int, trigger: str, now_s: float, dry_run: bool, *,
               force: bool = False, who: str | None = None, why: str | None = None) -> PlannedAction:
        plan = PlannedAction(box=b.target.box, action=action, trigger=trigger, target=b.target, dry_run=dry_run,
                             step=step, planned_s=now_s, forced=force, who=who, why=why)
        b.running, b.want_action = plan, False
        if not dry_run:
            b.capped, b.last_action_s = None, now_s
            # Reserved when planned so that concurrent plans cannot overshoot a cap; undone if nothing ran.
            self._history.append(HistoryEntry(now_s, plan.box, action, trigger, False))
        log.info("box %s: %s planned (trigger %s, step %d%s%s)", plan.box, action, trigger, step,
                 ", dry-run" if dry_run else "", ", FORCED by " + (who or "?") if force else "")
        return plan

    def _unreserve(self, plan: PlannedAction) -> None:
        entry = HistoryEntry(plan.planned_s, plan.box, plan.action, plan.trigger, False)
        if entry in self._history:
            self._history.remove(entry)

    def _record(self, b: _Box, action: str, trigger: str, now_s: float, outcome: str, reason: str, *,
                detail: str | None = None, who: str | None = None, why: str | None = None) -> None:
        self._records.append(ActionRecord(
            box=b.target.box, kind=b.target.kind, action=action, trigger=trigger, ok=False, recovered=False,
            dry_run=self._dry_run(b), duration_s=0.0, detail=detail if detail is not None else reason,
            time_s=now_s, outcome=outcome, reason=reason, who=who, why=why))

    def _emit(self, plan: PlannedAction, outcome: ActionOutcome, recovered: bool | None, kind: str,
              reason: str) -> None:
        ran = kind == RecordOutcome.DONE
        self._records.append(ActionRecord(
            box=plan.box, kind=plan.target.kind, action=plan.action, trigger=plan.trigger,
            ok=outcome.ok if ran else False, recovered=recovered if ran else False, dry_run=plan.dry_run,
            duration_s=outcome.duration_s, detail=outcome.detail, time_s=outcome.started_s, outcome=kind,
            reason=reason, forced=plan.forced, who=plan.who, why=plan.why))


def _replace_target(b: _Box, target: RemediationTarget) -> _Box:
    b.target = target
    return b
