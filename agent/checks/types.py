"""The check data types: Check in (from [[box.check]]), CheckResult out (a ProbeResult with `percent`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from probes import ProbeResult

LAYER = "l7"  # every check failure points at the service layer: the network answers, the box's inside does not


@dataclass(frozen=True, slots=True)
class Check:
    """One in-container check: kind, path or argv, warning thresholds, hard timeout (None: [agent] timeout)."""

    kind: str
    path: str | None = None
    argv: tuple[str, ...] = ()
    warn_days: float | None = None
    warn_percent: float | None = None
    timeout_s: float | None = None

    @property
    def target(self) -> str:
        """What the check looks at, for points and logs: the path, else argv[0]."""
        return self.path or (self.argv[0] if self.argv else self.kind)


@dataclass(frozen=True, slots=True)
class CheckResult(ProbeResult):
    """A check's outcome as a probe result (probe = "check:<kind>", target = path or argv[0], layer l7 on failure)."""

    percent: float | None = None   # disk: used space in percent
    proxy: bool = False            # x509: the certificate is a proxy certificate (RFC 3820, or a legacy Globus one)


@dataclass(frozen=True, slots=True)
class Judged:
    """What a check's output says."""

    ok: bool
    error: str | None = None
    warning: str | None = None
    days_left: float | None = None
    not_after_s: float | None = None
    percent: float | None = None
    proxy: bool = False


class CheckKind(Protocol):
    """What a check kind module provides (its constants read-only here)."""

    @property
    def NAME(self) -> str: ...
    @property
    def KEYS(self) -> tuple[str, ...]: ...

    def argv(self, check: Check) -> list[str]: ...

    def judge(self, check: Check, returncode: int, stdout: bytes, now_s: float) -> Judged: ...
