"""Plain data for remediation: targets and policy in, planned actions and records out."""
from __future__ import annotations

from dataclasses import dataclass

TRIGGERS = ("auto", "alert", "manual")


@dataclass(frozen=True, slots=True)
class RemediationTarget:
    """One box as remediation sees it; the runner builds it from the config."""

    box: str
    kind: str                          # "container" or "vm"
    ipv4: str | None = None
    ipv6: str | None = None
    container: str | None = None       # the only container actions may touch
    network: str | None = None         # the only network actions may touch
    command: tuple[str, ...] = ()      # argv template for action "command"
    ladder: tuple[str, ...] = ()       # action names, in escalation order
    dry_run: bool = False              # per-box dry run


@dataclass(frozen=True, slots=True)
class RemediationPolicy:
    """Safety limits and timing; defaults live here and nowhere else (agent.core.config reads them from here)."""

    enabled: bool = True
    dry_run: bool = False
    cooldown_s: float = 60.0
    max_per_box_per_hour: int = 3
    max_per_hour: int = 20
    verify_s: float = 30.0
    reset_after_s: float = 600.0
    stop_timeout_s: float = 10.0
    command_timeout_s: float = 60.0
    retry_deferred_s: float = 30.0
    announce: bool = True              # gratuitous ARP / unsolicited NA after reconnect


@dataclass(frozen=True, slots=True)
class PlannedAction:
    """An action the engine decided to run; the executor runs it and reports an ActionOutcome."""

    box: str
    action: str
    trigger: str
    target: RemediationTarget
    dry_run: bool
    step: int              # ladder index, -1 when the action was named explicitly
    planned_s: float


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What running one action did (before verification)."""

    ok: bool
    detail: str
    duration_s: float
    started_s: float
    deferred_reason: str | None = None   # set when Docker was unreachable: nothing was done


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One remediation attempt, final; maps 1:1 to a `remediation` point."""

    box: str
    kind: str
    action: str
    trigger: str
    ok: bool
    recovered: bool
    dry_run: bool
    duration_s: float
    detail: str
    time_s: float
    deferred: bool = False
    deferred_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ContainerEventRecord:
    """One Docker event for a configured container; maps 1:1 to a `container_event` point."""

    box: str
    kind: str
    event: str              # die, oom, restart, pause, unpause, stop, start, network_connect, network_disconnect
    action: str             # Docker's raw action string
    exit_code: int | None
    detail: str
    time_s: float


@dataclass(frozen=True, slots=True)
class RequestResult:
    """Answer to an explicit (alert/manual) request: accepted with a plan, or refused with a reason."""

    box: str
    action: str | None
    accepted: bool
    reason: str
    planned: PlannedAction | None = None


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One action counted against the hourly caps (persisted so manual actions count too)."""

    time_s: float
    box: str
    action: str
    trigger: str
    dry_run: bool = False
