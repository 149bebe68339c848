"""What a doctor check returns: CheckResult, and the helpers every topic uses to make one."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check's outcome: ok=False is a failure; ok with warning=True is a warning."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None
    warning: bool = False

    @property
    def label(self) -> str:
        """PASS, WARN or FAIL."""
        if not self.ok:
            return "FAIL"
        return "WARN" if self.warning else "PASS"


def passed(name: str, detail: str) -> CheckResult:
    """A PASS line."""
    return CheckResult(name, True, detail)


def warned(name: str, detail: str, fix: str | None = None) -> CheckResult:
    """A WARN line with its fix."""
    return CheckResult(name, True, detail, fix, warning=True)


def failed(name: str, detail: str, fix: str | None = None) -> CheckResult:
    """A FAIL line with its fix."""
    return CheckResult(name, False, detail, fix)


def cfg_value(obj: Any, *names: str, default: Any = None) -> Any:
    """First present attribute of NAMES on OBJ (config field names carry units: interval_s)."""
    for name in names:
        if obj is not None and hasattr(obj, name):
            return getattr(obj, name)
    return default




def format_results(results: Sequence[CheckResult]) -> str:
    """PASS/WARN/FAIL lines, each failure or warning followed by its fix."""
    lines = []
    for r in results:
        lines.append(f"{r.label}  {r.name}: {r.detail}")
        if r.fix and r.label != "PASS":
            fix_lines = r.fix.split("\n")
            lines.append(f"      fix: {fix_lines[0]}")
            lines += [f"      {line}" for line in fix_lines[1:]]
    failed = sum(not r.ok for r in results)
    warned = sum(r.ok and r.warning for r in results)
    lines.append(f"{len(results)} checks: {len(results) - failed - warned} passed, {warned} warnings, {failed} failed")
    return "\n".join(lines)


def results_data(results: Sequence[CheckResult]) -> dict[str, Any]:
    """The checks as data (doctor --json, docs/schemas/doctor.json): each with its status PASS/WARN/FAIL and fix,
    and the counts `format_results` ends with."""
    failed = sum(not r.ok for r in results)
    warned = sum(r.ok and r.warning for r in results)
    return {"checks": [{"name": r.name, "status": r.label, "detail": r.detail,
                        "fix": r.fix if r.label != "PASS" else None} for r in results],
            "passed": len(results) - failed - warned, "warnings": warned, "failed": failed,
            "exit_code": exit_code(results)}


def exit_code(results: Sequence[CheckResult]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 0 if all(r.ok for r in results) else 1
