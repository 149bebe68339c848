"""Points listener: every write to storage. A cycle's events, remediation records, engine events and box-set
changes become InfluxDB points (agent.storage.points), handed to storage as they arrive."""
from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from agent.audit.model import AuditCompleted, PrivilegesChanged
from agent.core.events import (
    AddressChanged,
    AddressConflictChanged,
    BoxHeld,
    BoxKind,
    BoxObserved,
    BoxReleased,
    BoxSetChanged,
    ClockStepped,
    CycleEnded,
    EngineDownChanged,
    FreezeClosed,
    FreezeLayerChanged,
    FreezeOpened,
    MacChanged,
    MaintenanceChanged,
    NameStateChanged,
    SegmentFreezeChanged,
    WitnessObserved,
)
from agent.listeners import CycleEvent, CycleListener
from agent.storage import points as P
from agent.storage.store import StorageCounters
from remediations.model import ActionRecord, ContainerEventRecord

log = logging.getLogger(__name__)


class PointSink(Protocol):
    """What the points listener needs of agent.storage.store.Storage."""

    def write(self, points: Sequence[P.Point]) -> None: ...

    def counters(self) -> StorageCounters: ...


def record_point(rec: ActionRecord, site: str | None) -> P.Point:
    """The `remediation` point (agent.storage.points) of a remediations.ActionRecord."""
    return P.remediation_point(rec.box, rec.kind, site, rec.action, rec.trigger, rec.ok, rec.recovered, rec.dry_run,
                               rec.duration_s, rec.detail, rec.time_s, outcome=rec.outcome, reason=rec.reason,
                               who=rec.who, why=rec.why, forced=rec.forced)


class PointsListener(CycleListener):
    """probe, warning, box, freeze, mac_change, segment_freeze, maintenance and agent points; audit points; one storage write per
    cycle (+ the agent point); a remediation point per record and a container_event point per engine event or
    discovered/forgotten container, written as each arrives (a stopped probe loop does not stop them).

    kinds: box name -> kind (container|vm); evidence_path(box, start_s): the evidence bundle of a
    freeze (agent.forensics.evidence.bundle_dir), or None when forensics is off.
    """

    name = "points"

    def __init__(self, storage: PointSink, site: str | None, kinds: Mapping[str, str], *,
                 evidence_path: Callable[[str, float], str] | None = None,
                 host: str | None = None) -> None:
        self.storage = storage
        self.site = site
        self.kinds = dict(kinds)
        self.evidence_path = evidence_path
        self.host = host or socket.gethostname()
        self._fresh: set[str] = set()
        self._held: dict[str, BoxHeld] = {}   # box -> its hold (BoxHeld until BoxReleased): on its box points

    def subscriptions(self) -> Mapping[type, Callable[[Any], None]]:
        """The cycle's events, remediation records, engine events, box-set changes, wall-clock steps."""
        return {**super().subscriptions(), ActionRecord: self.on_record, ContainerEventRecord: self.on_container_event,
                BoxSetChanged: self.on_box_set, ClockStepped: self.on_clock_step,
                AuditCompleted: self.on_audit, PrivilegesChanged: self.on_privileges_changed,
                NameStateChanged: self.on_name, AddressChanged: self.on_name}

    def on_audit(self, msg: AuditCompleted) -> None:
        """A box's isolation audit: an `audit` point per finding and its `audit_box` point, now."""
        a = msg.audit
        kind, cls = self.kinds.get(a.box, BoxKind.CONTAINER), a.audit_class.value
        self.storage.write([*(P.audit_point(a.box, kind, self.site, f.id, f.severity.value, cls, f.detail, f.evidence,
                                            f.fix, f.bench, a.time_s) for f in a.findings),
                            P.audit_box_point(a.box, kind, self.site, cls, a.counts(), a.privileges, a.proc,
                                              msg.trigger, a.error, a.time_s)])

    def on_privileges_changed(self, ev: PrivilegesChanged) -> None:
        """A box's privileges changed between two audits: its `audit_change` point, now."""
        self.storage.write([P.audit_change_point(ev.box, self.kinds.get(ev.box, BoxKind.CONTAINER), self.site,
                                                 ev.added, ev.removed, ev.old_class, ev.new_class, ev.text,
                                                 ev.time_s)])

    def on_name(self, ev: NameStateChanged | AddressChanged) -> None:
        """A box's name changed state or address (agent.resolve): its `name` point, now."""
        kind = ev.kind or self.kinds.get(ev.box, BoxKind.VM)
        if isinstance(ev, NameStateChanged):
            point = P.name_point(ev.box, kind, self.site, ev.hostname, "state", ev.time_s, state=ev.state,
                                 detail=ev.detail, ipv4=ev.ipv4, ipv6=ev.ipv6)
        else:
            point = P.name_point(ev.box, kind, self.site, ev.hostname, "address", ev.time_s, family=ev.family,
                                 old=ev.old, new=ev.new)
        self.storage.write([point])

    def on_clock_step(self, ev: ClockStepped) -> None:
        """A wall-clock step the probe loop saw: an `agent` point with tag event=clock_step, at the new wall time."""
        self.storage.write([P.clock_step_point(self.site, ev.time_s, ev.step_s, host=self.host)])

    def on_record(self, rec: ActionRecord) -> None:
        """One remediation decision: its `remediation` point, now."""
        self.storage.write([record_point(rec, self.site)])

    def on_container_event(self, rec: ContainerEventRecord) -> None:
        """One engine event (or resync) of a box's container: its `container_event` point, now."""
        self.storage.write([P.container_event_point(rec.box, self.kinds.get(rec.box, BoxKind.CONTAINER), self.site,
                                                    rec.event, rec.time_s, rec.detail, rec.exit_code,
                                                    rec.container_state,
                                                    rec.operator if rec.container_state is not None else None)])

    def on_box_set(self, ev: BoxSetChanged) -> None:
        """Discovery changed the box set: `container_event` points for the containers that left and joined."""
        self.kinds = ev.kinds
        self.storage.write([P.container_event_point(f.box.name, BoxKind.CONTAINER, self.site, event, ev.time_s,
                                                    f"container {f.box.container} {what} "
                                                    f"({' '.join(f.box.addresses())} on {f.box.network})")
                            for fs, event, what in ((ev.removed, "forgotten", "left the box set"),
                                                    (ev.added, "discovered", "joined the box set"))
                            for f in fs])

    def _evidence(self, box: str, start_s: float) -> str | None:
        return self.evidence_path(box, start_s) if self.evidence_path is not None else None

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """Build the cycle's points, write them, then the agent point (its cycle_s includes that write)."""
        points: list[P.Point] = []
        end: CycleEnded | None = None
        # A freeze opened or deepened this cycle gets its point from that event, not the rewrite below.
        self._fresh = {ev.box for ev in events if isinstance(ev, (FreezeOpened, FreezeLayerChanged))}
        for ev in events:   # holds are decided after the boxes are observed: the cycle's box point carries them
            if isinstance(ev, BoxHeld):
                self._held[ev.box] = ev
            elif isinstance(ev, BoxReleased) and getattr(self._held.get(ev.box), "kind", None) == ev.kind:
                del self._held[ev.box]
        for ev in events:
            if isinstance(ev, CycleEnded):
                end = ev
            elif isinstance(ev, SegmentFreezeChanged):
                points.append(P.segment_freeze_point(ev.segment, ev.site, ev.start_s, ev.boxes, ev.layer, ev.open,
                                                     ev.duration_s, ev.reason))
            elif isinstance(ev, WitnessObserved):
                points.extend(P.witness_point(self.site, r.probe, r.target, r.ok, r.rtt_ms, r.error, r.mac, r.time_s)
                              for r in ev.results)
            elif isinstance(ev, EngineDownChanged):
                points.append(P.engine_down_point(self.site, ev.since_s, ev.open, ev.time_s - ev.since_s, ev.reason))
            else:
                points.extend(self._box_points(ev))
        self.storage.write(points)
        if end is not None and not end.confirm:  # the agent point is one per cycle
            cycle_s = time.monotonic() - end.started_monotonic_s
            c = self.storage.counters()
            self.storage.write([P.agent_point(self.site, end.time_s, cycle_s=cycle_s, misfires=end.misfires,
                                              spool_points=c.spool_points, write_errors=c.write_errors,
                                              dropped=c.dropped, rejected=c.rejected, host=self.host,
                                              boxes=end.boxes, queued=c.queued, spool_errors=c.spool_errors,
                                              retention_dropped=getattr(c, "retention_dropped", 0))])

    def _box_points(self, ev: object) -> list[P.Point]:
        box: str = getattr(ev, "box", "")   # every event with points names its box
        kind, site = self.kinds.get(box, BoxKind.CONTAINER), self.site
        if isinstance(ev, BoxObserved):
            out = []
            if not ev.confirm:  # one probe and one box point per cycle: mean(up) is availability
                out += [P.probe_point(box, kind, site, r.probe, r.target, r.port, r.ok, r.rtt_ms, r.error, r.mac,
                                      r.time_s, layer=r.layer, status_code=r.status_code,
                                      cert_days_left=r.cert_days_left, maintenance=ev.maintenance is not None)
                        for r in ev.results]
                out += [P.warning_point(box, kind, site, r.probe, _where(r), r.warning, r.time_s,
                                        days_left=r.cert_days_left, percent=getattr(r, "percent", None))
                        for r in ev.results if r.warning]
                scored = ev.percent_state_change is not None
                out.append(P.box_point(box, kind, site, ev.up, ev.state, ev.layer, ev.time_s,
                                       getattr(ev.container, "state", None), healthy=ev.healthy,
                                       degraded=ev.degraded if scored else None,
                                       percent_state_change=ev.percent_state_change,
                                       failed_share=ev.failed_share, held=self._held.get(box),
                                       maintenance=ev.maintenance is not None))
            out.extend(P.box_down_rewrite(box, kind, site, t) for t in ev.rewrite_down_times)
            if ev.freeze_start_s is not None and box not in self._fresh:
                # An open freeze's point is rewritten every cycle, so its duration_s is "so far", not "at
                # detection".
                out.append(P.freeze_point(box, kind, site, ev.freeze_start_s, True, ev.state_layer,
                                          ev.time_s - ev.freeze_start_s, self._evidence(box, ev.freeze_start_s),
                                          detected_layer=ev.freeze_detected_layer))
            return out
        if isinstance(ev, MaintenanceChanged):
            return [P.maintenance_point(box, kind, site, "start" if ev.active else "end", "agent", ev.reason, ev.who,
                                        ev.until_s, ev.source, ev.time_s)]
        if isinstance(ev, MacChanged):
            return [P.mac_change_point(box, kind, site, ev.address, ev.old, ev.new, ev.time_s, ev.ours)]
        if isinstance(ev, AddressConflictChanged):
            return [P.address_conflict_point(box, kind, site, ev.address, ev.macs, ev.open, ev.time_s)]
        if isinstance(ev, FreezeOpened):
            point = P.freeze_point(box, kind, site, ev.start_s, True, ev.layer, ev.time_s - ev.start_s,
                                   self._evidence(box, ev.start_s), opened_by=ev.opened_by, detected_layer=ev.layer)
            if ev.opened_by != "alert":
                return [point]
            # Opened between cycles by an alert: no BoxObserved rewrites its suspect cycles, this does.
            return [point, *(P.box_down_rewrite(box, kind, site, t) for t in ev.suspect_cycle_times)]
        if isinstance(ev, FreezeLayerChanged):
            return [P.freeze_point(box, kind, site, ev.start_s, True, ev.new_layer, ev.time_s - ev.start_s,
                                   self._evidence(box, ev.start_s), detected_layer=ev.detected_layer)]
        if isinstance(ev, FreezeClosed):
            return [P.freeze_point(box, kind, site, ev.start_s, False, ev.layer, ev.duration_s,
                                   self._evidence(box, ev.start_s), detected_layer=ev.detected_layer)]
        return []


class _Located(Protocol):
    """What _where reads of a result (probes.ProbeResult and agent.checks.CheckResult fit)."""

    @property
    def target(self) -> str: ...
    @property
    def port(self) -> int | None: ...


def _where(result: _Located) -> str:
    """A result's target as one text: address:port (IPv6 bracketed), else the address or path."""
    target, port = result.target, result.port
    if port is None:
        return target
    return f"[{target}]:{port}" if ":" in target else f"{target}:{port}"
