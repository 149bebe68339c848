"""The InfluxDB read side: InfluxQL quoting, the configured credentials, rows split into tags and fields, events.

Every reader (status, events, report, the demo) queries through here, over InfluxQL `/query`
(InfluxDB 1.x, and 2.x/3.x through their v1 compatibility API), with the one mapping from the
config's [influxdb] section to query credentials.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.storage import influx as _influx

# Event measurements (InfluxDB schema) -> whether they carry a `box` tag.
EVENT_MEASUREMENTS: dict[str, bool] = {
    "freeze": True,
    "remediation": True,
    "container_event": True,
    "mac_change": True,
    "address_conflict": True,
    "maintenance": True,
    "name": True,   # a box's hostname changed resolver state or address (agent.resolve)
    "segment_freeze": False,
    "engine_down": False,
}

# Tag keys of the schema (agent/storage/points.py); every other column of a row is a field.
TAG_KEYS = frozenset({"box", "kind", "site", "probe", "address", "port", "action", "trigger", "outcome", "event",
                      "origin", "check", "target", "maintenance", "segment", "host", "hostname", "detected_layer"})
# What a read says when the config has no [influxdb] (stores are optional, issue 31).
NO_INFLUXDB = "no [influxdb] section in the config: nothing is stored in InfluxDB to read"

Rows = Callable[[str], list[dict[str, Any]]]
Query = Callable[[str], list[tuple[dict[str, str], dict[str, Any]]]]


class QueryError(RuntimeError):
    """An InfluxQL query failed; the message names the URL and the reason."""


class NoInfluxDB(QueryError):
    """Nothing to read: the config has no [influxdb] section (the message is NO_INFLUXDB)."""


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored event: its measurement, time, tags and fields."""

    time_s: float
    measurement: str
    box: str | None
    tags: dict[str, str]
    fields: dict[str, Any]


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


def query_credentials(influx: Any) -> dict[str, Any]:
    """The /query keyword arguments for an [influxdb] config: db, credentials (password_file read), TLS, timeout.

    2.x/3.x answer InfluxQL through the v1 compatibility API: the bucket needs a DBRP mapping named after it.
    Raises agent.storage.influx.SinkError when password_file cannot be read.
    """
    db = influx.bucket if influx.api == "v2" else influx.database
    return {"db": db, **_influx.query_kwargs(influx)}


def describe_source(influx: Any) -> str:
    """'URL (database)' for messages; "no InfluxDB" for a config without [influxdb] (None)."""
    if influx is None:
        return "InfluxDB"
    return f"{influx.url} ({influx.bucket if influx.api == 'v2' else influx.database})"


def influx_rows(influx: Any, timeout_s: float | None = None) -> Rows:
    """A function running one InfluxQL statement and returning rows (tags and columns merged, times in ms).

    timeout_s: per query (default: the config's write_timeout_s). Raises QueryError naming the URL and reason;
    with influx None (no [influxdb] configured) every query raises QueryError(NO_INFLUXDB).
    """
    if influx is None:
        def nothing(q: str) -> list[dict[str, Any]]:
            raise NoInfluxDB(NO_INFLUXDB)
        return nothing
    auth = query_credentials(influx)
    if timeout_s is not None:
        auth["timeout_s"] = timeout_s

    def rows(q: str) -> list[dict[str, Any]]:
        try:
            return _influx.query(influx.url, q, epoch="ms", **auth)
        except _influx.QueryError as exc:
            raise QueryError(str(exc)) from None

    return rows


def influx_query(influx: Any, timeout_s: float | None = None) -> Query:
    """A function running one InfluxQL statement and returning (tags, columns) pairs; QueryError on failure."""
    rows = influx_rows(influx, timeout_s)

    def query(q: str) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [split_row(r) for r in rows(q)]

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
