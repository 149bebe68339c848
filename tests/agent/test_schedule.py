"""The probe loop (real APScheduler 3.x slots, a real loop thread): cycles and confirmation passes never overlap;
a cycle due during a pass or an overrunning cycle starts when it ends (late, not skipped); a slot lost while the
one before still waits is one misfire; passes run start to start between cycles, back to back when they last
longer than the confirm interval. The cycles here are made-up callables: the agent's own cycles are covered by
tests/agent/test_pipeline.py and the lab tests."""
from __future__ import annotations

import itertools
import threading
import time

from agent.schedule import ProbeLoop


class Recorder:
    """Runs cycles and passes of given durations; records (kind, start, end) and any overlap."""

    def __init__(self, cycle_s=lambda n: 0.01, pass_s=lambda n: 0.01) -> None:
        self.runs: list[tuple[str, float, float]] = []
        self.overlaps = 0
        self._busy = threading.Lock()
        self._cycle_s, self._pass_s = cycle_s, pass_s

    def _run(self, kind: str, duration_s: float) -> None:
        if not self._busy.acquire(blocking=False):
            self.overlaps += 1
            return
        try:
            start = time.monotonic()
            time.sleep(duration_s)
            self.runs.append((kind, start, time.monotonic()))
        finally:
            self._busy.release()

    def cycle(self) -> None:
        self._run("cycle", self._cycle_s(len(self.starts("cycle"))))

    def confirm(self) -> None:
        self._run("pass", self._pass_s(len(self.starts("pass"))))

    def starts(self, kind: str) -> list[float]:
        return [s for k, s, _ in self.runs if k == kind]


def test_an_overrunning_cycle_delays_the_next_slot_and_a_lost_slot_is_one_misfire():
    interval_s = 0.3
    rec = Recorder(cycle_s=lambda n: interval_s * 2.5 if n == 1 else 0.01)   # cycle 2 overruns by 1.5 slots
    counted: list[int] = []
    loop = ProbeLoop(rec.cycle, interval_s, 0.0, on_misfire=lambda: counted.append(1))
    loop.start()
    time.sleep(interval_s * 6.5)
    loop.stop()
    starts = rec.starts("cycle")
    assert rec.overlaps == 0
    overrun_end = rec.runs[1][2]
    # the slot that fell due during the overrun ran at once when it ended, not at the next slot (APScheduler's
    # max_instances would have skipped it, and the one after it would have started 0.15 s later)
    assert abs(starts[2] - overrun_end) < 0.05, (starts, overrun_end)
    assert loop.misfires == len(counted) == 1       # the second slot of the overrun waited behind the first
    # every slot of the run either started a cycle or was counted lost
    assert loop.cycles + loop.misfires in (7, 8), (loop.cycles, loop.misfires)
    assert rec.starts("pass") == []


def test_passes_run_between_cycles_start_to_start_and_a_cycle_due_during_a_pass_starts_when_it_ends():
    interval_s, confirm_s, pass_s = 1.0, 0.2, 0.35
    unsettled = threading.Event()
    rec = Recorder(pass_s=lambda n: pass_s if n < 4 else 0.01)   # four failing passes, then answering ones
    loop = ProbeLoop(rec.cycle, interval_s, 0.0, confirm_pass=rec.confirm,
                     unsettled=lambda: ("a",) if unsettled.is_set() else (), confirm_interval_s=confirm_s)
    unsettled.set()
    t0 = time.monotonic()
    loop.start()
    time.sleep(2.5)
    unsettled.clear()
    time.sleep(1.2)
    loop.stop()
    assert rec.overlaps == 0 and loop.misfires == 0
    runs = sorted(rec.runs, key=lambda r: r[1])
    # the first cycle at once, the first pass confirm_s after its start
    assert [k for k, _, _ in runs[:2]] == ["cycle", "pass"] and runs[0][1] - t0 < 0.2
    assert 0.19 <= runs[1][1] - runs[0][1] < 0.3, runs[:2]
    # a failing pass (0.35 s, longer than confirm_s) is followed at once: no extra 0.2 s wait
    after_failing = [b[1] - a[1] for a, b in itertools.pairwise(runs) if a[0] == "pass" and a[2] - a[1] > 0.3]
    assert len(after_failing) == 4 and all(0.34 <= g < 0.42 for g in after_failing), runs
    # the cycle of the 1 s slot fell due inside a pass and started when that pass ended: late, not skipped
    second = [r for r in runs if r[0] == "cycle"][1]
    in_pass = [r for r in runs if r[0] == "pass" and r[1] < t0 + interval_s < r[2]]
    assert in_pass and abs(second[1] - in_pass[0][2]) < 0.05, (runs, t0)
    # answering passes: start to start confirm_s
    answering = [b[1] - a[1] for a, b in itertools.pairwise(runs) if a[0] == b[0] == "pass" and a[2] - a[1] < 0.1]
    assert answering and all(0.19 <= g < 0.3 for g in answering), runs
    # nothing unsettled: cycles only, one per slot
    late = [r for r in runs if r[1] > t0 + 2.5 + pass_s]
    assert late and all(k == "cycle" for k, _, _ in late), late
    assert len([r for r in runs if r[0] == "cycle"]) == 4   # slots at 0, 1, 2, 3 s


def test_jitter_delays_each_cycle_from_its_slot_on_an_exact_grid_and_never_accumulates():
    """APScheduler's own jitter is added to the previous jittered time (cycles every interval + jitter/2 on
    average); here each start lies within jitter of its slot k x interval, for every k."""
    interval_s, jitter_s = 0.2, 0.1
    starts: list[float] = []
    loop = ProbeLoop(lambda: starts.append(time.monotonic()), interval_s, jitter_s)
    t0 = time.monotonic()
    loop.start()
    time.sleep(interval_s * 20 + 0.05)
    loop.stop()
    assert starts[0] - t0 < 0.05                                  # the first cycle at once
    delays = [s - (t0 + k * interval_s) for k, s in enumerate(starts)]
    assert len(starts) in (20, 21, 22), len(starts)               # drifting by jitter/2 a cycle would make 17
    assert all(-0.03 <= d <= jitter_s + 0.05 for d in delays), delays
    assert max(delays[1:]) - min(delays[1:]) > jitter_s / 3, delays   # really random per cycle
    assert loop.misfires == 0


def test_without_confirm_interval_no_pass_ever_runs():
    rec = Recorder()
    loop = ProbeLoop(rec.cycle, 0.2, 0.0, confirm_pass=rec.confirm, unsettled=lambda: ("a",), confirm_interval_s=0)
    loop.start()
    time.sleep(0.7)
    loop.stop()
    assert rec.starts("pass") == [] and len(rec.starts("cycle")) in (3, 4, 5)


def test_stop_waits_for_the_probe_in_progress_and_starts_nothing_after():
    rec = Recorder(cycle_s=lambda n: 0.5)
    loop = ProbeLoop(rec.cycle, 10.0, 0.0, confirm_pass=rec.confirm, unsettled=lambda: ("a",),
                     confirm_interval_s=0.05)
    loop.start()
    time.sleep(0.1)                  # the first cycle is running
    t = time.monotonic()
    loop.stop()
    assert 0.3 < time.monotonic() - t < 1.0
    assert [k for k, _, _ in rec.runs] == ["cycle"] and rec.runs[0][2] <= time.monotonic()
    n = len(rec.runs)
    time.sleep(0.2)
    assert len(rec.runs) == n
    idle = ProbeLoop(lambda: None, 10.0, 0.0)
    idle.start()
    time.sleep(0.1)                  # its first cycle ran at once
    t = time.monotonic()
    idle.stop()                      # waiting for a slot 10 s away: stops at once
    assert time.monotonic() - t < 0.3


def test_a_cycle_that_raises_is_logged_and_the_loop_goes_on(caplog):
    calls: list[float] = []

    def cycle() -> None:
        calls.append(time.monotonic())
        if len(calls) == 1:
            raise RuntimeError("probe exploded")

    loop = ProbeLoop(cycle, 0.2, 0.0)
    loop.start()
    time.sleep(0.5)
    loop.stop()
    assert len(calls) >= 2
    assert any("probe cycle raised" in r.getMessage() and r.exc_info for r in caplog.records)
