"""Pure remediation engine: escalation ladder, verification, cooldown, hourly caps, deferral."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from remediations.actions import ACTIONS, get_action
from remediations.model import (TRIGGERS, ActionOutcome, ActionRecord, HistoryEntry, PlannedAction,
                                RemediationPolicy, RemediationTarget, RequestResult)

log = logging.getLogger(__name__)

HOUR_S = 3600.0


@dataclass(frozen=True, slots=True)
class BoxStatus:
    """What `status` shows about one box's remediation."""

    box: str
    frozen: bool
    layer: str
    next_step: int
    busy: str | None            # "running X", "verifying X", "deferred X: reason"
    last_action_s: float | None
    actions_last_hour: int
    capped: str | None          # the cap message while acting is stopped on this box


@dataclass(slots=True)
class _Box:
    target: RemediationTarget
    frozen: bool = False
    layer: str = "none"
    step: int = 0
    up_since_s: float | None = None
    running: PlannedAction | None = None
    verifying: tuple[PlannedAction, ActionOutcome] | None = None
    verify_due_s: float = 0.0
    deferred: PlannedAction | None = None
    deferred_reason: str = ""
    retry_at_s: float = 0.0
    want_escalation: bool = False
    last_action_s: float | None = None
    capped: str | None = None
    no_action_logged: bool = False


@dataclass(slots=True)
class Remediator:
    """Decides which action to run when; the caller runs them and reports back (see RemediationService)."""

    policy: RemediationPolicy
    targets: Iterable[RemediationTarget]
    reprobe: Callable[[str], bool] | None = None   # box -> healthy now?
    history: Iterable[HistoryEntry] = ()
    _boxes: dict[str, _Box] = field(init=False)
    _history: list[HistoryEntry] = field(init=False)
    _records: list[ActionRecord] = field(init=False)
    _lock: threading.RLock = field(init=False)

    def __post_init__(self) -> None:
        self._boxes = {}
        for t in self.targets:
            for name in t.ladder:
                get_action(name)  # unknown names fail here, listing valid ones
            self._boxes[t.box] = _Box(target=t)
        self._history = []
        self._records = []
        self._lock = threading.RLock()
        self.merge_history(self.history)

    # ---- inputs -------------------------------------------------------------------------------

    def on_freeze_state(self, box: str, state: str, layer: str, now_s: float,
                        held: bool = False) -> list[PlannedAction]:
        """Feed one cycle's freeze state (up|suspect|frozen|recovering) and layer; returns actions to run.

        HELD (e.g. the box is part of an open segment freeze) keeps a frozen box from being acted on;
        the first frozen state after the hold ends acts as if the box had just frozen."""
        with self._lock:
            b = self._box(box)
            if state == "frozen" and held:
                b.frozen, b.layer, b.up_since_s = False, layer, None
                return []
            if state == "frozen":
                was_frozen = b.frozen
                b.frozen, b.layer, b.up_since_s = True, layer, None
                if not was_frozen and self._idle(b):
                    return self._plan_next(b, "auto", now_s)
                return []
            b.frozen = False
            if state == "up":
                if b.up_since_s is None:
                    b.up_since_s = now_s
                if (b.step or b.capped) and self._idle(b) and now_s - b.up_since_s >= self.policy.reset_after_s:
                    log.info("box %s: up for %.0f s, ladder reset", box, now_s - b.up_since_s)
                    b.step, b.capped, b.want_escalation = 0, None, False
            else:
                b.up_since_s = None
            return []

    def request(self, box: str, action: str | None, trigger: str, now_s: float) -> RequestResult:
        """An explicit request (alert or manual): ACTION or, when None, the box's next ladder step."""
        if trigger not in TRIGGERS:
            raise ValueError(f"unknown trigger {trigger!r}; valid: {', '.join(TRIGGERS)}")
        if action is not None:
            get_action(action)
        with self._lock:
            b = self._boxes.get(box)
            if b is None:
                return RequestResult(box, action, False, f"unknown box {box!r}; configured: {', '.join(self._boxes)}")
            if not self._idle(b):
                return RequestResult(box, action, False, f"busy: {self._busy(b)}")
            if action is None:
                step, action = self._next_step(b)
                if action is None:
                    return RequestResult(box, None, False, f"no applicable action in the ladder of box {box!r}")
            else:
                step = -1
                unusable = ACTIONS[action].unusable_reason(b.target)
                if unusable:
                    return RequestResult(box, action, False, unusable)
            refusal = self._refusal(b, action, trigger, now_s)
            if refusal:
                return RequestResult(box, action, False, refusal)
            plan = self._start(b, action, step, trigger, now_s)
            return RequestResult(box, action, True, "queued", plan)

    def on_outcome(self, plan: PlannedAction, outcome: ActionOutcome, now_s: float) -> list[PlannedAction]:
        """Report what running PLAN did; verification follows after verify_s (see tick)."""
        with self._lock:
            b = self._box(plan.box)
            if b.running is plan:
                b.running = None
            if outcome.deferred_reason:
                self._unreserve(plan)
                mine = [e.time_s for e in self._history if e.box == plan.box]
                b.last_action_s = mine[-1] if mine else None  # nothing was done: no cooldown from it
                b.deferred, b.deferred_reason = plan, outcome.deferred_reason
                b.retry_at_s = now_s + self.policy.retry_deferred_s
                self._emit(plan, outcome, recovered=False, deferred=True)
                return []
            b.verifying = (plan, outcome)
            # A failed action fixed nothing: judge it at once instead of waiting.
            b.verify_due_s = now_s + (self.policy.verify_s if outcome.ok else 0.0)
            return []

    def tick(self, now_s: float) -> list[PlannedAction]:
        """Verify due actions (calls reprobe), retry deferred ones, escalate; returns actions to run."""
        with self._lock:
            due = [b for b in self._boxes.values() if b.verifying and now_s >= b.verify_due_s]
        for b in due:
            healthy = self._reprobe(b.target.box)
            with self._lock:
                self.on_verified(b.target.box, healthy, now_s)
        plans: list[PlannedAction] = []
        with self._lock:
            for b in self._boxes.values():
                if b.deferred and not b.running and now_s >= b.retry_at_s:
                    plan, b.deferred = b.deferred, None
                    refusal = self._refusal(b, plan.action, plan.trigger, now_s, cooldown=False)
                    if refusal:
                        log.warning("box %s: deferred %s dropped: %s", b.target.box, plan.action, refusal)
                        continue
                    plans.append(self._start(b, plan.action, plan.step, plan.trigger, now_s, plan.dry_run))
                elif b.want_escalation and b.frozen and self._idle(b):
                    plans.extend(self._plan_next(b, "auto", now_s))
        return plans

    def on_verified(self, box: str, healthy: bool, now_s: float) -> None:
        """Close the verification of BOX's last action with the reprobe verdict."""
        with self._lock:
            b = self._box(box)
            if not b.verifying:
                return
            plan, outcome = b.verifying
            b.verifying = None
            self._emit(plan, outcome, recovered=healthy)
            b.want_escalation = not healthy and b.frozen
            log.info("box %s: %s %s", box, plan.action, "recovered it" if healthy else "did not recover it")

    # ---- outputs ------------------------------------------------------------------------------

    def take_records(self) -> list[ActionRecord]:
        """Records produced since the last call (each exactly once)."""
        with self._lock:
            out, self._records = self._records, []
            return out

    def history_entries(self, now_s: float | None = None) -> list[HistoryEntry]:
        """Actions counted towards the caps (the last hour when NOW_S is given)."""
        with self._lock:
            if now_s is None:
                return list(self._history)
            return [e for e in self._history if e.time_s > now_s - HOUR_S]

    def merge_history(self, entries: Iterable[HistoryEntry]) -> None:
        """Add entries recorded elsewhere (e.g. a manual CLI action) without duplicates."""
        entries = list(entries)
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
            return {name: BoxStatus(box=name, frozen=b.frozen, layer=b.layer, next_step=b.step,
                                    busy=self._busy(b) or None, last_action_s=b.last_action_s,
                                    actions_last_hour=sum(1 for e in recent if e.box == name),
                                    capped=b.capped)
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
        except Exception:  # noqa: BLE001 - a broken reprobe must not stop remediation of other boxes
            log.exception("box %s: reprobe failed; counting as not recovered", box)
            return False

    def _applicable(self, b: _Box, name: str) -> bool:
        action = ACTIONS[name]
        return action.unusable_reason(b.target) is None and action.suits(b.layer)

    def _next_step(self, b: _Box) -> tuple[int, str | None]:
        ladder = b.target.ladder
        usable = [i for i, name in enumerate(ladder) if self._applicable(b, name)]
        if not usable:
            return -1, None
        later = [i for i in usable if i >= b.step]
        i = later[0] if later else usable[-1]  # ladder exhausted: repeat its last usable step
        return i, ladder[i]

    def _refusal(self, b: _Box, action: str, trigger: str, now_s: float, cooldown: bool = True) -> str | None:
        box = b.target.box
        if not self.policy.enabled and trigger != "manual":
            return "remediation disabled ([remediation] enabled = false)"
        if cooldown and b.last_action_s is not None and now_s - b.last_action_s < self.policy.cooldown_s:
            return (f"cooldown: last action on box {box!r} {now_s - b.last_action_s:.0f} s ago, "
                    f"cooldown_s={self.policy.cooldown_s:g}")
        recent = self.history_entries(now_s)
        per_box = [e for e in recent if e.box == box]
        if len(per_box) >= self.policy.max_per_box_per_hour:
            free_s = per_box[0].time_s + HOUR_S - now_s
            return self._cap(b, action, trigger, now_s,
                             f"cap reached: {len(per_box)} actions on box {box!r} in the last hour "
                             f"(max_per_box_per_hour={self.policy.max_per_box_per_hour}); "
                             f"not acting on it for {free_s:.0f} s")
        if len(recent) >= self.policy.max_per_hour:
            free_s = recent[0].time_s + HOUR_S - now_s
            return self._cap(b, action, trigger, now_s,
                             f"cap reached: {len(recent)} actions on all boxes in the last hour "
                             f"(max_per_hour={self.policy.max_per_hour}); not acting for {free_s:.0f} s")
        return None

    def _cap(self, b: _Box, action: str, trigger: str, now_s: float, message: str) -> str:
        # Record a cap once per episode (and every explicit request), not on every cycle.
        if b.capped is None or trigger != "auto":
            log.warning("box %s: %s refused: %s", b.target.box, action, message)
            self._records.append(ActionRecord(
                box=b.target.box, kind=b.target.kind, action=action, trigger=trigger, ok=False,
                recovered=False, dry_run=self._dry_run(b), duration_s=0.0, detail=message, time_s=now_s))
        b.capped = message
        return message

    def _dry_run(self, b: _Box) -> bool:
        return self.policy.dry_run or b.target.dry_run

    def _plan_next(self, b: _Box, trigger: str, now_s: float) -> list[PlannedAction]:
        step, action = self._next_step(b)
        if action is None:
            if not b.no_action_logged:
                log.warning("box %s: frozen (%s) but no applicable action in ladder %s",
                            b.target.box, b.layer, list(b.target.ladder))
                b.no_action_logged = True
            b.want_escalation = False
            return []
        if self._refusal(b, action, trigger, now_s):
            b.want_escalation = True  # try again on a later tick (cooldown over / slot free in the hour)
            return []
        return [self._start(b, action, step, trigger, now_s)]

    def _start(self, b: _Box, action: str, step: int, trigger: str, now_s: float,
               dry_run: bool | None = None) -> PlannedAction:
        plan = PlannedAction(box=b.target.box, action=action, trigger=trigger, target=b.target,
                             dry_run=self._dry_run(b) if dry_run is None else dry_run,
                             step=step, planned_s=now_s)
        if step >= 0:
            b.step = step + 1
        b.running, b.want_escalation, b.capped, b.last_action_s = plan, False, None, now_s
        # Counted when planned so that concurrent plans cannot overshoot a cap; undone if deferred.
        self._history.append(HistoryEntry(now_s, plan.box, action, trigger, plan.dry_run))
        log.info("box %s: %s planned (trigger %s, step %d%s)", plan.box, action, trigger, step,
                 ", dry-run" if plan.dry_run else "")
        return plan

    def _unreserve(self, plan: PlannedAction) -> None:
        entry = HistoryEntry(plan.planned_s, plan.box, plan.action, plan.trigger, plan.dry_run)
        if entry in self._history:
            self._history.remove(entry)

    def _emit(self, plan: PlannedAction, outcome: ActionOutcome, recovered: bool, deferred: bool = False) -> None:
        self._records.append(ActionRecord(
            box=plan.box, kind=plan.target.kind, action=plan.action, trigger=plan.trigger,
            ok=outcome.ok, recovered=recovered, dry_run=plan.dry_run, duration_s=outcome.duration_s,
            detail=outcome.detail, time_s=outcome.started_s, deferred=deferred,
            deferred_reason=outcome.deferred_reason))
