"""The report's InfluxDB reads: box cycles, freezes, time buckets and remediations of a range, as a FleetObservation."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.core.events import BoxKind
from agent.report.stats import (
    BoxRecord,
    Bucket,
    ClassPeriod,
    ClassSlice,
    FleetObservation,
    FreezeRecord,
    NameHistory,
    SegmentOutage,
    class_windows,
)
from agent.storage.read import Rows, describe_source, influx_rows, quote_str

MIN_QUERY_TIMEOUT_S = 30.0  # the report's aggregations over weeks take longer than a write


@dataclass(frozen=True, slots=True)
class ReportSource:
    """What the report needs from the agent config: where to read, the site, the cycle length."""

    query: Rows
    site: str | None
    interval_s: float
    where: str  # for messages


def source_from_config(cfg: Any) -> ReportSource:
    """Read [influxdb], [agent].site and [agent].interval of a loaded Config."""
    influx = cfg.influxdb   # None without [influxdb]: every query raises QueryError saying so
    rows = influx_rows(influx, timeout_s=max(MIN_QUERY_TIMEOUT_S, influx.write_timeout_s if influx else 0.0))
    return ReportSource(rows, cfg.agent.site, cfg.agent.interval_s, describe_source(influx))


def _where(start_ms: int, end_ms: int, site: str | None) -> str:
    w = f"time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
    if site:
        w += f' AND "site" = {quote_str(site)}'
    return w


def read_fleet(query: Rows, start_ms: int, end_ms: int, interval_s: float,
               site: str | None = None) -> FleetObservation:
    """Read box cycles, freezes, daily buckets and remediations with InfluxQL through `query(q) -> rows`."""
    w = _where(start_ms, end_ms, site)
    # `healthy` (the raw verdict) and the flapping fields are read apart: data written before they existed has none
    flaps = {(r["box"], r["kind"]): r for r in query(
        f'SELECT count("healthy") AS "judged", sum("healthy") AS "healthy", max("degraded") AS "degraded", '
        f'max("percent_state_change") AS "psc" FROM "box" WHERE {w} GROUP BY "box", "kind"')}
    # Cycles in a maintenance window have no up (left out of availability); counted apart to be shown.
    maint = {(r["box"], r["kind"]): int(r["n"] or 0)
             for r in query(f'SELECT count("state") AS "n" FROM "box" WHERE "maintenance" = \'true\' AND {w} '
                            'GROUP BY "box", "kind"')}
    judged = {(r["box"], r["kind"]): (int(r["cycles"] or 0), int(r["up"] or 0))
              for r in query(f'SELECT count("up") AS "cycles", sum("up") AS "up" FROM "box" WHERE {w} '
                             'GROUP BY "box", "kind"')}

    def record(box: str, kind: str) -> BoxRecord:
        cycles, up_cycles = judged.get((box, kind), (0, 0))
        judged_cycles, healthy_cycles, degraded, max_psc = _flap_fields(flaps.get((box, kind)))
        return BoxRecord(box, kind, cycles, up_cycles, judged_cycles, healthy_cycles, degraded, max_psc,
                         maintenance_cycles=maint.get((box, kind), 0))
    boxes = tuple(sorted((record(box, kind) for box, kind in set(judged) | set(maint)), key=lambda b: (b.kind, b.box)))
    freezes = tuple(sorted(
        (FreezeRecord(r["box"], r["kind"], int(r["time"]), str(r.get("layer") or "?"),
                      float(r.get("duration_s") or 0.0), bool(r.get("open")))
         for r in query(f'SELECT "duration_s", "layer", "open" FROM "freeze" WHERE {w} GROUP BY "box", "kind"')),
        key=lambda f: (f.start_ms, f.box)))
    span_s = (end_ms - start_ms) / 1000
    bucket_s = 86400 if span_s >= 3 * 86400 else 3600
    buckets = tuple(
        Bucket(int(r["time"]), r["kind"], int(r["cycles"] or 0), int(r["up"] or 0))
        for r in query(f'SELECT count("up") AS "cycles", sum("up") AS "up" FROM "box" WHERE {w} '
                       f'GROUP BY time({bucket_s}s), "kind" fill(none)'))
    remediations = {
        r["action"]: (int(r["n"] or 0), int(r["recovered"] or 0))
        for r in query(f'SELECT count("ok") AS "n", sum("recovered") AS "recovered" FROM "remediation" '
                       f'WHERE "dry_run" = 0 AND "deferred" = 0 AND {w} GROUP BY "action"')}
    # first() and last() alone return their point's time: the span the data really covers
    first = [int(r["time"]) for r in query(f'SELECT first("up") FROM "box" WHERE {w}')]
    last = [int(r["time"]) for r in query(f'SELECT last("up") FROM "box" WHERE {w}')]
    cycles = [int(r["n"] or 0) for r in query(f'SELECT count("cycle_s") AS "n" FROM "agent" WHERE {w}')]
    outages = tuple(sorted(
        (SegmentOutage(str(r.get("segment") or "?"), int(r["time"]), str(r.get("layer") or "?"),
                       float(r.get("duration_s") or 0.0), bool(r.get("open")),
                       tuple(n for n in str(r.get("box_names") or "").split(",") if n))
         for r in query(f'SELECT "duration_s", "layer", "open", "box_names" FROM "segment_freeze" WHERE {w} '
                        'GROUP BY "segment"')), key=lambda o: (o.start_ms, o.segment)))
    periods, slices = read_audit_classes(query, start_ms, end_ms, site, boxes)
    return FleetObservation(start_ms, end_ms, interval_s, site, boxes, freezes, buckets, bucket_s, remediations,
                            first[0] if first else None, last[0] if last else None,
                            # older data without `agent` points: the most cycles any box saw
                            cycles[0] if cycles and cycles[0] else max((b.cycles for b in boxes), default=0),
                            outages, names=read_names(query, w), audit_periods=periods, class_slices=slices)


def read_audit_classes(query: Rows, start_ms: int, end_ms: int, site: str | None,
                       boxes: tuple[BoxRecord, ...]) -> tuple[tuple[ClassPeriod, ...], tuple[ClassSlice, ...]]:
    """The container boxes' audit classes (`audit_box` points: the last before the range and those in it) and
    their cycles cut where the class changed (one count per window). A box without an audit is "unknown" for
    the whole range; ((), ()) when no box of the range was ever audited (no split is shown)."""
    w = _where(start_ms, end_ms, site)
    before = f'time < {int(start_ms)}ms' + (f' AND "site" = {quote_str(site)}' if site else "")
    rows = [*query(f'SELECT last("audit_class") AS "audit_class" FROM "audit_box" WHERE {before} GROUP BY "box"'),
            *query(f'SELECT "audit_class" FROM "audit_box" WHERE {w} GROUP BY "box"')]
    periods = tuple(sorted((ClassPeriod(str(r["box"]), max(int(r["time"]), int(start_ms)),
                                        str(r.get("audit_class") or "unknown")) for r in rows if r.get("box")),
                           key=lambda p: (p.box, p.start_ms)))
    if not periods:
        return (), ()
    slices = []
    for b in boxes:
        if b.kind != BoxKind.CONTAINER:
            continue
        windows = class_windows(periods, b.box, start_ms, end_ms)
        if len(windows) == 1:
            slices.append(ClassSlice(b.box, b.kind, windows[0][2], b.cycles, b.up_cycles))
            continue
        for a, z, cls in windows:
            (r,) = query(f'SELECT count("up") AS "cycles", sum("up") AS "up" FROM "box" WHERE "box" = '
                         f'{quote_str(b.box)} AND {_where(a, z, site)}') or [{}]
            slices.append(ClassSlice(b.box, b.kind, cls, int(r.get("cycles") or 0), int(r.get("up") or 0)))
    return periods, tuple(slices)


# Resolver states in which a name does not resolve (agent.core.resolve.NOT_RESOLVING but `pending`).
_NOT_RESOLVING = frozenset({"nxdomain", "servfail", "timeout", "refused", "error"})


def read_names(query: Rows, where: str) -> tuple[NameHistory, ...]:
    """Boxes by name from their `name` points (agent.storage.points.name_point) matching WHERE, in time order."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    rows = query(f'SELECT "state", "ipv4", "ipv6", "new" FROM "name" WHERE {where} GROUP BY "box", "hostname", '
                 '"event"')
    for r in sorted(rows, key=lambda r: int(r.get("time") or 0)):
        h = seen.setdefault((str(r.get("box")), str(r.get("hostname"))),
                            {"addresses": [], "changes": 0, "lost": 0, "state": "?"})
        if r.get("event") == "address":
            h["changes"] += 1 if r.get("new") else 0
            news = [r.get("new")]
        else:
            h["state"] = str(r.get("state") or "?")
            h["lost"] += 1 if h["state"] in _NOT_RESOLVING else 0
            news = [r.get("ipv4"), r.get("ipv6")]
        h["addresses"] += [a for a in news if a and a not in h["addresses"]]
    return tuple(NameHistory(box, host, tuple(h["addresses"]), h["changes"], h["lost"], h["state"])
                 for (box, host), h in sorted(seen.items()))


def _flap_fields(row: dict | None) -> tuple[int, int, bool, float | None]:
    """BoxRecord's judged_cycles, healthy_cycles, degraded, max_percent_state_change from one row (or none)."""
    if row is None:
        return 0, 0, False, None
    psc = row.get("psc")
    return (int(row.get("judged") or 0), int(row.get("healthy") or 0), bool(row.get("degraded")),
            None if psc is None else float(psc))
