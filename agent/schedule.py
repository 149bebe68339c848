"""The probe loop: one thread runs every probe, full cycles on APScheduler's slots and confirmation passes between.

APScheduler (3.x) keeps the clock: an interval job with jitter whose only work is to mark a cycle due.
The loop thread runs that cycle as soon as nothing else is probing, and in the time between cycles the
confirmation passes of unsettled boxes (start to start `confirm_interval` apart). Because both live in one
thread, a pass never overlaps a cycle, a cycle that falls due during a pass starts when the pass ends (late
by at most one probe timeout) instead of being skipped, and a pass never waits for a cycle slot.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


class ProbeLoop:
    """Runs `cycle()` every interval_s (APScheduler jitter: each slot delayed by 0..jitter_s) and, between
    cycles, `confirm_pass()` whenever `unsettled()` says a box waits to settle.

    - Cycles never overlap each other or a pass: one thread runs both.
    - A cycle due while a cycle or pass runs starts when it ends. A slot that falls due while the slot
      before it still waits to start is lost (coalesced): that is one misfire, counted and logged.
    - Passes start confirm_interval_s apart, start to start, counted from the start of the cycle or pass
      before; a pass that lasts longer (a failing probe waits its timeout) is followed at once.
    - confirm_pass None or confirm_interval_s 0: cycles only (the agent before fast confirmation).
    A cycle or pass that raises is logged; the loop goes on.
    """

    def __init__(self, cycle: Callable[[], Any], interval_s: float, jitter_s: float, *,
                 confirm_pass: Callable[[], Any] | None = None, unsettled: Callable[[], Any] = lambda: (),
                 confirm_interval_s: float = 0.0, on_misfire: Callable[[], None] = lambda: None) -> None:
        self._cycle = cycle
        self._confirm_pass = confirm_pass if confirm_interval_s > 0 else None
        self._unsettled = unsettled
        self._confirm_interval_s = confirm_interval_s
        self._on_misfire = on_misfire
        self._cond = threading.Condition()
        self._due = False          # a cycle slot came and its cycle has not started yet
        self._stopped = False
        self.misfires = 0
        self.cycles = self.passes = 0
        self._thread = threading.Thread(target=self._run, name="probe-loop", daemon=True)
        self._scheduler = BackgroundScheduler(timezone=timezone.utc)
        self._scheduler.add_listener(self._listen, EVENT_JOB_MISSED | EVENT_JOB_ERROR)
        self._scheduler.add_job(
            self._slot, IntervalTrigger(seconds=interval_s, jitter=jitter_s or None), id="probe-cycle",
            max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(interval_s / 2)),   # the scheduler thread itself was late
            next_run_time=datetime.now(timezone.utc),          # the first cycle at once
        )

    def _slot(self) -> None:
        with self._cond:
            lost = self._due
            self._due = True
            self._cond.notify()
        if lost:
            self._misfire("the cycle of the slot before had not started yet")

    def _listen(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            log.error("probe slot raised: %r", getattr(event, "exception", None))
            return
        self._misfire("the scheduler started the slot too late")

    def _misfire(self, why: str) -> None:
        self.misfires += 1
        log.warning("probe cycle misfired (%s); %d misfires so far", why, self.misfires)
        try:
            self._on_misfire()
        except Exception:  # noqa: BLE001 - a listener error never stops the loop
            log.exception("misfire listener failed")

    def _next(self, last_start: float | None) -> str | None:
        """Wait for the next thing to run: "cycle", "pass", or None when stopped."""
        with self._cond:
            while not self._stopped:
                if self._due:
                    self._due = False
                    return "cycle"
                wait_s = None
                if self._confirm_pass is not None and last_start is not None and self._unsettled():
                    wait_s = last_start + self._confirm_interval_s - time.monotonic()
                    if wait_s <= 0:
                        return "pass"
                self._cond.wait(wait_s)
            return None

    def _run(self) -> None:
        last_start = None
        while (what := self._next(last_start)) is not None:
            last_start = time.monotonic()
            try:
                if what == "cycle":
                    self.cycles += 1
                    self._cycle()
                else:
                    self.passes += 1
                    self._confirm_pass()   # type: ignore[misc]
            except Exception:  # noqa: BLE001 - one broken cycle never stops probing
                log.exception("probe %s raised", what)

    def start(self) -> None:
        """Start; the first cycle runs at once."""
        self._thread.start()
        self._scheduler.start()

    def stop(self) -> None:
        """Stop: no new cycle or pass starts; waits for the one in progress to finish."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
            self._cond.notify_all()
        if self._scheduler.running:
            self._scheduler.shutdown(wait=True)
        if self._thread.is_alive():
            self._thread.join()
