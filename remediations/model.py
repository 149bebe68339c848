"""Plain data for remediation: targets and policy in, planned actions and records out."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

TRIGGERS = ("auto", "alert", "manual")
# What a remediation decision was (the `outcome` tag of a `remediation` point): done = the action ran
# (ok/recovered say how it went); refused = not run (cooldown, cap, busy, unknown action, box healthy...);
# held = not run because a hold (segment freeze) holds the box; deferred = not run yet (Docker
# unreachable), retried later; dry_run = described, not run; reset = an admin cleared the box's halt and
# budget (`remediate reset`, action "reset"). Only `done` spends budget.
class RecordOutcome(StrEnum):
    """What a remediation decision was: the `outcome` tag of a `remediation` point (values stored as they are)."""

    DONE = "done"
    REFUSED = "refused"
    HELD = "held"
    DEFERRED = "deferred"
    DRY_RUN = "dry_run"
    RESET = "reset"


OUTCOMES: tuple[str, ...] = tuple(o.value for o in RecordOutcome)


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
    exec: tuple[str, ...] = ()         # argv template for action "exec", run inside the container
    ladder: tuple[str, ...] = ()       # action names, in escalation order
    dry_run: bool = False              # per-box dry run


@dataclass(frozen=True, slots=True)
class RemediationPolicy:
    """Safety limits and timing; defaults live here and nowhere else (agent.core.config reads them from here)."""

    enabled: bool = True
    auto: bool = True                  # act on detected freezes; False: only alerts and manual requests
    dry_run: bool = False
    cooldown_s: float = 60.0
    max_per_box_per_hour: int = 3
    max_per_hour: int = 20
    verify_s: float = 30.0
    reset_after_s: float = 600.0
    stop_timeout_s: float = 10.0
    command_timeout_s: float = 60.0
    exec_timeout_s: float = 60.0       # an `exec` still running then is killed and fails
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
    forced: bool = False   # an admin bypassed cooldown and caps once (remediate --force)
    who: str | None = None   # the login user of a manual request
    why: str | None = None   # the reason given (remediate --reason)


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What running one action did (before verification)."""

    ok: bool
    detail: str
    duration_s: float
    started_s: float
    deferred_reason: str | None = None   # set when Docker was unreachable: nothing was done
    refused_reason: str | None = None    # set when the action cannot run on this box: nothing was done


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """One remediation decision, final; maps 1:1 to a `remediation` point.

    outcome: one of OUTCOMES; ok/recovered mean something only when outcome == "done" (else False);
    recovered None: the action ran but was not verified (the agent stopped during the verify wait);
    reason: why it was refused/held/deferred (empty for done); who/why: a manual request's user and reason.
    """

    box: str
    kind: str
    action: str
    trigger: str
    ok: bool
    recovered: bool | None
    dry_run: bool
    duration_s: float
    detail: str
    time_s: float
    outcome: str = RecordOutcome.DONE
    reason: str = ""
    forced: bool = False
    who: str | None = None
    why: str | None = None

    @property
    def deferred(self) -> bool:
        """outcome == "deferred" (nothing done yet, retried later)."""
        return self.outcome == RecordOutcome.DEFERRED

    @property
    def deferred_reason(self) -> str | None:
        """The reason of a deferred record, else None."""
        return self.reason if self.outcome == RecordOutcome.DEFERRED else None


@dataclass(frozen=True, slots=True)
class ContainerEventRecord:
    """One Docker event for a configured container; maps 1:1 to a `container_event` point."""

    box: str
    kind: str
    event: str              # die, oom, restart, pause, unpause, stop, start, kill, destroy, health_status,
                            # network_connect, network_disconnect, resync (the stream reconnected: state re-read)
    action: str             # Docker's raw action string
    exit_code: int | None
    detail: str
    time_s: float
    signal: str | None = None       # kill: the signal (e.g. "15")
    container_state: str | None = None   # the box's container state after this event (the state cache)
    operator: bool = False          # stopped, killed or removed by someone else (not our remediation, not a crash)


@dataclass(frozen=True, slots=True)
class RemediationStatus:
    """Every box's remediation status at time_s (epoch s): box -> remediations.engine.BoxStatus.

    Published by the service after each cycle's decisions (RemediationService.publish_status), so
    status.json shows budgets and halts without reading the service.
    """

    time_s: float
    boxes: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class RequestResult:
    """Answer to an explicit (alert/manual) request: accepted with a plan, or refused with a reason.

    outcome: "queued" when accepted, else the record's outcome ("refused", "dry_run"...).
    """

    box: str
    action: str | None
    accepted: bool
    reason: str
    planned: PlannedAction | None = None
    outcome: str = "queued"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One action counted against the hourly caps (persisted so manual actions count too)."""

    time_s: float
    box: str
    action: str
    trigger: str
    dry_run: bool = False
