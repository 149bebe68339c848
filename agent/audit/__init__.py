"""The isolation audit (pure): what each container box may do beyond the engine's defaults, and whether it changed.

Input: the engine's inspect dict, /proc/PID/status of a running container's main process, and the engine's
defaults read from the host (model.EngineDefaults); one function per finding in findings.py (Docker Bench for
Security 1.6.0's section 5 ids). Output: BoxAudit (findings, class, privileges); change_text() names what
changed between two audits. No engine, no files, no clock here: agent.auditor reads them and calls this.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agent.audit import caps
from agent.audit.findings import FINDINGS, run
from agent.audit.model import (
    AUDIT_CLASSES,
    BENCH,
    SEVERITIES,
    AuditClass,
    AuditCompleted,
    AuditInput,
    BoxAudit,
    EngineDefaults,
    Finding,
    PrivilegesChanged,
    ProcStatus,
    Severity,
)

__all__ = ["AUDIT_CLASSES", "BENCH", "FINDINGS", "SEVERITIES", "AuditClass", "AuditCompleted", "AuditInput",
           "BoxAudit", "EngineDefaults", "Finding", "PrivilegesChanged", "ProcStatus", "Severity", "audit",
           "change", "change_text", "classify", "container_name", "parse_proc_status"]


def parse_proc_status(text: str) -> ProcStatus:
    """/proc/PID/status text (proc(5)) -> ProcStatus; ValueError naming the field when CapEff or CapBnd is missing
    or not hex."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            values[key.strip()] = value.strip()

    def mask(key: str) -> frozenset[str]:
        try:
            return caps.from_mask(int(values[key], 16))
        except (KeyError, ValueError):
            raise ValueError(f"/proc status: {key} missing or not hex ({values.get(key)!r})") from None

    def number(key: str) -> int | None:
        v = values.get(key)
        return int(v) if v is not None and v.isdigit() else None

    nnp = number("NoNewPrivs")
    return ProcStatus(mask("CapEff"), mask("CapBnd"), None if nnp is None else bool(nnp), number("Seccomp"))


def classify(findings: Iterable[Finding], proc: ProcStatus | None = None) -> AuditClass:
    """privileged (5.4, or a running process with every capability), elevated (a finding that widens isolation),
    else default. `unknown` is for boxes without an audit, never returned here."""
    fs = list(findings)
    if any(f.id == "5.4" for f in fs) or (proc is not None and caps.ALL_CAPS <= proc.cap_bnd):
        return AuditClass.PRIVILEGED
    if any(f.elevates for f in fs):
        return AuditClass.ELEVATED
    return AuditClass.DEFAULT


def container_name(inspect: Mapping[str, Any]) -> str:
    """inspect's Name without Docker's leading slash."""
    return str(inspect.get("Name") or inspect.get("Id") or "?").lstrip("/")


def audit(inp: AuditInput, time_s: float) -> BoxAudit:
    """Every finding of one box (findings.run), its class and privileges (the union of the findings')."""
    found = run(inp)
    return BoxAudit(inp.box, time_s, container_name(inp.inspect), found, classify(found, inp.proc),
                    frozenset(p for f in found for p in f.privileges),
                    "read" if inp.proc is not None else inp.proc_note, inp.engine.engine, inp.engine.caps_source)


def change(old: frozenset[str], new: frozenset[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(added, removed) privileges, each sorted."""
    return tuple(sorted(new - old)), tuple(sorted(old - new))


def change_text(added: Iterable[str], removed: Iterable[str]) -> str:
    """"privileges changed: +CAP_SYS_ADMIN -pid=host" (added first)."""
    return "privileges changed: " + " ".join([*(f"+{p}" for p in added), *(f"-{p}" for p in removed)])
