"""The probe loop: one thread runs every probe, full cycles on a grid of slots on the monotonic clock and
confirmation passes between them.

The rhythm is kept on the monotonic clock (CLOCK_MONOTONIC), never on the wall clock: an NTP step at boot,
`date -s`, a restored VM snapshot or an RTC reset corrected later moves the wall clock by seconds or months,
and a loop timed by it stops (a step back: no slot falls due until the clock catches up) or walks every
missed slot (a step forward). APScheduler 3.x, which the loop used before, computes fire times from the wall
clock and does both (agronholm/apscheduler#351, #526, #752, #1066: 0 cycles for an hour after a step back of
1 h, 2.6 million missed slots walked and 220 MB after a step forward of 30 days at interval 1 s), and its
IntervalTrigger adds jitter to the previous jittered time (#746). So the grid is computed here: slot k at
start + k x interval (monotonic), each cycle delayed by a random 0..jitter_s drawn per slot; finding the slots
that passed is one division, whatever the gap (bounded memory and time).

Points keep wall-clock stamps (the pipeline reads time.time()); the loop watches wall - monotonic and reports
a step (`ClockStep`) once when it moves by more than the threshold plus the most NTP may slew in between.
The loop thread runs a due cycle as soon as nothing else is probing, and in the time between cycles the
confirmation passes of unsettled boxes (start to start `confirm_interval` apart). Because both live in one
thread, a pass never overlaps a cycle, a cycle that falls due during a pass starts when the pass ends (late
by at most one probe timeout) instead of being skipped, and a pass never waits for a cycle slot.
"""
from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

log = logging.getLogger(__name__)

# A wall-clock step smaller than this is not reported: NTP slews offsets below 128 ms (ntpd's step threshold,
# chrony's makestep is usually 1 s); one second keeps slews and scheduling noise out.
CLOCK_STEP_THRESHOLD_S = 1.0
# adjtimex(2) slews at most 500 ppm: wall - monotonic may drift that much between two observations.
MAX_SLEW_PPM = 500.0


class Clock(Protocol):
    """The loop's clocks and its one way to wait (injected: tests move time instead of sleeping)."""

    def monotonic(self) -> float:
        """Seconds on a clock no wall-clock step moves."""

    def time(self) -> float:
        """Wall clock, epoch seconds."""

    def wait(self, cond: threading.Condition, timeout_s: float) -> None:
        """Wait on cond (held by the caller) at most timeout_s seconds of monotonic time."""


class SystemClock:
    """time.monotonic, time.time and Condition.wait (whose timeout CPython measures on CLOCK_MONOTONIC)."""

    def monotonic(self) -> float:
        """time.monotonic()."""
        return time.monotonic()

    def time(self) -> float:
        """time.time()."""
        return time.time()

    def wait(self, cond: threading.Condition, timeout_s: float) -> None:
        """cond.wait(timeout_s)."""
        cond.wait(timeout_s)


@dataclass(frozen=True, slots=True)
class ClockStep:
    """The wall clock moved against the monotonic clock: step_s seconds (negative: back), seen at wall_s (epoch
    s, after the step) and monotonic_s."""

    step_s: float
    wall_s: float
    monotonic_s: float


class StepDetector:
    """Pure: fed (wall_s, monotonic_s) pairs, returns a ClockStep when wall - monotonic moved by more than
    threshold_s + MAX_SLEW_PPM x the monotonic seconds since the pair before (a slew is not a step)."""

    def __init__(self, threshold_s: float = CLOCK_STEP_THRESHOLD_S, max_slew_ppm: float = MAX_SLEW_PPM) -> None:
        self.threshold_s = threshold_s
        self.max_slew_ppm = max_slew_ppm
        self._last: tuple[float, float] | None = None    # (wall - monotonic, monotonic) of the pair before

    def observe(self, wall_s: float, monotonic_s: float) -> ClockStep | None:
        """Compare with the pair before; None when the clocks moved together."""
        offset = wall_s - monotonic_s
        last, self._last = self._last, (offset, monotonic_s)
        if last is None:
            return None
        moved = offset - last[0]
        allowed = self.threshold_s + self.max_slew_ppm * 1e-6 * max(0.0, monotonic_s - last[1])
        return ClockStep(moved, wall_s, monotonic_s) if abs(moved) > allowed else None


def _ignore_step(step: ClockStep) -> None:
    pass


class ProbeLoop:
    """Runs `cycle()` every interval_s of monotonic time, each start delayed by a random 0..jitter_s from its slot
    on the exact grid (so cycles never drift and a periodic fault is sampled at random phases), and, between
    cycles, `confirm_pass()` whenever `unsettled()` says a box waits to settle.

    - Cycles never overlap each other or a pass: one thread runs both.
    - A cycle due while a cycle or pass runs starts when it ends. Slots that pass while the cycle of an earlier
      slot still waits to start are lost (coalesced into the latest): each is a misfire, counted, logged once
      per run of them and handed to on_misfire(lost).
    - Passes start confirm_interval_s apart, start to start, counted from the start of the cycle or pass
      before; a pass that lasts longer (a failing probe waits its timeout) is followed at once.
    - confirm_pass None or confirm_interval_s 0: cycles only (the agent before fast confirmation).
    - A wall-clock step (StepDetector, checked at each start) is logged once and handed to on_clock_step; the
      rhythm does not change.
    A cycle or pass that raises is logged; the loop goes on. `cycles`, `passes`, `misfires`, `clock_steps` and
    `last_start_monotonic_s` may be read from any thread.
    """

    def __init__(self, cycle: Callable[[], Any], interval_s: float, jitter_s: float, *,
                 confirm_pass: Callable[[], Any] | None = None, unsettled: Callable[[], Any] = lambda: (),
                 confirm_interval_s: float = 0.0, on_misfire: Callable[[int], None] = lambda lost: None,
                 on_clock_step: Callable[[ClockStep], None] = _ignore_step, clock: Clock | None = None,
                 uniform: Callable[[float, float], float] = random.uniform,
                 step_detector: StepDetector | None = None) -> None:
        if not interval_s > 0:
            raise ValueError(f"ProbeLoop: interval_s must be > 0, not {interval_s!r}")
        self._cycle = cycle
        self._interval_s = interval_s
        self._jitter_s = jitter_s
        self._confirm_pass = confirm_pass if confirm_interval_s > 0 else None
        self._unsettled = unsettled
        self._confirm_interval_s = confirm_interval_s
        self._on_misfire = on_misfire
        self._on_clock_step = on_clock_step
        self._clock: Clock = clock or SystemClock()
        self._uniform = uniform
        self._steps = step_detector or StepDetector()
        self._cond = threading.Condition()
        self._anchor_s: float | None = None    # monotonic time of slot 0 (start)
        self._next_slot = 0                    # index of the first slot not reached yet
        self._due_at: float | None = None      # monotonic start time of the reached slot's cycle not started yet
        self._stopped = False
        self.misfires = 0
        self.cycles = self.passes = 0
        self.clock_steps = 0
        self.last_start_monotonic_s: float | None = None
        self._thread = threading.Thread(target=self.run, name="probe-loop", daemon=True)

    def _slot_time(self, k: int) -> float:
        assert self._anchor_s is not None
        return self._anchor_s + k * self._interval_s

    def _reach_slots(self, now: float) -> None:
        """Mark the latest slot reached by `now` due (one division, whatever the gap); count the slots lost."""
        if self._anchor_s is None or now < self._slot_time(self._next_slot):
            return
        reached = max(self._next_slot + 1, math.floor((now - self._anchor_s) / self._interval_s) + 1)
        lost = reached - self._next_slot - 1 + (1 if self._due_at is not None else 0)
        latest = reached - 1
        delay_s = self._uniform(0.0, self._jitter_s) if self._jitter_s > 0 and latest > 0 else 0.0
        self._due_at = self._slot_time(latest) + delay_s
        self._next_slot = reached
        if lost:
            self._misfire(lost)

    def _misfire(self, lost: int) -> None:
        self.misfires += lost
        log.warning("probe cycle misfired: %d slot(s) passed while the cycle of an earlier slot waited to start; "
                    "%d misfires so far", lost, self.misfires)
        try:
            self._on_misfire(lost)
        except Exception:  # a listener error never stops the loop
            log.exception("misfire listener failed")

    def _next(self, last_start: float | None) -> str | None:
        """Wait for the next thing to run: "cycle", "pass", or None when stopped."""
        with self._cond:
            while not self._stopped:
                now = self._clock.monotonic()
                self._reach_slots(now)
                if self._due_at is not None and self._due_at <= now:
                    self._due_at = None
                    return "cycle"
                wait_s = self._slot_time(self._next_slot) - now
                if self._due_at is not None:
                    wait_s = min(wait_s, self._due_at - now)
                if self._confirm_pass is not None and last_start is not None and self._unsettled():
                    pass_in_s = last_start + self._confirm_interval_s - now
                    if pass_in_s <= 0:
                        return "pass"
                    wait_s = min(wait_s, pass_in_s)
                self._clock.wait(self._cond, max(0.0, wait_s))
            return None

    def _watch_clock(self) -> None:
        step = self._steps.observe(self._clock.time(), self._clock.monotonic())
        if step is None:
            return
        self.clock_steps += 1
        log.warning("wall clock stepped %s by %.3f s (wall - monotonic moved; %d steps so far): probing keeps its "
                    "rhythm on the monotonic clock, points carry the new wall time",
                    "forward" if step.step_s > 0 else "back", abs(step.step_s), self.clock_steps)
        try:
            self._on_clock_step(step)
        except Exception:  # a listener error never stops the loop
            log.exception("clock step listener failed")

    def run(self) -> None:
        """Run the loop in the calling thread until stop() (start() runs it in its own thread)."""
        with self._cond:
            if self._anchor_s is None:
                self._anchor_s = self._clock.monotonic()   # the grid is anchored here; slot 0 runs at once
        last_start = None
        while (what := self._next(last_start)) is not None:
            last_start = self._clock.monotonic()
            self.last_start_monotonic_s = last_start
            self._watch_clock()
            try:
                if what == "cycle":
                    self.cycles += 1
                    self._cycle()
                elif self._confirm_pass is not None:
                    self.passes += 1
                    self._confirm_pass()
            except Exception:  # one broken cycle never stops probing
                log.exception("probe %s raised", what)

    def start(self) -> None:
        """Start the loop thread; the first cycle runs at once, and the grid of slots is anchored here."""
        with self._cond:
            self._anchor_s = self._clock.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Stop: no new cycle or pass starts; waits for the one in progress to finish (unless called by it)."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()
