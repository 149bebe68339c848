"""`vobox-agent events -c FILE --since 24h [--box B] [--json]`: freezes, remediations and container events in time order."""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

# Event measurements (InfluxDB schema) -> whether they carry a `box` tag.
EVENT_MEASUREMENTS: dict[str, bool] = {
    "freeze": True,
    "remediation": True,
    "container_event": True,
    "mac_change": True,
    "segment_freeze": False,
}
_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# Tag keys of the schema (agent/storage/points.py); every other column of a row is a field.
TAG_KEYS = frozenset({"box", "kind", "site", "probe", "address", "port", "action", "trigger", "event",
                      "segment", "host"})

Query = Callable[[str], list[tuple[dict[str, str], dict[str, Any]]]]


class QueryError(RuntimeError):
    """An InfluxQL query failed; the message names the URL and the reason."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event: its measurement, time, tags and fields."""

    time_s: float
    measurement: str
    box: str | None
    tags: dict[str, str]
    fields: dict[str, Any]


def parse_duration_s(text: str) -> float:
    """'90s', '15m', '24h', '7d', '2w' -> seconds; ValueError naming the accepted forms."""
    m = _DURATION_RE.match(text.strip())
    if not m:
        raise ValueError(f"duration {text!r}: expected a number and a unit s, m, h, d or w (e.g. 24h)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def quote_ident(name: str) -> str:
    """InfluxQL identifier in double quotes."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_str(value: str) -> str:
    """InfluxQL string literal in single quotes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def split_row(row: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """A row of agent.storage.influx.query (tags and columns merged) -> (tags, columns incl. "time")."""
    tags = {k: str(v) for k, v in row.items() if k in TAG_KEYS and v is not None and v != ""}
    cols = {k: v for k, v in row.items() if k not in TAG_KEYS and k != "_measurement"}
    return tags, cols


def influx_query(influx: Any) -> Query:
    """A function running one InfluxQL statement over /query (1.x, 2.x and 3.x) with the configured credentials."""
    from agent.storage import influx as storage

    if influx.api == "v2":
        # v1 compatibility API of 2.x/3.x: the bucket needs a DBRP mapping (see the operator guide)
        auth = {"db": influx.bucket, "token": influx.token}
    else:
        auth = {"db": influx.database, "username": influx.username, "password": influx.password}
    timeout_s = getattr(influx, "write_timeout_s", 10.0)

    def query(q: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        try:
            return [split_row(r) for r in storage.query(influx.url, q, timeout_s=timeout_s, epoch="ms", **auth)]
        except storage.QueryError as exc:
            raise QueryError(str(exc)) from None

    return query


def fetch_events(query: Query, since_s: float, box: str | None = None, site: str | None = None) -> list[EventRow]:
    """Every event point newer than SINCE_S seconds ago (of BOX and SITE, when given), oldest first."""
    found: list[EventRow] = []
    for measurement, has_box in EVENT_MEASUREMENTS.items():
        where = f"time > now() - {int(since_s)}s"
        if site is not None:
            where += f' AND "site" = {quote_str(site)}'
        if box is not None:
            if not has_box:
                continue
            where += f' AND "box" = {quote_str(box)}'
        for tags, row in query(f"SELECT * FROM {quote_ident(measurement)} WHERE {where} GROUP BY *"):
            t_ms = row.pop("time")
            fields = {k: v for k, v in row.items() if v is not None}
            found.append(EventRow(t_ms / 1000.0, measurement, tags.get("box"), dict(tags), fields))
    found.sort(key=lambda e: (e.time_s, e.measurement, e.box or ""))
    return found


def _fmt_time(t_s: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t_s)) + "Z"


def describe(event: EventRow) -> str:
    """One human line for an event."""
    f, tags = event.fields, event.tags
    if event.measurement == "freeze":
        dur = f.get("duration_s")
        if f.get("open") == 1:
            return f"freeze OPEN, layer {f.get('layer', '?')}" + (f", {dur:.0f} s so far" if dur else "")
        return f"freeze, layer {f.get('layer', '?')}" + (f", {dur:.1f} s" if dur is not None else "")
    if event.measurement == "remediation":
        flags = []
        if f.get("dry_run") == 1:
            flags.append("dry-run")
        flags.append("ok" if f.get("ok") == 1 else "FAILED")
        if "recovered" in f:
            flags.append("recovered" if f.get("recovered") == 1 else "not recovered")
        detail = f" - {f['detail']}" if f.get("detail") else ""
        return (f"remediation {tags.get('action', '?')} ({tags.get('trigger', '?')}): "
                f"{', '.join(flags)}{detail}")
    if event.measurement == "container_event":
        what = tags.get("event") or f.get("event") or f.get("action") or "?"
        detail = f" - {f['detail']}" if f.get("detail") else ""
        return f"container event {what}{detail}"
    if event.measurement == "mac_change":
        return f"MAC changed {f.get('old_mac', f.get('old', '?'))} -> {f.get('new_mac', f.get('new', '?'))}" + \
               (f" on {tags['address']}" if tags.get("address") else "")
    if event.measurement == "segment_freeze":
        seg = tags.get("segment", "?")
        return f"segment {seg} freeze" + (" OPEN" if f.get("open") == 1 else "") + \
               (f", {f['boxes']} boxes" if "boxes" in f else "") + \
               (f", {f['duration_s']:.1f} s" if isinstance(f.get("duration_s"), (int, float)) else "")
    return f"{event.measurement} " + " ".join(f"{k}={v}" for k, v in sorted(f.items()))


def format_events(events: list[EventRow]) -> str:
    """Time-ordered text lines: time, box, description."""
    if not events:
        return "no events"
    width = max((len(e.box or "-") for e in events), default=1)
    return "\n".join(f"{_fmt_time(e.time_s)}  {(e.box or '-'):<{width}}  {describe(e)}" for e in events)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the events subcommand."""
    p = subparsers.add_parser("events", help="freezes, remediations and container events from InfluxDB, in time order")
    p.add_argument("-c", "--config", required=True, metavar="FILE", help="agent config (TOML)")
    p.add_argument("--since", default="24h", help="how far back, e.g. 90m, 24h, 7d (default 24h)")
    p.add_argument("--box", help="only this box")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the events; exit 1 when InfluxDB cannot be queried, 2 on bad arguments or config."""
    from agent.core import config

    try:
        since_s = parse_duration_s(args.since)
        cfg = config.load(args.config)
        if args.box is not None:
            cfg.box(args.box)
    except (ValueError, KeyError, config.ConfigError) as exc:
        print(f"vobox-agent events: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return 2
    try:
        events = fetch_events(influx_query(cfg.influxdb), since_s, args.box, cfg.agent.site)
    except QueryError as exc:
        print(f"vobox-agent events: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for e in events:
            print(json.dumps({"time": _fmt_time(e.time_s), **asdict(e)}, sort_keys=True))
    else:
        print(format_events(events))
    return 0
