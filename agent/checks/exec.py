"""`exec`: a command run inside the container, argv without a shell; exit code 0 means healthy."""
from __future__ import annotations

from agent.checks.types import Check, Judged

NAME = "exec"
KEYS = ("argv",)


def argv(check: Check) -> list[str]:
    """The configured argv as is."""
    return list(check.argv)


def judge(check: Check, returncode: int, stdout: bytes, now_s: float) -> Judged:
    """ok when the command exited 0."""
    if returncode == 0:
        return Judged(True)
    return Judged(False, f"{check.argv[0]} exited {returncode}")
