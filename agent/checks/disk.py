"""`disk`: used space of the file system holding a path (df -P); above warn_percent is a warning, not a failure."""
from __future__ import annotations

from agent.checks.types import Check, Judged

NAME = "disk"
KEYS = ("path", "warn_percent")


def argv(check: Check) -> list[str]:
    """POSIX df output (one header line, one line of 1024-blocks), inside the container."""
    return ["df", "-P", "-k", check.path or "/"]


def judge(check: Check, returncode: int, stdout: bytes, now_s: float) -> Judged:
    """Used percent as df computes it: used / (used + available), rounded up."""
    if returncode != 0:
        return Judged(False, f"df {check.path} failed (exit {returncode})")
    lines = stdout.decode("utf-8", "replace").strip().splitlines()
    try:
        # The file system name may hold spaces; the numbers are the 4 fields after it, counted from the end.
        fields = lines[-1].split()
        used, avail = int(fields[-4]), int(fields[-3])
    except (IndexError, ValueError):
        return Judged(False, f"df {check.path}: unreadable output {stdout[:200]!r}")
    percent = 100.0 * used / (used + avail) if used + avail > 0 else 0.0
    warning = None
    if check.warn_percent is not None and percent > check.warn_percent:
        warning = f"{check.path} is {percent:.1f} % full (> {check.warn_percent:g} %)"
    return Judged(True, warning=warning, percent=round(percent, 2))
