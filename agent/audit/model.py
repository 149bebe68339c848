"""The audit's types: what one audit reads (AuditInput: inspect, /proc, the engine's defaults), what it finds
(Finding, BoxAudit) and the messages the audit service publishes (AuditCompleted, PrivilegesChanged)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

# The benchmark the finding ids come from: Docker Bench for Security, tests/5_container_runtime.sh of its
# release v1.6.0 (https://github.com/docker/docker-bench-security, CIS Docker Benchmark section 5 numbering).
BENCH = "docker-bench-security 1.6.0"


class Severity(StrEnum):
    """How much a finding weakens isolation: high (the host is reachable: privileged, host PID, engine socket...),
    medium (a wider door: added capabilities, host network), low (hardening not applied: limits, policies)."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


SEVERITIES: tuple[str, ...] = tuple(s.value for s in Severity)


class AuditClass(StrEnum):
    """A box's privilege class for the report: privileged (--privileged or every capability), elevated (a finding
    that widens isolation), default (none), unknown (no audit data: never counted as default)."""

    PRIVILEGED = "privileged"
    ELEVATED = "elevated"
    DEFAULT = "default"
    UNKNOWN = "unknown"


AUDIT_CLASSES: tuple[str, ...] = tuple(c.value for c in AuditClass)


@dataclass(frozen=True, slots=True)
class ProcStatus:
    """What /proc/PID/status says of a container's main process (proc(5)): capability sets, NoNewPrivs, Seccomp.

    seccomp: 0 disabled, 1 strict, 2 filter; None when the kernel does not show it.
    """

    cap_eff: frozenset[str]
    cap_bnd: frozenset[str]
    no_new_privs: bool | None
    seccomp: int | None


@dataclass(frozen=True, slots=True)
class EngineDefaults:
    """What the host's engine gives a container by default, read from the host (agent.auditor.engine_defaults).

    default_caps: the engine's default capability set (kernel names); caps_source: where that set was read
    (e.g. "/proc/1234/status CapBnd of box-clean (no --cap-add/--cap-drop)"); lsms: the security modules the
    engine has on ("apparmor", "selinux", "seccomp", "userns"); sockets: host paths of the engine's API socket.
    """

    engine: str
    default_caps: frozenset[str]
    caps_source: str
    lsms: frozenset[str] = frozenset()
    sockets: tuple[str, ...] = ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock")
    caps_known: bool = True   # False: the default set could not be read (5.3 then counts every --cap-add)


@dataclass(frozen=True, slots=True)
class AuditInput:
    """One box's audit input: its container's inspect dict (Docker Engine API shape; Podman's compatible API gives
    the same), its main process's /proc status (None when not running: proc_note says why) and the engine's
    defaults."""

    box: str
    inspect: Mapping[str, Any]
    engine: EngineDefaults
    proc: ProcStatus | None = None
    proc_note: str = "not running"

    @property
    def host_config(self) -> Mapping[str, Any]:
        """inspect's HostConfig ({} when absent)."""
        hc = self.inspect.get("HostConfig")
        return hc if isinstance(hc, Mapping) else {}

    @property
    def mounts(self) -> list[Mapping[str, Any]]:
        """inspect's Mounts (Type, Source, Destination, RW, Propagation)."""
        ms = self.inspect.get("Mounts")
        return [m for m in ms if isinstance(m, Mapping)] if isinstance(ms, list) else []

    @property
    def security_opt(self) -> list[str]:
        """HostConfig.SecurityOpt, e.g. ["seccomp=unconfined", "no-new-privileges"]."""
        so = self.host_config.get("SecurityOpt")
        return [s for s in so if isinstance(s, str)] if isinstance(so, list) else []


@dataclass(frozen=True, slots=True)
class Finding:
    """One finding on one box: the check's id (its docker-bench-security item where it has one), severity, what was
    found, the evidence it rests on (inspect key or /proc field), a one-line fix, the benchmark item, and the
    privileges it grants (tokens such as "CAP_SYS_ADMIN", "pid=host": what a change between audits names)."""

    id: str
    title: str
    severity: Severity
    detail: str
    evidence: str
    fix: str
    bench: str
    privileges: tuple[str, ...] = ()
    elevates: bool = True

    def to_json(self) -> dict[str, Any]:
        """The finding as JSON (`audit --json`)."""
        return {"id": self.id, "title": self.title, "severity": self.severity.value, "detail": self.detail,
                "evidence": self.evidence, "fix": self.fix, "bench": self.bench,
                "privileges": list(self.privileges), "elevates": self.elevates}


@dataclass(frozen=True, slots=True)
class BoxAudit:
    """The audit of one box at time_s (epoch s): its findings, class and privileges; proc says whether /proc was
    read ("read") or why not ("not running", "unreadable: ..."); error: the box could not be audited at all (then
    no findings and class unknown)."""

    box: str
    time_s: float
    container: str
    findings: tuple[Finding, ...] = ()
    audit_class: AuditClass = AuditClass.UNKNOWN
    privileges: frozenset[str] = frozenset()
    proc: str = "not running"
    engine: str = ""
    caps_source: str = ""
    error: str | None = None

    def counts(self) -> dict[str, int]:
        """severity -> number of findings (every severity present, 0 included)."""
        return {s: sum(f.severity == s for f in self.findings) for s in SEVERITIES}

    def to_json(self) -> dict[str, Any]:
        """The box's audit as JSON (`audit --json`)."""
        return {"box": self.box, "container": self.container, "time_s": self.time_s,
                "class": self.audit_class.value, "privileges": sorted(self.privileges), "proc": self.proc,
                "engine": self.engine, "caps_source": self.caps_source, "error": self.error,
                "findings": [f.to_json() for f in self.findings]}


@dataclass(frozen=True, slots=True)
class AuditCompleted:
    """Bus message: a box was audited (at start, on an engine event, on the interval); `audit` points, gauges."""

    audit: BoxAudit
    trigger: str   # start, interval, or the engine event (start, restart, resync, ...)


@dataclass(frozen=True, slots=True)
class PrivilegesChanged:
    """Bus message: a box's privileges differ from its previous audit (kept across restarts, state_dir/audit.json).

    text: "privileges changed: +CAP_SYS_ADMIN -pid=host"; old_class/new_class: the audit classes.
    """

    box: str
    time_s: float
    added: tuple[str, ...]
    removed: tuple[str, ...]
    old_class: str
    new_class: str
    text: str = field(default="")
