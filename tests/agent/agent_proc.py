"""Run `vobox-agent --netns NS run -c FILE` as a subprocess against a lab, and read what it stored.

Helpers for tests/agent/test_run_lab.py: a config writer with per-box keys, an
AgentProc (start, wait for cycles, SIGTERM, kill -9), and InfluxQL reads from
inside the lab's monitor namespace.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from agent import netns
from agent.storage import influx

AGENT_BIN = os.path.join(os.path.dirname(sys.executable), "vobox-agent")


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return json.dumps(str(v))


def write_config(lab, directory: str, *, database: str, box_keys: dict[str, dict[str, Any]] | None = None,
                 sections: dict[str, dict[str, Any]] | None = None, **overrides: Any) -> str:
    """Write the lab's agent TOML to DIRECTORY/agent.toml with per-box keys and extra sections; return its path.

    Defaults for a fast lab run: interval 1 s, timeout 0.5 s, no jitter, fail_cycles 2, recover_cycles 2,
    state in DIRECTORY/state, points in DATABASE (one per test, so tests never see each other's points).
    """
    base = {"interval": 1, "timeout": 0.5, "jitter": 0, "fail_cycles": 2, "recover_cycles": 2,
            "state_dir": os.path.join(directory, "state"), "database": database}
    text = lab.agent_config(box_extra=box_keys or {}, **(base | overrides))
    for section, keys in (sections or {}).items():
        text += f"\n[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in keys.items())
    path = os.path.join(directory, "agent.toml")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path


def query(lab, q: str, database: str) -> list[dict[str, Any]]:
    """InfluxQL rows (epoch ms) from the lab's InfluxDB, asked from inside its monitor namespace."""
    with netns.entered(lab.monitor_ns):
        return influx.query(lab.influx_url, q, db=database, epoch="ms")


def read_status(state_dir: str) -> dict[str, Any] | None:
    """state_dir/status.json as written by the agent after each cycle (None before the first)."""
    try:
        with open(os.path.join(state_dir, "status.json"), encoding="utf-8") as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return None


class AgentProc:
    """One `vobox-agent --netns NS run` subprocess with its log file."""

    def __init__(self, lab, config_path: str, log_path: str, cycles: int = 0, global_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.lab = lab
        self.config_path = config_path
        self.log_path = log_path
        self.state_dir = os.path.join(os.path.dirname(config_path), "state")
        argv = [AGENT_BIN, *global_args, "--netns", lab.monitor_ns, "run", "-c", config_path]
        if cycles:
            argv += ["--cycles", str(cycles)]
        self._log = open(log_path, "ab")  # noqa: SIM115 - the agent's log while it runs, closed by stop()
        # The lab's engine (DOCKER_HOST of a podman lab's service; nothing for dockerd), then the test's own.
        engine_env = lab.agent_env() if hasattr(lab, "agent_env") else {}
        environ = {k: v for k, v in os.environ.items() if not k.startswith("NOTIFY_")} | engine_env | (env or {})
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=environ, start_new_session=True)

    @property
    def pid(self) -> int:
        """The agent's pid."""
        return self.proc.pid

    def log_text(self) -> str:
        """Everything the agent logged so far."""
        if not self._log.closed:
            self._log.flush()
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read()

    def _tail(self) -> str:
        return self.log_text()[-3000:]

    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc.poll() is None

    def wait_until(self, what: str, pred: Callable[[dict[str, Any]], bool], timeout_s: float) -> dict[str, Any]:
        """Wait until pred(status.json) holds; AssertionError with the log tail otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"agent exited ({self.proc.returncode}) waiting for {what}:\n{self._tail()}")
            st = read_status(self.state_dir)
            if st is not None and pred(st):
                return st
            time.sleep(0.1)
        raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; status "
                             f"{json.dumps(read_status(self.state_dir))[:1500]}\nlog:\n{self._tail()}")

    def wait_state(self, box: str, state: str, timeout_s: float = 20.0) -> dict[str, Any]:
        """Wait until status.json shows box in state."""
        return self.wait_until(f"box {box} {state}", lambda st: st["boxes"][box]["state"] == state, timeout_s)

    def wait_cycles(self, n: int, timeout_s: float = 30.0) -> None:
        """Wait until status.json was rewritten n more times (n more cycles finished)."""
        seen: list[float] = []

        def fresh(st: dict[str, Any]) -> bool:
            if not seen or st["updated_s"] != seen[-1]:
                seen.append(st["updated_s"])
            return len(seen) > n
        self.wait_until(f"{n} more cycles", fresh, timeout_s)

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 30.0) -> int:
        """Send SIG and wait for the exit; return the exit code (negative: killed by a signal)."""
        if self.alive():
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"agent did not exit within {timeout_s:.0f} s of signal {sig}:\n{self._tail()}") from None
        finally:
            self._log.close()

    def wait_exit(self, timeout_s: float) -> int:
        """Wait for the agent to exit on its own (--cycles N); return the exit code."""
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            tail = self._tail()
            self.stop(signal.SIGKILL)
            raise AssertionError(f"agent still running after {timeout_s:.0f} s:\n{tail}") from None

    def ensure_gone(self) -> None:
        """Kill the agent if it still runs (test teardown)."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(10)
        if not self._log.closed:
            self._log.close()


def errors_in_log(text: str) -> list[str]:
    """Traceback/ERROR lines in an agent log (a clean run has none)."""
    return [ln for ln in text.splitlines() if re.search(r"\bTraceback\b|\bERROR\b|\bCRITICAL\b", ln)]


def free_port(ns: str) -> int:
    """A TCP port free on 127.0.0.1 inside network namespace NS (for the agent's webhook or /metrics)."""
    with netns.entered(ns):
        s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()
