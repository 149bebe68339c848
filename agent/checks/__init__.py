"""In-container checks of a box (path, x509, disk, exec): CHECKS registry, one file per kind, run by agent.checks.runner.

Each kind is a module declaring NAME, KEYS (the [[box.check]] keys it takes besides kind and
timeout), `argv(check) -> list[str]` (what runs inside the container's mount namespace) and
`judge(check, returncode, stdout, now_s) -> Judged` (what the output says). A check that fails
is data (ok False, an error), never an exception.
"""
from __future__ import annotations

from agent.checks import disk, exec as exec_, path, x509
from agent.checks.types import Check, CheckKind, CheckResult, Judged

CHECKS: dict[str, CheckKind] = {
    "path": path,
    "x509": x509,
    "disk": disk,
    "exec": exec_,
}
CHECK_KINDS: tuple[str, ...] = tuple(CHECKS)
PROBE_PREFIX = "check:"   # a check's results carry probe = "check:<kind>"

__all__ = ["CHECKS", "CHECK_KINDS", "PROBE_PREFIX", "Check", "CheckKind", "CheckResult", "Judged"]
