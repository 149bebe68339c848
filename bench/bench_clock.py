#!/usr/bin/env python3
"""Benchmark the probe loop across a wall-clock step: cycles in the 10 s before and after, and peak memory.

    .venv/bin/python bench/bench_clock.py [--step -3600] [--step +2592000] [--interval 1] [--window 10]

For each --step (seconds; negative: back), a child process runs `agent.schedule.ProbeLoop` with a cycle that
only prints its monotonic time, its wall clock moved by libfaketime (Debian `faketime`: LD_PRELOAD
libfaketime.so.1, FAKETIME_TIMESTAMP_FILE, FAKETIME_NO_CACHE=1, FAKETIME_DONT_FAKE_MONOTONIC=1; the monotonic
clock is the real one). After --window + 1 s the offset file is changed to the step; the child runs --window + 1 s
more. Printed per step: cycles whose monotonic start lies in the --window seconds before the step and after it,
and the child's peak RSS (VmHWM). Nothing but the child's own clock is changed; the child is killed at the end.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
CHILD = r"""
import logging, sys, time
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from agent.schedule import ProbeLoop
def cycle():
    print(time.monotonic(), time.time(), flush=True)
loop = ProbeLoop(cycle, float(sys.argv[1]), 0.0)
loop.start()
import threading; threading.Event().wait()   # time.sleep(big) is EINVAL under libfaketime
"""


def peak_rss_mib(pid: int) -> float:
    """VmHWM of a process in MiB (0 when gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def one(step_s: float, interval_s: float, window_s: float) -> tuple[int, int, float, str]:
    """(cycles before, cycles after, peak RSS MiB, stderr tail) for one step."""
    with tempfile.TemporaryDirectory() as tmp:
        offset = os.path.join(tmp, "offset")
        with open(offset, "w") as f:
            f.write("+0\n")
        env = dict(os.environ, LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=offset, FAKETIME_NO_CACHE="1",
                   FAKETIME_DONT_FAKE_MONOTONIC="1", PYTHONUNBUFFERED="1")
        err_path = os.path.join(tmp, "stderr")
        with open(err_path, "w") as err, open(os.path.join(tmp, "stdout"), "w+") as out:
            child = subprocess.Popen([sys.executable, "-c", CHILD, str(interval_s)], stdout=out, stderr=err,
                                     env=env, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
            try:
                time.sleep(window_s + 1)
                step_at = time.monotonic()
                with open(offset + ".new", "w") as f:
                    f.write(f"{step_s:+.0f}\n")
                os.replace(offset + ".new", offset)
                time.sleep(window_s + 1)
                rss = peak_rss_mib(child.pid)
            finally:
                child.kill()
                child.wait()
            out.seek(0)
            starts = [float(line.split()[0]) for line in out if line.strip()]
        with open(err_path) as f:
            tail = f.read()[-300:]
    before = sum(1 for s in starts if step_at - window_s <= s < step_at)
    after = sum(1 for s in starts if step_at <= s < step_at + window_s)
    return before, after, rss, tail


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--step", action="append", type=float, help="seconds the wall clock moves (repeatable)")
    ap.add_argument("--interval", type=float, default=1.0, help="probe interval, s")
    ap.add_argument("--window", type=float, default=10.0, help="seconds counted before and after the step")
    args = ap.parse_args()
    if not os.path.exists(LIBFAKETIME):
        print(f"bench_clock: {LIBFAKETIME} missing (apt-get install faketime)", file=sys.stderr)
        return 2
    print(f"{'step_s':>12} {'cycles before':>14} {'cycles after':>13} {'peak RSS MiB':>13}")
    for step in args.step or [-3600.0, 30 * 86400.0]:
        before, after, rss, tail = one(step, args.interval, args.window)
        print(f"{step:>+12.0f} {before:>14} {after:>13} {rss:>13.1f}")
        if tail.strip():
            print("   child stderr: " + tail.strip().replace("\n", "\n   "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
