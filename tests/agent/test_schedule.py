"""The cycle scheduler (APScheduler 3.x, real): cycles never overlap, and each slot an overrunning cycle skips is
one misfire. Since storage left the probe path (issue 15) the agent's own cycles cannot overrun the interval
(timeout < interval and nothing else waits), so the overrun is made here by a cycle that sleeps."""
from __future__ import annotations

import threading
import time

from agent.schedule import CycleScheduler

INTERVAL_S = 0.3


def test_overrunning_cycles_never_overlap_and_each_skipped_slot_is_one_misfire():
    starts: list[float] = []
    running = threading.Lock()
    overlaps: list[float] = []
    counted: list[int] = []

    def cycle() -> None:
        if not running.acquire(blocking=False):
            overlaps.append(time.monotonic())
            return
        try:
            starts.append(time.monotonic())
            # cycles 2 and 4 overrun by more than one interval: each skips one or two slots
            time.sleep(INTERVAL_S * 1.7 if len(starts) in (2, 4) else 0.01)
        finally:
            running.release()

    sched = CycleScheduler(cycle, INTERVAL_S, 0.0, on_misfire=lambda: counted.append(1))
    sched.start()
    time.sleep(INTERVAL_S * 9)
    sched.stop()
    assert overlaps == []
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    skipped = sum(round(g / INTERVAL_S) - 1 for g in gaps)
    assert all(abs(g - round(g / INTERVAL_S) * INTERVAL_S) < 0.1 for g in gaps), gaps   # on the interval grid
    assert skipped >= 2, gaps                             # the overruns really skipped slots
    assert sched.misfires == len(counted)
    assert skipped <= sched.misfires <= skipped + 1, (gaps, sched.misfires)
