"""The probe loop (real threads and time for what only they show, stop() waiting for the probe in progress; an
injected clock for the rhythm, the monotonic grid and wall-clock steps):
cycles and confirmation passes never overlap; a cycle due during a pass or an overrunning cycle starts when it ends
(late, not skipped); a slot lost while the
one before still waits is one misfire; passes run start to start between cycles, back to back when they last
longer than the confirm interval. The cycles here are made-up callables: the agent's own cycles are covered by
tests/agent/test_pipeline.py and the lab tests."""
from __future__ import annotations

import itertools
import threading
import time

import pytest

from agent.schedule import MAX_SLEW_PPM, ClockStep, ProbeLoop, StepDetector


class Recorder:
    """Runs cycles and passes of given durations; records (kind, start, end) and any overlap. Durations pass on
    `clock` (real time by default; a FakeClock's advance in the injected-clock tests)."""

    def __init__(self, cycle_s=lambda n: 0.01, pass_s=lambda n: 0.01, clock=None) -> None:
        self.runs: list[tuple[str, float, float]] = []
        self.overlaps = 0
        self._busy = threading.Lock()
        self._cycle_s, self._pass_s = cycle_s, pass_s
        self._now = clock.monotonic if clock else time.monotonic
        self._sleep = clock.advance if clock else time.sleep

    def _run(self, kind: str, duration_s: float) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            return
        try:
            start = self._now()
            self._sleep(duration_s)
            self.runs.append((kind, start, self._now()))
        finally:
            self._busy.release()

    def cycle(self) -> None:
        self._run("cycle", self._cycle_s(len(self.starts("cycle"))))

    def confirm(self) -> None:
        self._run("pass", self._pass_s(len(self.starts("pass"))))

    def starts(self, kind: str) -> list[float]:
        return [s for k, s, _ in self.runs if k == kind]


# ---- real threads: only they show that stop() waits for the probe another thread runs ----------------------


def test_stop_waits_for_the_probe_in_progress_and_starts_nothing_after():
    rec = Recorder(cycle_s=lambda n: 0.3)
    loop = ProbeLoop(rec.cycle, 10.0, 0.0, confirm_pass=rec.confirm, unsettled=lambda: ("a",),
                     confirm_interval_s=0.05)
    loop.start()
    time.sleep(0.05)                 # the first cycle is running
    t = time.monotonic()
    loop.stop()
    assert 0.15 < time.monotonic() - t < 1.0
    assert [k for k, _, _ in rec.runs] == ["cycle"] and rec.runs[0][2] <= time.monotonic()
    n = len(rec.runs)
    time.sleep(0.15)                 # three confirm intervals: a pass would have started
    assert len(rec.runs) == n
    idle = ProbeLoop(lambda: None, 10.0, 0.0)
    idle.start()
    time.sleep(0.05)                 # its first cycle ran at once
    t = time.monotonic()
    idle.stop()                      # waiting for a slot 10 s away: stops at once
    assert time.monotonic() - t < 0.3


class FakeClock:
    """Monotonic and wall clocks that move together when the loop waits; a test steps the wall clock alone.
    With `until` (seconds after the start) the loop is stopped when a wait would pass it (the test's own sleep)."""

    def __init__(self, mono_s: float = 5000.0, wall_s: float = 1_800_000_000.0, until: float | None = None) -> None:
        self.mono_s, self.wall_s = mono_s, wall_s
        self.t0 = mono_s
        self.until = until
        self.on_until = lambda: None
        self.waits = 0

    def monotonic(self) -> float:
        return self.mono_s

    def time(self) -> float:
        return self.wall_s

    def wait(self, cond, timeout_s: float) -> None:
        self.waits += 1
        if self.until is not None and self.mono_s + timeout_s >= self.t0 + self.until:
            self.advance(self.t0 + self.until - self.mono_s)
            self.on_until()
            return
        self.advance(timeout_s)

    def advance(self, seconds: float) -> None:
        self.mono_s += seconds
        self.wall_s += seconds


# ---- the rhythm, with an injected clock (no sleeps: time moves only when the loop waits or a probe runs) ----


def run_until(until_s, make_loop):
    """Run make_loop(clock) in this thread on a FakeClock until `until_s` seconds after its start."""
    clock = FakeClock(until=until_s)
    loop = make_loop(clock)
    clock.on_until = loop.stop
    loop.run()
    return loop, clock


def test_an_overrunning_cycle_delays_the_next_slot_and_a_lost_slot_is_one_misfire():
    interval_s = 0.3
    counted: list[int] = []
    box: dict = {}

    def make(clock):
        box["rec"] = Recorder(cycle_s=lambda n: interval_s * 2.5 if n == 1 else 0.01, clock=clock)  # cycle 2 overruns
        return ProbeLoop(box["rec"].cycle, interval_s, 0.0, on_misfire=counted.append, clock=clock)

    loop, _ = run_until(interval_s * 6.5, make)
    rec = box["rec"]
    starts = rec.starts("cycle")
    assert rec.overlaps == 0
    overrun_end = rec.runs[1][2]
    # the slot that fell due during the overrun ran at once when it ended, not at the next slot (APScheduler's
    # max_instances would have skipped it, and the one after it would have started 0.15 s later)
    assert abs(starts[2] - overrun_end) < 0.05, (starts, overrun_end)
    assert starts[2] == overrun_end
    assert loop.misfires == sum(counted) == 1       # the second slot of the overrun waited behind the first
    # every slot of the run either started a cycle or was counted lost
    assert loop.cycles + loop.misfires in (7, 8), (loop.cycles, loop.misfires)
    assert rec.starts("pass") == []


def test_passes_run_between_cycles_start_to_start_and_a_cycle_due_during_a_pass_starts_when_it_ends():
    interval_s, confirm_s, pass_s = 1.0, 0.2, 0.35
    box: dict = {}

    def make(clock):
        box["rec"] = rec = Recorder(pass_s=lambda n: pass_s if n < 4 else 0.01, clock=clock)  # four failing passes
        # unsettled for the first 2.5 s, then settled
        return ProbeLoop(rec.cycle, interval_s, 0.0, confirm_pass=rec.confirm,
                         unsettled=lambda: ("a",) if clock.monotonic() - clock.t0 < 2.5 else (),
                         confirm_interval_s=confirm_s, clock=clock)

    loop, clock = run_until(3.7, make)
    rec, t0 = box["rec"], clock.t0
    assert rec.overlaps == 0 and loop.misfires == 0
    runs = sorted(rec.runs, key=lambda r: r[1])
    # the first cycle at once, the first pass confirm_s after its start
    assert [k for k, _, _ in runs[:2]] == ["cycle", "pass"] and runs[0][1] - t0 < 0.2
    assert 0.19 <= runs[1][1] - runs[0][1] < 0.3, runs[:2]
    # a failing pass (0.35 s, longer than confirm_s) is followed at once: no extra 0.2 s wait
    after_failing = [b[1] - a[1] for a, b in itertools.pairwise(runs) if a[0] == "pass" and a[2] - a[1] > 0.3]
    assert len(after_failing) == 4 and all(0.34 <= g < 0.42 for g in after_failing), runs
    assert after_failing == pytest.approx([pass_s] * 4)
    # the cycle of the 1 s slot fell due inside a pass and started when that pass ended: late, not skipped
    second = [r for r in runs if r[0] == "cycle"][1]
    in_pass = [r for r in runs if r[0] == "pass" and r[1] < t0 + interval_s < r[2]]
    assert in_pass and abs(second[1] - in_pass[0][2]) < 0.05, (runs, t0)
    assert second[1] == in_pass[0][2]
    # answering passes: start to start confirm_s
    answering = [b[1] - a[1] for a, b in itertools.pairwise(runs) if a[0] == b[0] == "pass" and a[2] - a[1] < 0.1]
    assert answering and all(0.19 <= g < 0.3 for g in answering), runs
    assert answering == pytest.approx([confirm_s] * len(answering))
    # nothing unsettled: cycles only, one per slot
    late = [r for r in runs if r[1] > t0 + 2.5 + pass_s]
    assert late and all(k == "cycle" for k, _, _ in late), late
    assert len([r for r in runs if r[0] == "cycle"]) == 4   # slots at 0, 1, 2, 3 s


def test_jitter_delays_each_cycle_from_its_slot_on_an_exact_grid_and_never_accumulates():
    """APScheduler's own jitter is added to the previous jittered time (cycles every interval + jitter/2 on
    average); here each start lies within jitter of its slot k x interval, for every k (the real random.uniform)."""
    interval_s, jitter_s = 0.2, 0.1
    starts: list[float] = []
    loop, clock = run_until(interval_s * 20 + 0.05, lambda clock: ProbeLoop(
        lambda: (starts.append(clock.monotonic()), clock.advance(0.01)), interval_s, jitter_s, clock=clock))
    t0 = clock.t0
    assert starts[0] - t0 < 0.05                                  # the first cycle at once
    assert starts[0] == t0
    delays = [s - (t0 + k * interval_s) for k, s in enumerate(starts)]
    assert len(starts) in (20, 21, 22), len(starts)               # drifting by jitter/2 a cycle would make 17
    assert all(-0.03 <= d <= jitter_s + 0.05 for d in delays), delays
    assert all(-1e-9 <= d <= jitter_s + 1e-9 for d in delays), delays
    assert max(delays[1:]) - min(delays[1:]) > jitter_s / 3, delays   # really random per cycle
    assert loop.misfires == 0


def test_without_confirm_interval_no_pass_ever_runs():
    box: dict = {}

    def make(clock):
        box["rec"] = rec = Recorder(clock=clock)
        return ProbeLoop(rec.cycle, 0.2, 0.0, confirm_pass=rec.confirm, unsettled=lambda: ("a",),
                         confirm_interval_s=0, clock=clock)

    run_until(0.7, make)
    rec = box["rec"]
    assert rec.starts("pass") == [] and len(rec.starts("cycle")) in (3, 4, 5)


def test_a_cycle_that_raises_is_logged_and_the_loop_goes_on(caplog):
    calls: list[float] = []

    def make(clock):
        def cycle() -> None:
            calls.append(clock.monotonic())
            clock.advance(0.01)
            if len(calls) == 1:
                raise RuntimeError("probe exploded")
        return ProbeLoop(cycle, 0.2, 0.0, clock=clock)

    run_until(0.5, make)
    assert len(calls) >= 2
    assert any("probe cycle raised" in r.getMessage() and r.exc_info for r in caplog.records)


def run_fake(interval_s, *, cycles, during=lambda n, clock: None, jitter_s=0.0, uniform=None, **kw):
    """Run a ProbeLoop on a FakeClock in this thread for `cycles` cycles; during(n, clock) runs inside cycle n
    (0-based). Returns (loop, clock, starts as (monotonic, wall), steps seen)."""
    clock = FakeClock()
    starts: list[tuple[float, float]] = []
    steps: list[ClockStep] = []
    box: dict = {}

    def cycle() -> None:
        starts.append((clock.monotonic(), clock.time()))
        during(len(starts) - 1, clock)
        clock.advance(0.05)                      # the cycle's own work
        if len(starts) >= cycles:
            box["loop"].stop()

    extra = {"uniform": uniform} if uniform else {}
    loop = ProbeLoop(cycle, interval_s, jitter_s, clock=clock, on_clock_step=steps.append, **extra, **kw)
    box["loop"] = loop
    loop.run()
    return loop, clock, starts, steps


@pytest.mark.parametrize("step_s", [
    pytest.param(-3600.0, id="back-1h"),
    pytest.param(-2.0, id="back-2s"),
    pytest.param(5.0, id="forward-5s"),
    pytest.param(90 * 86400.0, id="forward-90d"),
    pytest.param(300 * 86400.0, id="forward-300d"),
    pytest.param(-300 * 86400.0, id="back-300d"),
])
def test_a_wall_clock_step_changes_nothing_of_the_rhythm_and_is_reported_once(step_s, caplog):
    interval_s = 1.0

    def during(n: int, clock: FakeClock) -> None:
        if n == 9:                                # after the 10th cycle's start: the wall clock steps
            clock.wall_s += step_s

    loop, clock, starts, steps = run_fake(interval_s, cycles=20, during=during)
    monos = [m for m, _ in starts]
    # every cycle on its monotonic slot: 10 in the 10 s before the step, 10 in the 10 s after
    assert monos == pytest.approx([monos[0] + k * interval_s for k in range(20)])
    assert len([m for m in monos if m < monos[0] + 10]) == 10 and len(monos) == 20
    assert loop.misfires == 0 and loop.cycles == 20
    # points carry wall-clock stamps: the new wall time after the step
    assert starts[10][1] - starts[9][1] == pytest.approx(interval_s + step_s)
    # one step, seen once (at the next start), with its size
    assert len(steps) == 1 and loop.clock_steps == 1
    assert steps[0].step_s == pytest.approx(step_s) and steps[0].wall_s == starts[10][1]
    warned = [r for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert len(warned) == 1 and ("back" if step_s < 0 else "forward") in warned[0].getMessage()
    # no slot walking: the loop waited once per cycle, whatever the step (20 waits, not millions)
    assert clock.waits <= 21


def test_a_long_stall_of_the_loop_thread_is_one_misfire_count_in_constant_time_and_memory(caplog):
    """The loop thread itself held up for a million slots (a cycle that hung 11.6 days of monotonic time)."""
    lost: list[int] = []
    draws: list[float] = []

    def uniform(a: float, b: float) -> float:
        draws.append(b)
        return 0.0

    def during(n: int, clock: FakeClock) -> None:
        if n == 2:
            clock.advance(1_000_000.0)

    loop, _clock, starts, _ = run_fake(1.0, cycles=5, during=during, jitter_s=0.5, uniform=uniform,
                                      on_misfire=lost.append)
    monos = [m - starts[0][0] for m, _ in starts]
    # the cycle after the stall runs at once (the latest lost slot is due), then on the grid again
    assert monos[3] == pytest.approx(1_000_002.05)
    assert monos[4] == pytest.approx(1_000_003.0)
    assert loop.misfires == sum(lost) == 999_999 and len(lost) == 1
    assert len([r for r in caplog.records if "misfired" in r.getMessage()]) == 1
    assert len(draws) == 4            # one jitter draw per slot that got a cycle, none per lost slot


def test_jitter_on_the_injected_clock_stays_within_its_slot():
    delays = iter([0.3, 0.0, 0.49, 0.1] * 5)
    loop, _, starts, _ = run_fake(1.0, cycles=15, jitter_s=0.5, uniform=lambda a, b: next(delays))
    t0 = starts[0][0]
    offsets = [m - t0 - k for k, (m, _) in enumerate(starts)]
    assert offsets[0] == 0.0                                      # the first cycle at once, unjittered
    assert offsets[1:5] == pytest.approx([0.3, 0.0, 0.49, 0.1])   # each from its own slot: never accumulated
    assert loop.misfires == 0


def test_a_slew_is_not_a_step_and_a_step_is_measured():
    d = StepDetector(threshold_s=1.0)
    assert d.observe(1000.0, 10.0) is None
    # NTP slewing at its maximum (500 ppm) for a day: 43 s of drift, never a step
    mono, wall = 10.0, 1000.0
    for _ in range(8640):
        mono += 10.0
        wall += 10.0 * (1 + MAX_SLEW_PPM * 1e-6)
        assert d.observe(wall, mono) is None
    step = d.observe(wall + 10.0 - 1.5, mono + 10.0)
    assert step is not None and step.step_s == pytest.approx(-1.5) and step.monotonic_s == mono + 10.0
    assert d.observe(wall + 20.0 - 1.5, mono + 20.0) is None        # the new offset is the reference
