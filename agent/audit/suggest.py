"""A least-privilege variant of a box, derived by trial only (pure: the trial runs through an injected callable).

The variant starts with the engine's default capability set plus the devices and mounts inspect shows (the
engine socket left out, /cvmfs rslave); `trial()` adds a capability back only where a check that failed
without it passes with it, and names, for each, the checks that needed it.
"""
from __future__ import annotations

import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agent.audit import caps
from agent.audit.model import AuditInput, BoxAudit

# The check the trial always has: the variant keeps running after its start.
RUNNING = "running"


@dataclass(frozen=True, slots=True)
class Variant:
    """What the variant keeps of the box: devices ("host:ctr:perm"), mounts (source, destination, read-only,
    propagation) and what it leaves out (one line each, with the reason)."""

    devices: tuple[str, ...]
    mounts: tuple[tuple[str, str, bool, str], ...]
    left_out: tuple[str, ...]
    candidates: tuple[str, ...]   # capabilities beyond the default the box has: the ones a trial may add back


def variant_of(inp: AuditInput, audit: BoxAudit, *, for_trial: bool = False) -> Variant:
    """The least-privilege variant of a box from its inspect and audit. for_trial: the box's writable mounts are
    left out too (the trial variant runs next to the box and must not write its data)."""
    hc = inp.host_config
    left = []
    devs = []
    for d in hc.get("Devices") or ():
        if isinstance(d, dict) and d.get("PathOnHost"):
            devs.append(f"{d['PathOnHost']}:{d.get('PathInContainer') or d['PathOnHost']}:"
                        f"{d.get('CgroupPermissions') or 'rwm'}")
    mounts = []
    for m in inp.mounts:
        src, dst = str(m.get("Source") or ""), str(m.get("Destination") or "")
        if any(f.startswith("engine-socket:") and f.endswith(src) for f in audit.privileges):
            left.append(f"mount {src}: the engine socket (5.31)")
            continue
        if m.get("Type", "bind") != "bind":
            left.append(f"{m.get('Type')} mount {dst}: not a bind mount (give it a volume of its own)")
            continue
        rw = m.get("RW") is True
        if for_trial and rw:
            left.append(f"mount {src}:{dst}: writable (the trial must not write the box's data)")
            continue
        prop = str(m.get("Propagation") or "")
        if dst.rstrip("/") == "/cvmfs" or prop in ("shared", "rshared"):
            prop = "rslave"
        mounts.append((src, dst, not rw, prop))
    if hc.get("Privileged") is True:
        left.append("--privileged (5.4)")
        candidates = tuple(sorted(caps.ALL_CAPS - inp.engine.default_caps))
    else:
        candidates = tuple(sorted(p for f in audit.findings if f.id == "5.3" for p in f.privileges))
    for f in audit.findings:
        if f.id in ("5.9", "5.15", "5.16", "5.20", "5.30", "5.21", "5.1", "5.2"):
            left.append(f"{', '.join(f.privileges)} ({f.id})")
    return Variant(tuple(devs), tuple(mounts), tuple(left), candidates)


def run_flags(variant: Variant, cap_add: Iterable[str] = ()) -> list[str]:
    """`docker run`/`podman run` flags of the variant with CAP_ADD added back."""
    out: list[str] = []
    for c in sorted(cap_add):
        out += ["--cap-add", caps.short(c)]
    for d in variant.devices:
        out += ["--device", d]
    for src, dst, ro, prop in variant.mounts:
        opts = ",".join(o for o in ("ro" if ro else "", prop if prop and prop != "rprivate" else "") if o)
        out += ["-v", f"{src}:{dst}" + (f":{opts}" if opts else "")]
    return out


def flags_text(flags: list[str]) -> str:
    """Flags as one shell-quoted line."""
    return " ".join(shlex.quote(f) for f in flags)


@dataclass(frozen=True, slots=True)
class Trial:
    """A trial's outcome: cap -> the checks that failed without it and passed with it; the candidates no check
    needed; the checks still failing with every single candidate tried; how many variant runs it took."""

    needed: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    not_needed: tuple[str, ...] = ()
    still_failing: tuple[str, ...] = ()
    runs: int = 0
    first: Mapping[str, Any] = field(default_factory=dict)   # check -> ok of the run with the default set


def trial(candidates: Iterable[str], run_checks: Callable[[frozenset[str]], Mapping[str, bool]]) -> Trial:
    """Find the capabilities the checks need: run them with the default set; while some fail, add each candidate
    alone to what was kept and keep it when it turns a failing check into a passing one.

    run_checks(cap_add) -> check name -> ok (a variant started with CAP_ADD, its checks run, removed). One
    capability at a time: checks that need two together stay in still_failing (named, never guessed).
    """
    first = dict(run_checks(frozenset()))
    runs = 1
    failing = {c for c, ok in first.items() if not ok}
    kept: set[str] = set()
    needed: dict[str, tuple[str, ...]] = {}
    not_needed = []
    for cap in candidates:
        if not failing:
            not_needed.append(cap)
            continue
        got = run_checks(frozenset(kept | {cap}))
        runs += 1
        fixed = sorted(c for c in failing if got.get(c))
        if fixed:
            kept.add(cap)
            needed[cap] = tuple(fixed)
            failing -= set(fixed)
        else:
            not_needed.append(cap)
    return Trial(needed, tuple(not_needed), tuple(sorted(failing)), runs, first)
