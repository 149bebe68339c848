"""`disk`: used space of the file system holding a path; above warn_percent is a warning, not a failure.

Read with `stat -f` (statfs: no /proc needed, which a process entered into the mount namespace
from outside the container's PID namespace cannot read), used percent computed as df does.
"""
from __future__ import annotations

from agent.checks.types import Check, Judged

NAME = "disk"
KEYS = ("path", "warn_percent")


def argv(check: Check) -> list[str]:
    """statfs of the path inside the container: blocks available (non-root), total, free."""
    return ["stat", "-f", "-c", "%a %b %f", "--", check.path or "/"]


def judge(check: Check, returncode: int, stdout: bytes, now_s: float) -> Judged:
    """Used percent as df computes it: used / (used + available to non-root)."""
    if returncode != 0:
        return Judged(False, f"stat -f {check.path} failed (exit {returncode})")
    try:
        avail, total, free = (int(x) for x in stdout.split())
    except ValueError:
        return Judged(False, f"stat -f {check.path}: unreadable output {stdout[:200]!r}")
    used = total - free
    percent = 100.0 * used / (used + avail) if used + avail > 0 else 0.0
    warning = None
    if check.warn_percent is not None and percent > check.warn_percent:
        warning = f"{check.path} is {percent:.1f} % full (> {check.warn_percent:g} %)"
    return Judged(True, warning=warning, percent=round(percent, 2))
