"""The whole agent with its wall clock stepped by libfaketime (issue 27.1): back an hour, forward 90 days.

The agent runs under LD_PRELOAD=libfaketime.so.1 with FAKETIME_DONT_FAKE_MONOTONIC=1 (only the wall clock moves)
and an offset file the test rewrites; `status --check` runs under the same offset file. Cycles are counted from
the WATCHDOG=1 datagrams the agent sends to NOTIFY_SOCKET (a socket of the test: no systemd here), so this is
also the watchdog's test. No in-container checks and no command actions: children of a faked process may fail.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from tests.agent.agent_proc import (
    AGENT_BIN,
    AgentProc,
    errors_in_log,
    query,
    write_config,
)

pytestmark = pytest.mark.lab

LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
WINDOW_S = 10.0


class NotifyListener:
    """A bound AF_UNIX datagram socket standing in for systemd's; records (monotonic time, message)."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.2)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode(errors="replace")))

    def watchdogs(self, start: float, end: float) -> int:
        return sum(1 for t, m in self.messages if start <= t < end and "WATCHDOG=1" in m.split("\n"))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def set_offset(path: str, offset_s: float) -> None:
    with open(path + ".new", "w") as fh:
        fh.write(f"{offset_s:+.0f}\n")
    os.replace(path + ".new", path)


def status_check(cfg: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([AGENT_BIN, "status", "-c", cfg, "--check"], capture_output=True, text=True, timeout=60,
                          check=False,
                          env=os.environ | env)


def test_wall_clock_steps_change_no_rhythm_and_every_health_check_still_sees_a_stall(clean_lab, tmp_path, agents):
    if not os.path.exists(LIBFAKETIME):
        pytest.skip(f"{LIBFAKETIME} missing: apt-get install faketime (scripts/setup installs it)")
    lab, db = clean_lab, "t_clock_steps"
    offset = str(tmp_path / "faketime-offset")
    set_offset(offset, 0)
    faked = {"LD_PRELOAD": LIBFAKETIME, "FAKETIME_TIMESTAMP_FILE": offset, "FAKETIME_NO_CACHE": "1",
             "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    notify = NotifyListener(str(tmp_path / "notify"))
    cfg = write_config(lab, str(tmp_path), database=db)          # interval 1 s, no jitter
    # VOBOX_CLOCK_TEST_PYTHONPATH: run another tree's agent under the same test (the figures of before/after)
    extra = {"PYTHONPATH": os.environ["VOBOX_CLOCK_TEST_PYTHONPATH"]} if "VOBOX_CLOCK_TEST_PYTHONPATH" in os.environ else {}
    a = AgentProc(lab, cfg, str(tmp_path / "agent.log"),
                  env=faked | extra | {"NOTIFY_SOCKET": notify.sock.getsockname()})
    agents.append(a)
    stopped = False
    try:
        a.wait_until("all boxes up", lambda st: all(b["state"] == "up" for b in st["boxes"].values()), 60)
        time.sleep(WINDOW_S)
        counts, checks = [], []
        for offset_s in (-3600, 90 * 86400 - 3600):              # back an hour; then forward 90 days from there
            at = time.monotonic()
            set_offset(offset, offset_s)
            time.sleep(WINDOW_S)
            counts.append((notify.watchdogs(at - WINDOW_S, at), notify.watchdogs(at, at + WINDOW_S)))
            checks.append(status_check(cfg, faked).returncode)
        print(f"cycles (WATCHDOG=1) in the {WINDOW_S:g} s before/after: back 1 h {counts[0]}, forward 90 d {counts[1]}")
        assert checks == [0, 0]                                  # fresh: the loop runs, whatever the wall clock
        # interval 1 s: about 10 cycles (watchdog pings) in each 10 s before and after each step
        assert all(before >= 8 and after >= 8 for before, after in counts), counts
        log = a.log_text()
        steps = [line for line in log.splitlines() if "wall clock stepped" in line]
        assert len(steps) == 2 and "back by 3600" in steps[0] and "forward by 7776000" in steps[1], steps
        # a stopped loop, with the wall clock back an hour: every check says so
        set_offset(offset, -3600)
        a.wait_cycles(2)
        os.kill(a.pid, signal.SIGSTOP)
        stopped = True
        t_stop = time.monotonic()
        time.sleep(3 * 1 + 2)                                    # three intervals and more
        check = status_check(cfg, faked)
        assert check.returncode == 1 and "stale" in check.stderr and "monotonic" in check.stderr, check
        assert notify.watchdogs(t_stop + 1.5, time.monotonic()) == 0   # no WATCHDOG=1 while no cycle runs
        os.kill(a.pid, signal.SIGCONT)
        stopped = False
        a.wait_cycles(2)
        assert status_check(cfg, faked).returncode == 0
        assert a.stop() == 0
        assert errors_in_log(a.log_text()) == []
    finally:
        if stopped:
            os.kill(a.pid, signal.SIGCONT)
        notify.close()
    rows = query(lab, "SELECT clock_step_s FROM agent WHERE event = 'clock_step'", db)
    # one point per step, at the wall time after it (the forward one 90 days ahead: sorted last)
    assert [round(r["clock_step_s"]) for r in rows] == [-3600, -7776000, 7776000], rows
