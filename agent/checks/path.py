"""`path`: the path exists and answers stat (a hung or broken CVMFS mount fails here)."""
from __future__ import annotations

from agent.checks.types import Check, Judged

NAME = "path"
KEYS = ("path",)


def argv(check: Check) -> list[str]:
    """stat of the path, inside the container (POSIX stat; busybox has it too)."""
    return ["stat", "--", check.path or "/"]


def judge(check: Check, returncode: int, stdout: bytes, now_s: float) -> Judged:
    """ok when stat exited 0."""
    if returncode == 0:
        return Judged(True)
    return Judged(False, f"stat {check.path} failed (exit {returncode})")
