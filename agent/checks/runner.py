"""Runs every box's in-container checks at once, each a killable subprocess in the container's mount namespace.

`nsenter -t PID -m -- ARGV` runs ARGV (resolved inside the container) in the container's mount
namespace, so a path is seen as the box sees it (the bind-mounted /cvmfs included). Each runs in
its own session and is killed (SIGKILL to its process group) at its timeout: a process blocked on
a hung FUSE mount may not even die of SIGKILL (a FUSE request already read by the daemon waits
uninterruptibly, measured here: the CVMFS stand-in's hang), so it is left behind, never waited
for, and while it lives that check is not started again: it fails at once as hung. A hung
mount costs one timeout and at most one stuck process per check, never a cycle.
The container's PID comes from the Docker API once and is cached; it is re-read when
/proc/PID no longer belongs to the container (it restarted).
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from agent.checks import CHECKS, PROBE_PREFIX
from agent.checks.types import LAYER, Check, CheckResult

log = logging.getLogger(__name__)

MAX_PARALLEL = 64            # subprocesses in flight at once
MAX_OUTPUT_BYTES = 1 << 20   # what a check may print (x509: a PEM file)
REAP_S = 0.05                # how long to wait for a killed check to go (blocked on FUSE it may never)
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}


class CheckSetupError(Exception):
    """The check cannot run at all (container not running, Docker unreachable); the message says why."""


@dataclass(frozen=True, slots=True)
class BoxChecks:
    """One box's checks and the container they run in."""

    box: str
    container: str
    checks: tuple[Check, ...]


class ContainerPids:
    """container name -> PID of its main process (Docker API, cached; re-read after a restart)."""

    def __init__(self, docker: Callable[[], Any]) -> None:
        self._docker = docker
        self._client: Any = None
        self._cache: dict[str, tuple[int, str]] = {}   # container -> (pid, full id)
        self.lookups = 0

    @staticmethod
    def _belongs(pid: int, ctr_id: str) -> bool:
        """Is /proc/PID still the container's process (its cgroup names the container id)?"""
        try:
            with open(f"/proc/{pid}/cgroup", encoding="utf-8") as fh:
                return ctr_id in fh.read()
        except OSError:
            return False

    def pid(self, container: str) -> int:
        """The PID of CONTAINER's main process; CheckSetupError when it is not running or Docker fails."""
        cached = self._cache.get(container)
        if cached is not None and self._belongs(*cached):
            return cached[0]
        self._cache.pop(container, None)
        self.lookups += 1
        try:
            if self._client is None:
                self._client = self._docker()
            attrs = self._client.api.inspect_container(container)
        except Exception as exc:  # noqa: BLE001 - docker.errors.*, requests errors: the check cannot run
            self._client = None if "connection" in str(exc).lower() else self._client
            raise CheckSetupError(f"docker inspect {container}: {type(exc).__name__}: {exc}") from None
        state = attrs.get("State") or {}
        pid = int(state.get("Pid") or 0)
        if not state.get("Running") or pid <= 0:
            raise CheckSetupError(f"container {container} is not running ({state.get('Status', 'unknown')})")
        self._cache[container] = (pid, attrs.get("Id", ""))
        return pid


def run_killable(argv: Sequence[str], timeout_s: float) -> tuple[int | None, bytes, float, subprocess.Popen | None]:
    """(exit code or None when killed at the timeout, stdout, seconds taken, the process if it outlived SIGKILL).

    A new session each, so SIGKILL of its process group reaches whatever it started.
    """
    started = time.monotonic()
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=ENV)
    try:
        out, _ = proc.communicate(timeout=timeout_s)
        return proc.returncode, out[:MAX_OUTPUT_BYTES], time.monotonic() - started, None
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            proc.communicate(timeout=REAP_S)
        except subprocess.TimeoutExpired:
            return None, b"", time.monotonic() - started, proc
        return None, b"", time.monotonic() - started, None


def nsenter_argv(pid: int, argv: Sequence[str]) -> list[str]:
    """ARGV run in the mount namespace of process PID (util-linux nsenter; measured: ~5-10 ms a check here,
    against ~70-90 ms for `docker exec`)."""
    return ["nsenter", "-t", str(pid), "-m", "--", *argv]


class CheckRunner:
    """Runs the checks of the given boxes concurrently: `run(names) -> {box: [CheckResult, ...]}`, never raises."""

    def __init__(self, boxes: Iterable[BoxChecks], pids: ContainerPids, default_timeout_s: float, *,
                 clock: Callable[[], float] = time.time,
                 wrap: Callable[[int, Sequence[str]], list[str]] = nsenter_argv) -> None:
        self.boxes = {b.box: b for b in boxes if b.checks}
        self.pids = pids
        self.default_timeout_s = default_timeout_s
        self.clock = clock
        self.wrap = wrap   # (pid, argv) -> the argv that runs it in the container
        self._pool = ThreadPoolExecutor(max_workers=MAX_PARALLEL, thread_name_prefix="check")
        self._stuck: dict[tuple[str, Check], subprocess.Popen] = {}   # killed but still blocked (D state)

    def __call__(self, names: Iterable[str]) -> dict[str, list[CheckResult]]:
        return self.run(names)

    def run(self, names: Iterable[str]) -> dict[str, list[CheckResult]]:
        """Every check of the named boxes (those without checks are left out), results in config order."""
        jobs: list[tuple[str, Check, Any]] = []
        for name in names:
            bc = self.boxes.get(name)
            if bc is None:
                continue
            try:
                pid: int | str = self.pids.pid(bc.container)
            except CheckSetupError as exc:
                pid = str(exc)
            for check in bc.checks:
                jobs.append((name, check, self._pool.submit(self._one, bc, check, pid)))
        out: dict[str, list[CheckResult]] = {}
        for name, check, fut in jobs:
            try:
                result = fut.result()
            except Exception as exc:  # a check's own bug is that check's failure (logged with its traceback)
                log.exception("box %s: check %s %s failed to run", name, check.kind, check.target)
                result = self._result(check, False, None, f"check error: {type(exc).__name__}: {exc}")
            out.setdefault(name, []).append(result)
        return out

    def _one(self, bc: BoxChecks, check: Check, pid: int | str) -> CheckResult:
        if isinstance(pid, str):
            return self._result(check, False, None, pid)
        kind = CHECKS[check.kind]
        timeout_s = check.timeout_s or self.default_timeout_s
        stuck = self._stuck.get((bc.box, check))
        if stuck is not None:
            if stuck.poll() is None:
                return self._result(check, False, None, f"hung: the previous check (pid {stuck.pid}) is still "
                                                        f"blocked after SIGKILL")
            del self._stuck[(bc.box, check)]
        code, out, took_s, left = run_killable(self.wrap(pid, kind.argv(check)), timeout_s)
        if code is None:
            log.info("box %s: check %s %s hung: no answer within %g s, killed%s", bc.box, check.kind, check.target,
                     timeout_s, f" (pid {left.pid} still blocked)" if left is not None else "")
            if left is not None:
                self._stuck[(bc.box, check)] = left
            return self._result(check, False, None, f"hung: no answer within {timeout_s:g} s (killed)")
        judged = kind.judge(check, code, out, self.clock())
        return self._result(check, judged.ok, took_s * 1000.0 if judged.ok else None, judged.error,
                            judged.warning, judged.days_left, judged.not_after_s, judged.percent, judged.proxy)

    def _result(self, check: Check, ok: bool, rtt_ms: float | None, error: str | None, warning: str | None = None,
                days_left: float | None = None, not_after_s: float | None = None,
                percent: float | None = None, proxy: bool = False) -> CheckResult:
        return CheckResult(check.target, PROBE_PREFIX + check.kind, None, ok, rtt_ms, None if ok else error, None,
                           self.clock(), layer=None if ok else LAYER, cert_not_after_s=not_after_s,
                           cert_days_left=days_left, warning=warning, percent=percent, proxy=proxy)

    def close(self) -> None:
        """Stop the worker threads (after the last cycle)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
