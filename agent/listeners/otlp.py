"""OTLP push of the /metrics registry: every `[otlp] interval` the Prometheus registry of
agent.listeners.metrics is converted to OTLP metrics and POSTed (opentelemetry-exporter-otlp-proto-http).

One source of truth: the figures are read from the same prometheus_client registry /metrics
serves, never computed a second time. Names are the exposition names (`vobox_freezes_total`,
`vobox_freeze_duration_seconds`), so a Prometheus-compatible store behind the collector (Mimir's
OTLP ingest adds `_total` and unit suffixes only when missing) shows the names /metrics has.
Units are UCUM as OpenTelemetry wants them ("s"; counts as `{annotation}`, which Prometheus
translators drop). Counters become cumulative monotonic Sums, histograms explicit-bucket
Histograms, gauges Gauges; labels become attributes. The export runs in its own thread, off
the probe cycle: a receiver that is down costs that thread a timeout, never a cycle.
"""
from __future__ import annotations

import logging
import math
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import requests
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Gauge,
    Histogram,
    HistogramDataPoint,
    Metric,
    MetricExportResult,
    MetricsData,
    NumberDataPoint,
    ResourceMetrics,
    ScopeMetrics,
    Sum,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

log = logging.getLogger(__name__)

# Seconds-valued metrics end in `_seconds` (or `_timestamp_seconds`); the others are counts or 0/1 flags.
# A flag is not a ratio, and "1" on a gauge makes Prometheus translators append `_ratio`: annotations instead.
UNITS: dict[str, str] = {
    "vobox_box_up": "{box}",
    "vobox_box_state": "{box}",
    "vobox_box_layer": "{box}",
    "vobox_box_remediation_held": "{box}",
    "vobox_box_degraded": "{box}",
    "vobox_box_percent_state_change": "%",
    "vobox_box_state_change_ratio": "1",    # a ratio 0-1: its name already ends in _ratio
    "vobox_box_remediation_halted": "{box}",
    "vobox_build_info": "1",
    "vobox_box_failed_cycles_ratio": "1",   # a ratio 0-1: its name already ends in _ratio
    "vobox_box_cycles_total": "{cycle}",
    "vobox_box_down_cycles_total": "{cycle}",
    "vobox_box_failed_cycles_total": "{cycle}",
    "vobox_box_maintenance_cycles_total": "{cycle}",
    "vobox_probe_success": "{box}",
    "vobox_freezes_total": "{freeze}",
    "vobox_freezes_closed_total": "{freeze}",
    "vobox_mac_changes_total": "{change}",
    "vobox_address_conflict": "{box}",
    "vobox_remediations_total": "{remediation}",
    "vobox_segment_frozen": "{segment}",
    "vobox_segment_frozen_boxes": "{box}",
    "vobox_segment_freezes_total": "{freeze}",
    "vobox_agent_cycles_total": "{cycle}",
    "vobox_agent_cycle_errors_total": "{cycle}",
    "vobox_agent_misfires_total": "{cycle}",
    "vobox_agent_boxes": "{box}",
    "vobox_agent_spool_points": "{point}",
    "vobox_agent_queued_points": "{point}",
    "vobox_agent_write_errors_total": "{write}",
    "vobox_agent_dropped_points_total": "{point}",
    "vobox_agent_rejected_points_total": "{point}",
    "vobox_agent_retention_dropped_points_total": "{point}",
    "vobox_agent_clock_steps_total": "{step}",
    "vobox_audit_findings": "{finding}",
    "vobox_audit_privileged": "{box}",
    "vobox_audit_class": "{box}",
    "vobox_audit_privilege_changes_total": "{change}",
    "vobox_box_name_info": "1",
    "vobox_box_address_changes_total": "{address}",
}
# The exporter logs every failed attempt; we log the first failure and the recovery (see _Quiet).
_EXPORTER_LOGGER = "opentelemetry.exporter.otlp.proto.http.metric_exporter"


def unit_of(name: str) -> str:
    """UCUM unit of an exposition metric name: "s" for `*_seconds`, else UNITS; KeyError for an unknown name."""
    if name.endswith("_seconds"):
        return "s"
    return UNITS[name]


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


def to_metrics_data(families: Iterable[Any], resource_attrs: Mapping[str, str], now_s: float,
                    start_s: float, version: str = "") -> MetricsData:
    """OTel SDK MetricsData of prometheus_client metric families (registry.collect()) at NOW_S.

    start_s: start time of series without a `_created` sample (the pusher's start); version: the
    instrumentation scope's (vobox-agent's) version.
    """
    now = _ns(now_s)
    cumulative = AggregationTemporality.CUMULATIVE
    metrics = []
    for fam in families:
        if not fam.name.startswith("vobox_"):
            # prometheus_client's process_*/python_* collectors: OTel has its own process and runtime conventions
            # (a collector's hostmetrics receiver), so only the agent's own metrics are pushed
            continue
        if fam.type == "counter":
            name = fam.name + "_total"
            created = {_key(s.labels): s.value for s in fam.samples if s.name.endswith("_created")}
            points = [NumberDataPoint(dict(s.labels), _ns(created.get(_key(s.labels), start_s)), now, s.value)
                      for s in fam.samples if s.name == name]
            data: Any = Sum(points, cumulative, is_monotonic=True)
        elif fam.type == "gauge":
            name = fam.name
            data = Gauge([NumberDataPoint(dict(s.labels), _ns(start_s), now, s.value) for s in fam.samples])
        elif fam.type == "histogram":
            name = fam.name
            data = Histogram(_histogram_points(fam, now, start_s), cumulative)
        else:   # info, summary, stateset: the listener has none
            continue
        if not data.data_points:   # a labelled metric no box has reached yet
            continue
        metrics.append(Metric(name, fam.documentation, unit_of(name), data))
    scope = ScopeMetrics(InstrumentationScope("vobox-agent", version), metrics, "")
    return MetricsData([ResourceMetrics(Resource.create(dict(resource_attrs)), [scope], "")])


def _key(labels: Mapping[str, str]) -> tuple:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "le"))


def _histogram_points(fam: Any, now: int, start_s: float) -> list[HistogramDataPoint]:
    """Prometheus cumulative `le` buckets -> OTel bucket counts per bound (+Inf last)."""
    series: dict[tuple, dict[str, Any]] = {}
    for s in fam.samples:
        entry = series.setdefault(_key(s.labels), {"buckets": []})
        suffix = s.name[len(fam.name):]
        if suffix == "_bucket":
            entry["buckets"].append((float(s.labels["le"]), s.value))
        else:
            entry[suffix] = s.value
    points = []
    for key, e in series.items():
        buckets = sorted(e["buckets"])
        counts, last = [], 0.0
        for _le, cum in buckets:
            counts.append(int(cum - last))
            last = cum
        bounds = [le for le, _ in buckets if not math.isinf(le)]
        points.append(HistogramDataPoint(attributes=dict(key), start_time_unix_nano=_ns(e.get("_created", start_s)),
                            time_unix_nano=now, count=int(e.get("_count", 0)), sum=e.get("_sum", 0.0),
                            bucket_counts=counts, explicit_bounds=bounds,
                            # not measured: None leaves them unset in the protobuf message (the SDK types them float)
                            min=None, max=None))  # type: ignore[arg-type]
    return points


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("vobox-agent")
    except metadata.PackageNotFoundError:
        return "unknown"


class _Quiet(logging.Filter):
    """Keeps the exporter's own log lines (one per attempt) out of the log; a push reads those of its own thread."""

    def __init__(self) -> None:
        super().__init__()
        self.local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        lines = getattr(self.local, "lines", None)
        if lines is not None:
            lines.append(record.getMessage())
        return False

    def start(self) -> list[str]:
        """Collect this thread's exporter lines from now on (the list returned)."""
        self.local.lines = []
        return self.local.lines


# One filter for the exporter's logger (a second one would never see a record the first one dropped).
_QUIET = _Quiet()
logging.getLogger(_EXPORTER_LOGGER).addFilter(_QUIET)


class OtlpPusher:
    """Pushes a prometheus_client registry to an OTLP/HTTP endpoint every interval_s, in a daemon thread.

    headers: sent with every request (e.g. Authorization, from `[otlp] headers_file`; never logged);
    ca_file: PEM CA bundle for https; resource: OTel resource attributes (service.name...).
    """

    def __init__(self, registry: Any, endpoint: str, *, interval_s: float, timeout_s: float,
                 headers: Mapping[str, str] | None = None, ca_file: str | None = None,
                 resource: Mapping[str, str] | None = None) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.interval_s = interval_s
        self.version = _version()
        host = socket.gethostname()
        # service.instance.id becomes `instance` in Prometheus-compatible stores (Mimir's OTLP ingest)
        self.resource = {"service.name": "vobox-agent", "service.version": self.version, "host.name": host,
                         "service.instance.id": host, **(resource or {})}
        # As for InfluxDB, no TLS or proxy settings from the environment: requests would let REQUESTS_CA_BUNDLE
        # override ca_file, and `True` keeps OTEL_EXPORTER_OTLP_CERTIFICATE out too.
        session = requests.Session()
        session.trust_env = False
        self.exporter = OTLPMetricExporter(endpoint=endpoint, headers=dict(headers or {}), timeout=timeout_s,
                                           certificate_file=ca_file or True,  # type: ignore[arg-type]  # True: verify, env ignored (above)
                                           session=session,
                                           compression=Compression.Gzip)   # OTLP/HTTP servers must take gzip
        self.exports = 0          # successful pushes
        self.failures = 0         # failed pushes
        self.failing = False
        self._start_s = time.time()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def push(self) -> bool:
        """Convert and send the registry now; True when the receiver took it. Never raises on a failed export."""
        lines = _QUIET.start()
        try:
            data = to_metrics_data(self.registry.collect(), self.resource, time.time(), self._start_s,
                                   self.version)
            ok = self.exporter.export(data) == MetricExportResult.SUCCESS
        except Exception as exc:  # noqa: BLE001 - a bug in the conversion must not end the thread
            lines.append(f"{type(exc).__name__}: {exc}")
            ok = False
        if ok:
            self.exports += 1
            if self.failing:
                log.info("OTLP export to %s works again (after %d failed pushes)", self.endpoint, self.failures)
            self.failing = False
        else:
            self.failures += 1
            if not self.failing:
                log.warning("OTLP export to %s failed: %s; retrying every %gs, logged again when it works",
                            self.endpoint, lines[0] if lines else "no reason given", self.interval_s)
            self.failing = True
        return ok

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.push()

    def start(self) -> None:
        """Start pushing every interval_s (the first push one interval after start)."""
        self._thread = threading.Thread(target=self._run, name="otlp-push", daemon=True)
        self._thread.start()
        log.info("OTLP metrics to %s every %gs", self.endpoint, self.interval_s)

    def stop(self) -> None:
        """Stop the thread, push the final figures once, close the exporter."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self.push()
        self.exporter.shutdown()
