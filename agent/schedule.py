"""The probe loop: one thread runs every probe, full cycles on APScheduler's slots and confirmation passes between.

APScheduler (3.x) keeps the clock: an interval job on an exact grid whose only work is to mark a cycle due,
up to jitter_s after its slot (drawn per cycle). APScheduler's own jitter is not used: IntervalTrigger adds it
to the previous *jittered* fire time, so the delays pile up and the cycles run every interval + jitter/2 on
average instead of every interval (agronholm/apscheduler#746: "every 10-15 seconds" for interval 10, jitter 5).
The loop thread runs a due cycle as soon as nothing else is probing, and in the time between cycles the
confirmation passes of unsettled boxes (start to start `confirm_interval` apart). Because both live in one
thread, a pass never overlaps a cycle, a cycle that falls due during a pass starts when the pass ends (late
by at most one probe timeout) instead of being skipped, and a pass never waits for a cycle slot.
"""
from __future__ import annotations

import logging
import random
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
    """Runs `cycle()` every interval_s, each start delayed by a random 0..jitter_s from its slot on the exact
    grid (so cycles never drift and a periodic fault is sampled at random phases), and, between cycles,
    `confirm_pass()` whenever `unsettled()` says a box waits to settle.

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
        self._interval_s = interval_s
        self._jitter_s = jitter_s
        self._confirm_pass = confirm_pass if confirm_interval_s > 0 else None
        self._unsettled = unsettled
        self._confirm_interval_s = confirm_interval_s
        self._on_misfire = on_misfire
        self._cond = threading.Condition()
        self._due_at: float | None = None   # monotonic start time of the slot's cycle that has not started yet
        self._stopped = False
        self.misfires = 0
        self.cycles = self.passes = 0
        self._slots = 0            # slots so far; the first cycle runs at once, unjittered
        self._thread = threading.Thread(target=self._run, name="probe-loop", daemon=True)
        self._scheduler = BackgroundScheduler(timezone=timezone.utc)
        self._scheduler.add_listener(self._listen, EVENT_JOB_MISSED | EVENT_JOB_ERROR)

    def _slot(self) -> None:
        with self._cond:
            lost = self._due_at is not None
            delay_s = random.uniform(0, self._jitter_s) if self._jitter_s > 0 and self._slots else 0.0
            self._slots += 1
            self._due_at = time.monotonic() + delay_s
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
                now = time.monotonic()
                if self._due_at is not None and self._due_at <= now:
                    self._due_at = None
                    return "cycle"
                wait_s = None if self._due_at is None else self._due_at - now
                if self._confirm_pass is not None and last_start is not None and self._unsettled():
                    pass_in_s = last_start + self._confirm_interval_s - now
                    if pass_in_s <= 0:
                        return "pass"
                    wait_s = pass_in_s if wait_s is None else min(wait_s, pass_in_s)
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
        """Start; the first cycle runs at once, and the grid of slots is anchored here."""
        self._scheduler.add_job(
            self._slot, IntervalTrigger(seconds=self._interval_s), id="probe-cycle", max_instances=1, coalesce=True,
            misfire_grace_time=max(1, int(self._interval_s / 2)),   # the scheduler thread itself was late
            next_run_time=datetime.now(timezone.utc))
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
