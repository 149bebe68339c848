"""APScheduler (3.x) drives the probe cycles: interval with jitter, never overlapping, misfires counted."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)


class CycleScheduler:
    """Runs `cycle()` every interval_s (+- jitter_s) in one worker; `stop()` lets the running cycle finish."""

    def __init__(self, cycle: Callable[[], Any], interval_s: float, jitter_s: float,
                 on_misfire: Callable[[], None] = lambda: None) -> None:
        self._cycle = cycle
        self._on_misfire = on_misfire
        self._scheduler = BackgroundScheduler(timezone=timezone.utc,
                                              executors={"default": {"type": "threadpool", "max_workers": 1}})
        self._scheduler.add_listener(self._listen, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR)
        self._scheduler.add_job(
            self._cycle, IntervalTrigger(seconds=interval_s, jitter=jitter_s or None), id="probe-cycle",
            max_instances=1,           # a slow cycle makes the next one a misfire, never an overlap
            coalesce=True,             # after a stall run once, not once per missed slot
            misfire_grace_time=max(1, int(interval_s / 2)),
            next_run_time=datetime.now(timezone.utc),
        )
        self.misfires = 0
        self._stopped = threading.Event()

    def _listen(self, event: JobEvent) -> None:
        if event.code == EVENT_JOB_ERROR:
            log.error("probe cycle raised: %r", getattr(event, "exception", None))
            return
        self.misfires += 1
        why = "previous cycle still running" if event.code == EVENT_JOB_MAX_INSTANCES else "started too late"
        log.warning("probe cycle misfired (%s); %d misfires so far", why, self.misfires)
        try:
            self._on_misfire()
        except Exception:  # noqa: BLE001 - a listener error never stops the scheduler
            log.exception("misfire listener failed")

    def start(self) -> None:
        """Start; the first cycle runs at once."""
        self._scheduler.start()

    def stop(self) -> None:
        """Stop scheduling and wait for the cycle in progress to finish."""
        if not self._stopped.is_set():
            self._stopped.set()
            self._scheduler.shutdown(wait=True)
