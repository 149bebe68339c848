"""Status listener: state_dir/status.json after every cycle, for `vobox-agent status` and the live view."""
from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent import atomic, redact
from agent.core.events import (
    BoxHeld,
    BoxObserved,
    BoxReleased,
    BoxSetChanged,
    CycleEnded,
    DegradedChanged,
    Layer,
    NameStateChanged,
    State,
    StateChanged,
)
from agent.listeners import CycleEvent, CycleListener
from remediations.model import RemediationStatus

log = logging.getLogger(__name__)

STATUS_FILE = "status.json"
STATUS_VERSION = 1
BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boottime_s() -> float:
    """Seconds since boot on CLOCK_BOOTTIME: monotonic, shared by every process of the host (containers too),
    counting suspend, untouched by wall-clock steps (and by libfaketime's FAKETIME_DONT_FAKE_MONOTONIC)."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def boot_id(path: str = BOOT_ID_PATH) -> str | None:
    """This boot's id (proc(5): a new random UUID each boot), or None when unreadable; CLOCK_BOOTTIME stamps
    compare only within one boot."""
    try:
        with open(path, encoding="ascii") as fh:
            return fh.read().strip() or None
    except OSError:
        return None


def _container(cs: Any) -> dict[str, Any]:
    """status.json's `container` object of a box (agent.engines.watcher.ContainerState)."""
    return {"state": cs.state, "health": cs.health, "since_s": cs.since_s, "oom_killed": cs.oom_killed,
            "operator_stopped": cs.operator_stopped, "exit_code": cs.exit_code,
            "reason": getattr(cs, "reason", None)}


class StatusListener(CycleListener):
    """Keeps each box's last verdict, state, since and hold; writes status.json atomically at CycleEnded.

    kinds: box name -> kind; each box's remediation status comes on the bus (remediations.model.
    RemediationStatus; none while remediation is off); budget_per_hour: [remediation] max_per_box_per_hour;
    evidence_path(box, start_s): the bundle of an open freeze, or None; secrets: values redacted from the file.
    """

    name = "status"

    def __init__(self, state_dir: str, kinds: Mapping[str, str], *, site: str | None, interval_s: float,
                 budget_per_hour: int, evidence_path: Callable[[str, float], str] | None = None,
                 secrets: Sequence[str] = (), monotonic: Callable[[], float] = boottime_s,
                 boot: str | None = None, addresses: Mapping[str, Sequence[str]] | None = None) -> None:
        self.path = os.path.join(state_dir, STATUS_FILE)
        self.kinds = dict(kinds)
        # box -> the addresses it is probed at (from the config, then each box set); box -> its name's state
        self.addresses = {k: list(v) for k, v in (addresses or {}).items()}
        self._names: dict[str, NameStateChanged] = {}
        self.site = site
        self.interval_s = interval_s
        self.budget_per_hour = budget_per_hour
        self._remediation: Mapping[str, Any] = {}   # box -> remediations.engine.BoxStatus, as last published
        self.evidence_path = evidence_path
        self.secrets = tuple(secrets)
        self._last: dict[str, BoxObserved] = {}
        self._held: dict[str, BoxHeld] = {}
        self._degraded_reason: dict[str, str | None] = {}   # box -> why it is degraded (DegradedChanged)
        self._error: str | None = None   # why the last cycle judged no box
        self._since: dict[str, float] = self._restore_since()
        self._monotonic = monotonic
        self._boot_id = boot if boot is not None else boot_id()
        self._cycles = 0   # probe cycles ended (confirmation passes excluded): progress no clock step fakes

    def _restore_since(self) -> dict[str, float]:
        """Since when each box is in its state, from the previous status.json (a restart keeps it)."""
        try:
            with open(self.path, encoding="utf-8") as fh:
                boxes = json.load(fh).get("boxes") or {}
            return {name: float(b["since_s"]) for name, b in boxes.items()
                    if name in self.kinds and isinstance(b, dict) and b.get("since_s") is not None}
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("status %s unreadable (%s); since-times start afresh", self.path, exc)
            return {}

    def subscriptions(self) -> Mapping[type, Callable[[Any], None]]:
        """The cycle's events; box-set changes (the boxes status.json lists); remediation status."""
        return {**super().subscriptions(), BoxSetChanged: self.on_box_set, RemediationStatus: self.on_remediation,
                NameStateChanged: self.on_name}

    def on_name(self, ev: NameStateChanged) -> None:
        """A box's name changed state (agent.resolve): shown beside its address from the next status.json."""
        self._names[ev.box] = ev

    def on_remediation(self, status: RemediationStatus) -> None:
        """The remediation service's status of every box (published after each cycle's decisions)."""
        self._remediation = dict(status.boxes)

    def on_box_set(self, ev: BoxSetChanged) -> None:
        """Discovery or a name changed the box set: the next status.json lists the new set and addresses."""
        self.kinds = ev.kinds
        self.addresses = {b.name: list(b.addresses()) for b in ev.boxes}

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """Remember what the cycle said; write status.json at its end."""
        for ev in events:
            if isinstance(ev, BoxObserved):
                self._last[ev.box] = ev
            elif isinstance(ev, StateChanged):
                self._since[ev.box] = ev.time_s
            elif isinstance(ev, BoxHeld):
                self._held[ev.box] = ev
            elif isinstance(ev, BoxReleased):
                self._held.pop(ev.box, None)
            elif isinstance(ev, DegradedChanged):
                self._degraded_reason[ev.box] = ev.reason if ev.degraded else None
            elif isinstance(ev, CycleEnded):
                self._error = ev.error
                self._cycles += 0 if getattr(ev, "confirm", False) else 1
                try:
                    atomic.write_json(self.path, redact.data(self.status(ev.time_s), self.secrets))
                except OSError as exc:
                    log.warning("cannot write %s: %s", self.path, exc)

    def status(self, now_s: float) -> dict[str, Any]:
        """The status.json payload (see docs/operator-guide.md)."""
        rem = self._remediation
        boxes: dict[str, Any] = {}
        for name, kind in self.kinds.items():
            last = self._last.get(name)
            state = last.state if last else State.UP
            rtt: dict[str, float] = {}
            for r in (last.results if last else ()):
                if r.ok and r.rtt_ms is not None and r.probe not in rtt:
                    rtt[r.probe] = round(r.rtt_ms, 3)
            warnings = [{"check": r.probe, "target": r.target, "port": r.port, "message": r.warning,
                         "days_left": None if r.cert_days_left is None else round(r.cert_days_left, 2),
                         "percent": getattr(r, "percent", None)}
                        for r in (last.results if last else ()) if r.warning]
            rs = rem.get(name)
            start = last.freeze_start_s if last else None
            held = self._held.get(name)
            boxes[name] = {
                "kind": kind, "state": state,
                "addresses": self.addresses.get(name, []),
                "name": _name(self._names.get(name)),   # the box's hostname and its resolver state, or null
                "judged_s": last.time_s if last else None,   # the last cycle that judged this box
                "layer": (last.state_layer if state != State.UP else last.layer) if last else Layer.NONE,
                "since_s": self._since.get(name),
                "rtt_ms": rtt,
                "warnings": warnings,   # not failures: certificates/proxies expiring, disks filling
                "open_freeze": ({"start_s": start, "layer": last.state_layer if last is not None else None,
                                 "evidence": self.evidence_path(name, start) if self.evidence_path else None}
                                if start is not None else None),
                "remediation": ({"budget_left": max(0, self.budget_per_hour - rs.actions_last_hour),
                                 "halted": rs.capped is not None, "reason": rs.capped or rs.busy}
                                if rs is not None else None),
                "held": ({"kind": held.kind, "segment": held.segment, "since_s": held.time_s, "reason": held.reason}
                         if held is not None else None),
                "container": _container(last.container) if last is not None and last.container is not None else None,
                # flapping (agent.core.flapping): null when not scored (off, stopped, not judged yet)
                "degraded": ({"degraded": last.degraded, "percent_state_change": round(last.percent_state_change, 1),
                              "failed_share": round(last.failed_share or 0.0, 3), "reason": self._degraded_reason.get(name)}
                             if last is not None and last.percent_state_change is not None else None),
                "maintenance": ({"reason": last.maintenance.reason, "who": last.maintenance.who,
                                 "until_s": last.maintenance.until_s, "source": last.maintenance.source}
                                if last is not None and last.maintenance is not None else None),
            }
        # boot_id + boottime_s: freshness that no wall-clock step fakes (status --check, the HEALTHCHECK)
        return {"version": STATUS_VERSION, "updated_s": now_s, "interval_s": self.interval_s, "site": self.site,
                "boot_id": self._boot_id, "boottime_s": round(self._monotonic(), 3), "cycles": self._cycles,
                "error": self._error, "boxes": boxes,
                # boxes by name that are not probed (their name never gave a usable address) and why
                "unprobed": {n: _name(ev) for n, ev in self._names.items() if n not in self.kinds}}


def _name(ev: NameStateChanged | None) -> dict[str, Any] | None:
    """status.json's `name` of a box: hostname, resolver state (agent.core.resolve.NameState), detail, since."""
    if ev is None:
        return None
    return {"hostname": ev.hostname, "state": ev.state, "detail": ev.detail, "since_s": ev.time_s}
