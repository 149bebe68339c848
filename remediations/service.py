"""Thin executor: runs the engine's planned actions, verifications and retries in one worker thread."""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from remediations import history
from remediations.actions import ActionContext, execute
from remediations.engine import BoxStatus, Remediator
from remediations.model import (
    ActionOutcome,
    ActionRecord,
    HistoryEntry,
    PlannedAction,
    RecordOutcome,
    RemediationStatus,
    RequestResult,
)

log = logging.getLogger(__name__)


class RemediationService:
    """Owns the worker thread; the probe cycle only hands events in and never waits for Docker.

    on_record(record): every remediations.model.ActionRecord as it is decided (done, refused,
    held, deferred, dry_run, reset), from the thread that decided it (the agent publishes it on
    its bus, agent.bus); a sink that raises is logged and remediation goes on. on_status(status):
    a remediations.model.RemediationStatus after each cycle's decisions (publish_status), or None.

    evidence_wait(box, timeout_s) -> bool: blocks until the evidence of BOX's open freeze is
    collected (agent.forensics.evidence.EvidenceCollector.wait_collected); an automatic action
    waits for it at most evidence_timeout_s, so it never runs while a collector reads the box.

    before_action(box) -> a reason to wait, or None: asked before every action that would run (not dry
    runs), e.g. agent.resolve.NameResolver.before_action (the box's name resolved now); a reason makes the
    action deferred (nothing done, retried after retry_deferred_s), the reason recorded.
    """

    def __init__(self, remediator: Remediator, context: ActionContext,
                 on_record: Callable[[ActionRecord], None], clock: Callable[[], float] = time.time,
                 tick_s: float = 0.5, history_path: str | None = None,
                 evidence_wait: Callable[[str, float], bool] | None = None,
                 evidence_timeout_s: float = 20.0,
                 on_status: Callable[[RemediationStatus], None] | None = None,
                 before_action: Callable[[str], str | None] | None = None) -> None:
        self.remediator = remediator
        self.before_action = before_action
        self.on_status = on_status
        self.context = context
        self.on_record = on_record
        self.clock = clock
        self.tick_s = tick_s
        self.history_path = history_path
        self.evidence_wait = evidence_wait
        self.evidence_timeout_s = evidence_timeout_s
        self._queue: queue.Queue[PlannedAction | None] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._history_mtime = 0.0
        if history_path:
            self.remediator.apply_resets(history.load_resets(history_path))
            self.remediator.merge_history(history.load(history_path, clock()))

    # ---- called from other threads -------------------------------------------------------------

    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="remediation", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop after the action in progress (if any); flush records."""
        self._stop.set()
        self._queue.put(None)
        if self._thread:
            self._thread.join(timeout_s)
        if self.remediator.abandon_verifications(self.clock()):
            log.warning("remediation: stopping with actions in their verify wait; recorded as not verified")
        self._flush()

    def batch(self) -> AbstractContextManager[None]:
        """Apply one cycle's events atomically (see Remediator.batch)."""
        return self.remediator.batch()

    def freeze_opened(self, box: str, layer: str, start_s: float, opened_by: str = "probes") -> None:
        """BOX froze (see Remediator.freeze_opened); acted on at the next tick (opened by an alert: by its request)."""
        self.remediator.freeze_opened(box, layer, start_s, self.clock(), opened_by)

    def freeze_layer_changed(self, box: str, layer: str) -> None:
        """BOX's open freeze got deeper."""
        self.remediator.freeze_layer_changed(box, layer, self.clock())

    def freeze_closed(self, box: str) -> None:
        """BOX's freeze ended."""
        self.remediator.freeze_closed(box, self.clock())

    def recovering(self, box: str) -> None:
        """BOX answers again while its freeze is open."""
        self.remediator.recovering(box, self.clock())

    def relapsed(self, box: str) -> None:
        """BOX failed again before its recovery was confirmed."""
        self.remediator.relapsed(box, self.clock())

    def maintenance(self, box: str, reason: str | None) -> None:
        """BOX entered a maintenance window (REASON) or left it (None): nothing is remediated meanwhile."""
        self.remediator.maintenance(box, reason, self.clock())

    def held(self, box: str, kind: str, reason: str) -> None:
        """A hold keeps automatic remediation off BOX."""
        self.remediator.held(box, kind, reason, self.clock())

    def released(self, box: str) -> None:
        """BOX's hold ended: judged alone."""
        self.remediator.released(box, self.clock())

    def tick(self) -> None:
        """Decide now (the listener calls it after a cycle's events; the worker every tick_s)."""
        for plan in self.remediator.tick(self.clock()):
            self._queue.put(plan)
        self._flush()

    def publish_status(self) -> None:
        """Hand every box's status now to on_status (the listener calls it at the end of each cycle)."""
        if self.on_status is not None:
            self.on_status(RemediationStatus(self.clock(), self.status()))

    def request(self, box: str, action: str | None, trigger: str, *, force: bool = False,
                who: str | None = None, why: str | None = None, seen: str | None = None) -> RequestResult:
        """Queue an explicit request (alert/manual) under the same limits; returns what was decided (recorded).

        seen: for alerts, the box's state as the agent sees it (see Remediator.request)."""
        result = self.remediator.request(box, action, trigger, self.clock(), force=force, who=who, why=why,
                                         seen=seen)
        if result.planned:
            self._queue.put(result.planned)
        self._flush()
        return result

    def status(self) -> dict[str, BoxStatus]:
        """Per-box status (see Remediator.status)."""
        return self.remediator.status(self.clock())

    def acting_on(self, box: str) -> bool:
        """True while a real action on BOX runs or is being verified (see Remediator.acting_on)."""
        return self.remediator.acting_on(box)

    def idle(self) -> bool:
        """True when nothing is queued, running, being verified or deferred."""
        return self._queue.empty() and all(s.busy is None for s in self.status().values())

    # ---- worker ----------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                plan = self._queue.get(timeout=self.tick_s)
            except queue.Empty:
                plan = None
            try:
                if plan is not None:
                    self._execute(plan)
                self._sync_history()
                for nxt in self.remediator.tick(self.clock()):
                    self._queue.put(nxt)
                self._flush()
            except Exception:  # one bad action or sink must not stop remediation
                log.exception("remediation worker: unexpected error (continuing)")

    def _execute(self, plan: PlannedAction) -> None:
        if self.evidence_wait is not None and not plan.dry_run:
            try:
                if not self.evidence_wait(plan.box, self.evidence_timeout_s):
                    log.warning("box %s: evidence not collected after %g s; running %s anyway", plan.box,
                                self.evidence_timeout_s, plan.action)
            except Exception:  # evidence trouble never blocks remediation
                log.exception("box %s: waiting for evidence failed", plan.box)
        try:
            wait = self.before_action(plan.box) if self.before_action is not None and not plan.dry_run else None
            if wait:
                log.warning("box %s: %s deferred: %s", plan.box, plan.action, wait)
                outcome = ActionOutcome(ok=False, detail=wait, duration_s=0.0, started_s=self.clock(),
                                        deferred_reason=wait)
            else:
                outcome = execute(plan, self.context, self.clock)
        except Exception as exc:  # unexpected: keep the engine consistent, say so loudly
            log.exception("box %s: action %s raised unexpectedly", plan.box, plan.action)
            outcome = ActionOutcome(ok=False, detail=f"internal error: {type(exc).__name__}: {exc}",
                                    duration_s=0.0, started_s=self.clock())
        self.remediator.on_outcome(plan, outcome, self.clock())
        if self.history_path and not (outcome.deferred_reason or outcome.refused_reason or plan.dry_run):
            entry = HistoryEntry(plan.planned_s, plan.box, plan.action, plan.trigger, False)
            try:
                merged = history.merge_save(self.history_path, [entry], self.clock())
                self.remediator.merge_history(merged)
                self._history_mtime = os.stat(self.history_path).st_mtime
            except OSError as exc:
                log.warning("box %s: cannot save remediation history %s: %s", plan.box, self.history_path, exc)

    def _sync_history(self) -> None:
        """Pick up actions another process (the CLI) saved, so they count towards the caps here too."""
        if not self.history_path:
            return
        try:
            mtime = os.stat(self.history_path).st_mtime
        except OSError:
            return
        if mtime != self._history_mtime:
            self._history_mtime = mtime
            self.remediator.apply_resets(history.load_resets(self.history_path))
            self.remediator.merge_history(history.load(self.history_path, self.clock()))

    def _flush(self) -> None:
        """Publish the engine's new records (on_record: the agent's bus), each as soon as it is decided."""
        for record in self.remediator.take_records():
            if record.outcome in (RecordOutcome.DEFERRED, RecordOutcome.REFUSED, RecordOutcome.HELD):
                log.warning("box %s: %s %s (%s): %s", record.box, record.action, record.outcome, record.trigger,
                            record.reason)
            try:
                self.on_record(record)
            except Exception:  # a failing sink must not stop remediation
                log.exception("box %s: record sink failed for %s", record.box, record.action)
