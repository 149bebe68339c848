"""Metrics listener: the cycle's events as Prometheus metrics (prometheus_client), served on `[metrics] listen`.

Every metric lives in one registry built here (MetricsListener.registry), never the global
default one. Labels are bounded by the config: box, kind, the site label, probe kind, layer, state,
segment, remediation action/trigger/result, a certificate's probe and port or path; no address, error
text or time is a label.

The site label (issue 31): its name is `[metrics] site_label` (default `vobox_site`, a name no scrape
config gives its targets, so it never becomes `exported_site`); "" leaves it out, for sites that put
the site on their targets in the scrape config (Prometheus's own advice: "Target labels, not static
scraped labels", https://prometheus.io/docs/instrumenting/writing_exporters/#target-labels-not-static-scraped-labels).
"""
from __future__ import annotations

import base64
import contextlib
import gzip
import hmac
import logging
import math
import platform
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from agent.audit.model import AUDIT_CLASSES, AuditClass, AuditCompleted, PrivilegesChanged
from agent.core.config.model import DEFAULT_SITE_LABEL
from agent.core.events import (
    LAYERS,
    STATES,
    AddressChanged,
    AddressConflictChanged,
    BoxHeld,
    BoxKind,
    BoxObserved,
    BoxReleased,
    BoxSetChanged,
    ClockStepped,
    CycleEnded,
    FreezeClosed,
    FreezeOpened,
    Layer,
    MacChanged,
    NameStateChanged,
    SegmentFreezeChanged,
    State,
)
from agent.listeners import CycleEvent, CycleListener
from agent.secretfile import read_secret
from agent.tls import TLSSettings
from remediations.httpserver import HTTPServer, Limits, Request, Response
from remediations.model import ActionRecord, RecordOutcome, RemediationStatus

log = logging.getLogger(__name__)

BOX_LABELS = ("box", "kind")   # and the site label ([metrics] site_label), when it is on
# The check whose results may be a grid proxy (agent.checks.x509: CheckResult.proxy).
PROXY_PROBE = "check:x509"
# Freezes last from one cycle (seconds) to hours (a box nobody fixes).
FREEZE_BUCKETS_S = (5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)
CYCLE_BUCKETS_S = (0.1, 0.25, 0.5, 1, 2, 5, 10, 30)
# done actions by result; other decisions by their outcome (remediations.model.OUTCOMES)
REMEDIATION_RESULTS = ("recovered", "not_recovered", "failed", "refused", "held", "deferred", "dry_run", "reset")


class MetricsListener(CycleListener):
    """Every metric: keeps the vobox_* metrics current from each cycle's events, remediation records (as each
    is published) and box-set changes.

    kinds: box name -> kind; counters(): agent.storage.store.StorageCounters now (or None when
    there is no storage); segments: box name -> segment (their series exist from the start);
    interval_s: [agent] interval (the staleness alert compares against it).
    """

    name = "metrics"

    def __init__(self, kinds: Mapping[str, str], site: str | None, *,
                 counters: Callable[[], Any] | None = None,
                 segments: Mapping[str, str] | None = None, interval_s: float | None = None,
                 site_label: str = DEFAULT_SITE_LABEL) -> None:
        self.kinds = dict(kinds)
        self.site = site or ""
        self.site_label = site_label
        # the site label's name and value on every series, or nothing ([metrics] site_label = "")
        self._site_names: tuple[str, ...] = (site_label,) if site_label else ()
        self._site_values: tuple[str, ...] = (self.site,) if site_label else ()
        box_labels = (*BOX_LABELS, *self._site_names)   # every box metric's labels
        site_labels = self._site_names                   # every agent-wide metric's
        self.counters = counters
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.up = Gauge("vobox_box_up", "1 when the box answered every probe this cycle (freeze-corrected), else 0; "
                        "absent while not observed (stopped on purpose, in maintenance)",
                        box_labels, registry=r)
        self.state = Gauge("vobox_box_state", "1 for the box's current freeze state, 0 for the others",
                           (*box_labels, "state"), registry=r)
        self.layer = Gauge("vobox_box_layer", "1 for the layer the box fails at (none when healthy), 0 for the others",
                           (*box_labels, "layer"), registry=r)
        self.degraded = Gauge("vobox_box_degraded", "1 while the box is degraded: flapping, or more failed cycles in "
                              "the window than [flapping] max_failed_share (never remediated for that alone)",
                              box_labels, registry=r)
        self.percent_state_change = Gauge("vobox_box_percent_state_change",
                                          "DEPRECATED, removed in the next release: use "
                                          "vobox_box_state_change_ratio (the same figure / 100). Nagios/Icinga "
                                          "percent state change of the box's verdicts over the [flapping] window "
                                          "(0-100, newer changes weigh more)", box_labels, registry=r)
        self.state_change_ratio = Gauge("vobox_box_state_change_ratio",
                                        "Nagios/Icinga percent state change of the box's verdicts over the "
                                        "[flapping] window as a ratio (0-1, newer changes weigh more; InfluxDB's "
                                        "percent_state_change / 100)", box_labels, registry=r)
        self.failed_ratio = Gauge("vobox_box_failed_cycles_ratio", "share of failed cycles in the [flapping] window "
                                  "(0-1)", box_labels, registry=r)
        self.box_cycles = Counter("vobox_box_cycles_total", "cycles that judged the box (stopped and confirmation "
                                  "passes left out): the denominator of availability", box_labels, registry=r)
        self.down_cycles = Counter("vobox_box_down_cycles_total", "cycles counted down, freeze-corrected (up=0 in "
                                   "InfluxDB: a freeze's cycles from its first failing one)", box_labels, registry=r)
        self.failed_cycles = Counter("vobox_box_failed_cycles_total", "cycles in which the box failed, every one "
                                     "(lone failures too; `box`.healthy=0 in InfluxDB)", box_labels, registry=r)
        self.halted = Gauge("vobox_box_remediation_halted", "1 while automatic remediation of the box is halted: a "
                            "cap ([remediation] max_per_box_per_hour, max_per_hour) was reached (status.json's "
                            "remediation.halted), until the box is up for reset_after", box_labels, registry=r)
        self.cert_expiry = Gauge("vobox_certificate_expiry_timestamp_seconds",
                                 "notAfter (epoch s) of the certificate a box serves or holds: probe tls/http "
                                 "(target: the port; the earliest over the box's addresses) or check:x509 "
                                 "(target: the path; proxies are in vobox_proxy_expiry_timestamp_seconds); "
                                 "seconds left: this - time()", (*box_labels, "probe", "target"), registry=r)
        self.proxy_expiry = Gauge("vobox_proxy_expiry_timestamp_seconds",
                                  "notAfter (epoch s) of a grid proxy an x509 check reads in the box (RFC 3820 or "
                                  "legacy Globus proxy, the file's first certificate)", (*box_labels, "path"),
                                  registry=r)
        self.agent_cert_expiry = Gauge("vobox_agent_certificate_expiry_timestamp_seconds",
                                       "notAfter (epoch s) of the agent's own server certificate (server: webhook, "
                                       "metrics), read at start and on SIGHUP", ("server", *site_labels), registry=r)
        self.build_info = Gauge("vobox_build_info", "always 1: the agent's version and Python",
                                ("version", "python", *site_labels), registry=r)
        self.held = Gauge("vobox_box_remediation_held", "1 while automatic remediation of the box is held "
                          "(segment freeze or settling)", box_labels, registry=r)
        self.freeze_start = Gauge("vobox_box_freeze_start_timestamp_seconds",
                                  "start of the open freeze (epoch seconds); 0 when none is open", box_labels,
                                  registry=r)
        self.rtt = Gauge("vobox_probe_rtt_seconds", "round-trip time of the box's last answer per probe kind "
                         "(NaN when no probe of that kind answered this cycle)", (*box_labels, "probe"), registry=r)
        self.probe_success = Gauge("vobox_probe_success", "1 when every probe of that kind answered this cycle",
                                   (*box_labels, "probe"), registry=r)
        self.freezes = Counter("vobox_freezes_total", "freezes opened, by the layer found at detection",
                               (*box_labels, "layer"), registry=r)
        self.freeze_duration = Histogram("vobox_freeze_duration_seconds", "duration of closed freezes",
                                         box_labels, buckets=FREEZE_BUCKETS_S, registry=r)
        # `report --prometheus` counts freezes by the layer InfluxDB's `freeze`.layer holds (the deepest), exactly:
        # vobox_freezes_total has the layer at detection, which a freeze can leave for a deeper one.
        self.freezes_closed = Counter("vobox_freezes_closed_total", "freezes closed, by the deepest layer they "
                                      "reached", (*box_labels, "layer"), registry=r)
        self.maintenance_cycles = Counter("vobox_box_maintenance_cycles_total", "cycles the box spent in a "
                                          "maintenance window (not judged; `box` points with maintenance=true)",
                                          box_labels, registry=r)
        self.mac_changes = Counter("vobox_mac_changes_total", "ARP/NDP answers from a new MAC", box_labels,
                                   registry=r)
        self.address_conflict = Gauge("vobox_address_conflict", "1 while another host answers ARP/NDP for one of "
                                      "the box's addresses too (several MACs in one sweep), else 0", box_labels,
                                      registry=r)
        self._conflicts: dict[str, set[str]] = {}
        # Boxes by name (agent.resolve): the name next to the addresses probed, and its resolver state.
        self.name_info = Gauge("vobox_box_name_info", "1 for a box configured by hostname: the name, its resolver "
                               "state (resolved, multiple, nxdomain, servfail, timeout, ...) and the addresses the "
                               "box is probed at (empty: not probed)",
                               (*box_labels, "hostname", "state", "ipv4", "ipv6"), registry=r)
        self.address_changes = Counter("vobox_box_address_changes_total", "new addresses a box's hostname resolved "
                                       "to (the probes follow from the next cycle)", box_labels, registry=r)
        self._name_series: dict[str, tuple[str, ...]] = {}
        self.remediations = Counter("vobox_remediations_total", "remediation decisions by result: recovered, "
                                    "not_recovered, unverified, failed (actions done), refused, held, deferred, "
                                    "dry_run, reset",
                                    (*box_labels, "action", "trigger", "result"), registry=r)
        self.segment_frozen = Gauge("vobox_segment_frozen", "1 while a segment freeze is open",
                                    ("segment", *site_labels), registry=r)
        self.segment_boxes = Gauge("vobox_segment_frozen_boxes", "boxes in the open segment freeze (0 when none)",
                                   ("segment", *site_labels), registry=r)
        self.segment_freezes = Counter("vobox_segment_freezes_total", "segment freezes opened",
                                       ("segment", *site_labels), registry=r)
        self.cycles = Counter("vobox_agent_cycles_total", "probe cycles run (confirmation passes excluded)",
                              site_labels, registry=r)
        self.cycle_errors = Counter("vobox_agent_cycle_errors_total", "cycles that judged no box (the sweep failed)",
                                    site_labels, registry=r)
        self.cycle_duration = Histogram("vobox_agent_cycle_duration_seconds", "wall time of a probe cycle",
                                        site_labels, buckets=CYCLE_BUCKETS_S, registry=r)
        self.last_cycle = Gauge("vobox_agent_last_cycle_timestamp_seconds", "end of the last probe cycle (epoch s)",
                                site_labels, registry=r)
        self.misfires = Counter("vobox_agent_misfires_total", "cycles the scheduler could not start in time",
                                site_labels, registry=r)
        self.boxes = Gauge("vobox_agent_boxes", "boxes configured", site_labels, registry=r)
        self.interval = Gauge("vobox_agent_cycle_interval_seconds", "configured seconds between probe cycles",
                              site_labels, registry=r)
        self.spool_points = Gauge("vobox_agent_spool_points", "points waiting in the on-disk spool", site_labels,
                                  registry=r)
        self.queued_points = Gauge("vobox_agent_queued_points", "points handed to storage, not yet delivered",
                                   site_labels, registry=r)
        self.write_errors = Counter("vobox_agent_write_errors_total", "failed InfluxDB writes", site_labels, registry=r)
        self.dropped_points = Counter("vobox_agent_dropped_points_total", "points lost (spool or queue full)",
                                      site_labels, registry=r)
        self.rejected_points = Counter("vobox_agent_rejected_points_total", "points InfluxDB refused", site_labels,
                                       registry=r)
        self.retention_dropped_points = Counter(
            "vobox_agent_retention_dropped_points_total", "points InfluxDB dropped as older than its retention "
            "policy (partial writes), or the spool dropped before sending as older than the known retention",
            site_labels, registry=r)
        self.clock_steps = Counter("vobox_agent_clock_steps_total", "wall-clock steps the probe loop saw (wall - "
                                   "monotonic moved by more than 1 s); the loop keeps its monotonic rhythm",
                                   site_labels, registry=r)
        # the isolation audit (agent.audit): series from a box's first audit on (a VM has none)
        self.audit_findings = Gauge("vobox_audit_findings", "findings of the box's last isolation audit, by severity",
                                    (*box_labels, "severity"), registry=r)
        self.audit_privileged = Gauge("vobox_audit_privileged", "1 when the box's last audit found it privileged "
                                      "(--privileged, or every capability), else 0", box_labels, registry=r)
        self.audit_class = Gauge("vobox_audit_class", "1 for the class of the box's last audit (privileged, elevated, "
                                 "default, unknown: not audited), 0 for the others", (*box_labels, "class"),
                                 registry=r)
        self.audit_changes = Counter("vobox_audit_privilege_changes_total", "audits whose privileges differed from "
                                     "the box's previous audit", box_labels, registry=r)
        self.build_info.labels(_version(), platform.python_version(), *self._site_values).set(1)
        self._open_segments: set[str] = set()
        self._seen: dict[str, int] = {}   # cumulative source counters already added to our Counters
        self._s(self.boxes).set(len(self.kinds))
        if interval_s is not None:
            self._s(self.interval).set(interval_s)
        for box in self.kinds:   # every box's series exist from the start (absent() alerts stay meaningful)
            self._start_series(box)
        for segment in sorted(set((segments or {}).values())):
            self._seg(self.segment_frozen, segment, self.site).set(0)
            self._seg(self.segment_boxes, segment, self.site).set(0)
        for metric in (self.cycles, self.cycle_errors, self.misfires, self.write_errors, self.dropped_points,
                       self.rejected_points, self.retention_dropped_points, self.clock_steps):
            self._s(metric)

    def _start_series(self, box: str) -> None:
        self._set_state(box, State.UP, Layer.NONE)
        self.up.labels(*self._box(box)).set(1)
        self.held.labels(*self._box(box)).set(0)
        self.degraded.labels(*self._box(box)).set(0)
        self.percent_state_change.labels(*self._box(box)).set(0)
        self.state_change_ratio.labels(*self._box(box)).set(0)
        self.halted.labels(*self._box(box)).set(0)
        self.failed_ratio.labels(*self._box(box)).set(0)
        for counter in (self.box_cycles, self.down_cycles, self.failed_cycles, self.maintenance_cycles):
            counter.labels(*self._box(box))
        self.freeze_start.labels(*self._box(box)).set(0)
        self.mac_changes.labels(*self._box(box))
        self.address_conflict.labels(*self._box(box)).set(0)
        self.freeze_duration.labels(*self._box(box))

    def subscriptions(self) -> Mapping[type, Callable[[Any], None]]:
        """The cycle's events, remediation records, box-set changes, wall-clock steps."""
        return {**super().subscriptions(), ActionRecord: self.on_record, RemediationStatus: self.on_status,
                BoxSetChanged: lambda ev: self.set_kinds(ev.kinds), ClockStepped: self.on_clock_step,
                AuditCompleted: self.on_audit, PrivilegesChanged: self.on_privileges_changed,
                NameStateChanged: self.on_name, AddressChanged: self.on_address}

    def on_audit(self, msg: AuditCompleted) -> None:
        """A box's audit: its findings by severity, privileged 0/1 and class (an audit that failed: unknown)."""
        a, labels = msg.audit, self._box(msg.audit.box)
        cls = AuditClass.UNKNOWN if a.error is not None else a.audit_class
        if a.error is None:   # a failed audit keeps the last findings (the class says unknown)
            for severity, n in a.counts().items():
                self.audit_findings.labels(*labels, severity).set(n)
            self.audit_privileged.labels(*labels).set(int(cls is AuditClass.PRIVILEGED))
        for c in AUDIT_CLASSES:
            self.audit_class.labels(*labels, c).set(int(c == cls))
        self.audit_changes.labels(*labels)

    def on_privileges_changed(self, ev: PrivilegesChanged) -> None:
        """Privileges changed between two audits of a box: counted."""
        self.audit_changes.labels(*self._box(ev.box)).inc()

    def on_name(self, ev: NameStateChanged) -> None:
        """A box's name changed state: its one vobox_box_name_info series is replaced."""
        old = self._name_series.pop(ev.box, None)
        if old is not None:
            self.name_info.remove(*old)
        labels = (ev.box, ev.kind or self.kinds.get(ev.box, BoxKind.CONTAINER), *self._site_values, ev.hostname,
                  ev.state, ev.ipv4 or "", ev.ipv6 or "")
        self.name_info.labels(*labels).set(1)
        self._name_series[ev.box] = labels

    def on_address(self, ev: AddressChanged) -> None:
        """A box's name resolved to a new address."""
        self.address_changes.labels(ev.box, ev.kind or self.kinds.get(ev.box, BoxKind.CONTAINER),
                                    *self._site_values).inc()

    def set_kinds(self, kinds: Mapping[str, str]) -> None:
        """Follow a new box set (discovery): new boxes' series start, a removed box's series are removed.

        Prometheus marks a series no longer exposed as stale, so a forgotten container leaves
        no last value behind (https://prometheus.io/docs/prometheus/latest/querying/basics/#staleness).
        """
        removed = {b for b in self.kinds if b not in kinds}
        added = [b for b in kinds if b not in self.kinds]
        for metric in [m for m in vars(self).values() if isinstance(m, (Gauge, Counter, Histogram))]:
            series = {tuple(v for k, v in sample.labels.items() if k != "le")   # label values, in label order
                      for family in metric.collect() for sample in family.samples
                      if sample.labels.get("box") in removed}
            for values in series:
                metric.remove(*values)
        self.kinds = dict(kinds)
        for box in added:
            self._start_series(box)
        self._s(self.boxes).set(len(self.kinds))

    def _box(self, box: str) -> tuple[str, ...]:
        return (box, self.kinds.get(box, BoxKind.CONTAINER), *self._site_values)

    def _s(self, metric: Any) -> Any:
        """The agent-wide series of METRIC: with the site label, or the metric itself when it has none."""
        return metric.labels(*self._site_values) if self._site_names else metric

    def _seg(self, metric: Any, segment: str, site: str) -> Any:
        return metric.labels(segment, *([site] if self._site_names else []))

    def _set_state(self, box: str, state: str, layer: str) -> None:
        labels = self._box(box)
        for s in STATES:
            self.state.labels(*labels, s).set(1 if s == state else 0)
        for la in LAYERS:
            self.layer.labels(*labels, la).set(1 if la == layer else 0)

    def _add_delta(self, counter: Counter, key: str, total: int) -> None:
        """Add what a cumulative count grew by since last seen (a smaller count means its source restarted)."""
        last = self._seen.get(key, 0)
        self._s(counter).inc(total - last if total >= last else total)
        self._seen[key] = total

    def on_events(self, events: Sequence[CycleEvent]) -> None:
        """Update the metrics from one cycle's events."""
        for ev in events:
            if isinstance(ev, BoxObserved):
                self._observed(ev)
            elif isinstance(ev, FreezeOpened):
                self.freezes.labels(*self._box(ev.box), ev.layer).inc()
                # opened by an alert: its suspect cycles become down here (the points rewrite them, see
                # agent.listeners.points); opened by probes, the BoxObserved's rewrite_down_times do it
                if ev.opened_by == "alert":
                    self.down_cycles.labels(*self._box(ev.box)).inc(len(ev.suspect_cycle_times))
            elif isinstance(ev, FreezeClosed):
                self.freeze_duration.labels(*self._box(ev.box)).observe(max(0.0, ev.duration_s))
                self.freezes_closed.labels(*self._box(ev.box), ev.layer).inc()
            elif isinstance(ev, MacChanged):
                self.mac_changes.labels(*self._box(ev.box)).inc()
            elif isinstance(ev, AddressConflictChanged):
                open_ = self._conflicts.setdefault(ev.box, set())
                (open_.add if ev.open else open_.discard)(ev.address)
                self.address_conflict.labels(*self._box(ev.box)).set(1 if open_ else 0)
            elif isinstance(ev, BoxHeld):
                self.held.labels(*self._box(ev.box)).set(1)
            elif isinstance(ev, BoxReleased):
                self.held.labels(*self._box(ev.box)).set(0)
            elif isinstance(ev, SegmentFreezeChanged):
                site = ev.site or self.site
                if ev.open and ev.segment not in self._open_segments:
                    self._seg(self.segment_freezes, ev.segment, site).inc()
                (self._open_segments.add if ev.open else self._open_segments.discard)(ev.segment)
                self._seg(self.segment_frozen, ev.segment, site).set(1 if ev.open else 0)
                self._seg(self.segment_boxes, ev.segment, site).set(len(ev.boxes) if ev.open else 0)
            elif isinstance(ev, CycleEnded):
                self._ended(ev)

    def _observed(self, ev: BoxObserved) -> None:
        labels = self._box(ev.box)
        if not ev.confirm and ev.up is None:
            # Not observed (stopped on purpose, in maintenance): no sample, as the `box` point has no up, so
            # avg_over_time(vobox_box_up) leaves the time out like mean(up) does.
            with contextlib.suppress(KeyError):
                self.up.remove(*labels)
            if ev.maintenance is not None:
                self.maintenance_cycles.labels(*labels).inc()
        elif not ev.confirm and ev.up is not None:
            self.up.labels(*labels).set(ev.up)
            self.box_cycles.labels(*labels).inc()
            self.down_cycles.labels(*labels).inc(1 - ev.up)
            self.failed_cycles.labels(*labels).inc(0 if ev.healthy else 1)
        if ev.rewrite_down_times:   # earlier cycles written up=1 now belong to a freeze (as the points rewrite)
            self.down_cycles.labels(*labels).inc(len(ev.rewrite_down_times))
        self.degraded.labels(*labels).set(1 if ev.degraded else 0)
        if ev.percent_state_change is not None:
            self.percent_state_change.labels(*labels).set(ev.percent_state_change)
            self.state_change_ratio.labels(*labels).set(ev.percent_state_change / 100.0)
        self._certificates(labels, ev.results)
        if ev.failed_share is not None:
            self.failed_ratio.labels(*labels).set(ev.failed_share)
        self._set_state(ev.box, ev.state, ev.state_layer if ev.state != State.UP else ev.layer)
        self.freeze_start.labels(*labels).set(ev.freeze_start_s or 0)
        by_kind: dict[str, list[Any]] = {}
        for r in ev.results:
            by_kind.setdefault(r.probe, []).append(r)
        for kind, results in by_kind.items():
            rtts = [r.rtt_ms for r in results if r.ok and r.rtt_ms is not None]
            self.rtt.labels(*labels, kind).set(rtts[0] / 1000.0 if rtts else math.nan)
            self.probe_success.labels(*labels, kind).set(1 if all(r.ok for r in results) else 0)

    def _certificates(self, labels: tuple[str, ...], results: Sequence[Any]) -> None:
        """The expiry gauges from the results that carry a certificate's notAfter (a failed probe keeps the last)."""
        earliest: dict[tuple[str, str], float] = {}
        proxies: dict[str, float] = {}
        for r in results:
            not_after = getattr(r, "cert_not_after_s", None)
            if not_after is None:
                continue
            if r.probe == PROXY_PROBE and getattr(r, "proxy", False):
                proxies[r.target] = min(not_after, proxies.get(r.target, math.inf))
                continue
            key = (r.probe, r.target if r.port is None else str(r.port))
            earliest[key] = min(not_after, earliest.get(key, math.inf))
        for (probe, target), value in earliest.items():
            self.cert_expiry.labels(*labels, probe, target).set(value)
        for path, value in proxies.items():
            self.proxy_expiry.labels(*labels, path).set(value)

    def set_server_certificate(self, server: str, cert_file: str | None) -> None:
        """vobox_agent_certificate_expiry_timestamp_seconds{server} from CERT_FILE (None: the server has no TLS).

        An unreadable file logs an error and leaves the last value (the server keeps its loaded certificate).
        """
        from agent.tls import TLSFileError, cert_not_after_s

        series = (server, *self._site_values)
        if cert_file is None:
            with contextlib.suppress(KeyError):
                self.agent_cert_expiry.remove(*series)
            return
        try:
            self.agent_cert_expiry.labels(*series).set(cert_not_after_s(cert_file))
        except TLSFileError as exc:
            log.error("metrics: the %s certificate's expiry is unknown: %s", server, exc)

    def on_status(self, status: RemediationStatus) -> None:
        """vobox_box_remediation_halted from the remediation service's status (published after each cycle)."""
        for box, st in status.boxes.items():
            if box in self.kinds:
                self.halted.labels(*self._box(box)).set(1 if getattr(st, "capped", None) else 0)

    def _ended(self, ev: CycleEnded) -> None:
        self._add_delta(self.misfires, "misfires", ev.misfires)
        if ev.confirm:
            return
        self._s(self.cycles).inc()
        if ev.error is not None:
            self._s(self.cycle_errors).inc()
        self._s(self.cycle_duration).observe(max(0.0, time.monotonic() - ev.started_monotonic_s))
        self._s(self.last_cycle).set(time.time())
        if self.counters is not None:
            c = self.counters()
            self._s(self.spool_points).set(c.spool_points)
            self._s(self.queued_points).set(c.queued)
            self._add_delta(self.write_errors, "write_errors", c.write_errors)
            self._add_delta(self.dropped_points, "dropped", c.dropped)
            self._add_delta(self.rejected_points, "rejected", c.rejected)
            self._add_delta(self.retention_dropped_points, "retention_dropped", getattr(c, "retention_dropped", 0))

    def on_clock_step(self, ev: ClockStepped | None = None) -> None:
        """Count one wall-clock step (the bus's ClockStepped)."""
        self._s(self.clock_steps).inc()

    def on_record(self, rec: ActionRecord) -> None:
        """Count one remediation record (remediations.model.ActionRecord) in vobox_remediations_total."""
        self.on_remediation(rec.box, rec.action, rec.trigger, rec.outcome, rec.ok, rec.recovered)

    def on_remediation(self, box: str, action: str, trigger: str, outcome: str, ok: bool,
                       recovered: bool | None) -> None:
        """Count one remediation decision by result (recovered, not_recovered, unverified, failed, or its outcome)."""
        result = (outcome if outcome != RecordOutcome.DONE else "failed" if not ok else "unverified" if recovered is None
                  else "recovered" if recovered else "not_recovered")
        self.remediations.labels(*self._box(box), action, trigger, result).inc()


def _version() -> str:
    """The installed vobox-agent's version (its distribution's metadata), "unknown" when not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("vobox-agent")
    except PackageNotFoundError:
        return "unknown"


def add_runtime_collectors(registry: CollectorRegistry) -> None:
    """Add prometheus_client's process_*, python_info and python_gc_* collectors (the default registry's) to
    REGISTRY, as every Prometheus client library exports them (https://prometheus.io/docs/instrumenting/
    writing_clientlibs/#standard-and-runtime-collectors)."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


# The webhook's bounds: 8 per source and 640 in all, so 600 connections of 60 hostile sources (8 each at most:
# 480) leave room for Prometheus; the server raises RLIMIT_NOFILE for them (remediations.httpserver.raise_nofile).
METRICS_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class ScrapeAuth:
    """What a scrape must send: a bearer token, or basic auth user and password (None: no credential asked).

    The files are read by `load()` (at start and on SIGHUP) with agent.secretfile; SecretFileError names the file.
    """

    token_file: str | None = None
    username: str | None = None
    password_file: str | None = None

    def load(self) -> tuple[str, bytes] | None:
        """("Bearer", token) or ("Basic", base64 of "user:password") to compare with, or None when none is asked."""
        if self.token_file:
            return "bearer", read_secret(self.token_file).encode()
        if self.username and self.password_file:
            pair = f"{self.username}:{read_secret(self.password_file)}".encode()
            return "basic", base64.b64encode(pair)
        return None


class _Exposition:
    """GET of any path: the registry in the format the scraper accepts (as prometheus_client's own server)."""

    def __init__(self, registry: CollectorRegistry, credential: tuple[str, bytes] | None = None) -> None:
        self.registry = registry
        self.credential = credential   # (scheme lower-case, what the Authorization header must carry)

    def error(self, status: int, message: str) -> Response:
        """The transport's own refusals (400, 413, 431), as plain text."""
        return Response(status, (message + "\n").encode(), (("Content-Type", "text/plain; charset=utf-8"),),
                        close=True)

    def _authorized(self, request: Request) -> bool:
        credential = self.credential
        if credential is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == credential[0] and hmac.compare_digest(given.strip().encode(), credential[1])

    def head(self, request: Request) -> Response | None:
        """Anything but GET is refused before a body is read; a missing or wrong credential gets 401."""
        if request.method != "GET":
            return Response(405, b"only GET\n", (("Allow", "GET"), ("Content-Type", "text/plain; charset=utf-8")),
                            close=True)
        if not self._authorized(request):
            assert self.credential is not None
            # the peer, never what it sent (RFC 7235: 401 names the scheme the server takes)
            log.warning("metrics: refused scrape from %s: missing or wrong %s credentials", request.peer,
                        self.credential[0])
            challenge = "Bearer" if self.credential[0] == "bearer" else 'Basic realm="vobox-agent /metrics"'
            return Response(401, b"missing or wrong credentials\n",
                            (("WWW-Authenticate", challenge), ("Content-Type", "text/plain; charset=utf-8")),
                            close=True)
        return None

    def handle(self, request: Request, body: bytes) -> Response:
        """The exposition (text 0.0.4 or OpenMetrics by Accept, gzip by Accept-Encoding, `name[]` filter)."""
        # What prometheus_client's own server does (exposition.MetricsHandler), on our transport.
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        names = parse_qs(urlsplit(request.target).query).get("name[]")
        output = encoder(self.registry.restricted_registry(names) if names else self.registry)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(request.headers.get("accept-encoding", "")):
            output = gzip.compress(output)
            headers.append(("Content-Encoding", "gzip"))
        return Response(200, output, tuple(headers))


class MetricsServer:
    """Serves a registry on /metrics at host:port (remediations.httpserver: one event loop, bounded connections).

    tls: agent.tls.TLSSettings (server side) or None for plain HTTP; auth: ScrapeAuth (a bearer token or basic
    auth) or None. Unusable TLS files or credential files raise ValueError (TLSFileError, SecretFileError) here,
    before binding; reload() loads them again (SIGHUP), keeping the old ones when the new cannot be loaded.
    """

    def __init__(self, registry: CollectorRegistry, host: str, port: int, limits: Limits | None = None, *,
                 tls: TLSSettings | None = None, auth: ScrapeAuth | None = None,
                 on_certificate: Callable[[str | None], None] | None = None) -> None:
        self.registry = registry
        self.host = host
        self.port = port
        self.limits = limits or METRICS_LIMITS
        self.tls, self.auth, self.on_certificate = tls, auth, on_certificate
        self._context = tls.context() if tls is not None else None
        self._handler = _Exposition(registry, auth.load() if auth is not None else None)
        self._server: HTTPServer | None = None

    def start(self) -> None:
        """Bind and serve; OSError when the address is taken or not local."""
        self._server = HTTPServer(self.host, self.port, self._handler, name="metrics", limits=self.limits,
                                  tls=(lambda: self._context) if self.tls is not None else None)
        self._server.start()
        self.port = self._server.address[1]
        if self.on_certificate is not None:
            self.on_certificate(self.tls.cert_file if self.tls is not None else None)
        log.info("metrics on %s://%s:%d/metrics (%s)", "http" if self.tls is None else "https", self.host, self.port,
                 "no credentials asked" if self._handler.credential is None
                 else f"{self._handler.credential[0]} auth")

    def reload(self) -> bool:
        """SIGHUP: load the TLS files and credential files again; False (the old ones kept) when one fails."""
        ok = True
        if self.tls is not None:
            try:
                self._context = self.tls.context()
                log.info("metrics: TLS certificate %s reloaded", self.tls.cert_file)
                if self.on_certificate is not None:
                    self.on_certificate(self.tls.cert_file)
            except (ssl.SSLError, OSError, ValueError) as exc:
                log.error("metrics: TLS reload failed, still serving the previous certificate: %s", exc)
                ok = False
        if self.auth is not None:
            try:
                self._handler.credential = self.auth.load()
            except (OSError, ValueError) as exc:
                log.error("metrics: credential reload failed, the previous one still applies: %s", exc)
                ok = False
        return ok

    def stop(self) -> None:
        """Stop serving and close the socket."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
