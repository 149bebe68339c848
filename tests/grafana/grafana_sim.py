"""What Grafana does to an InfluxQL query before InfluxDB sees it, and a strict reader for our YAML.

Sources followed (Grafana 10/11):
- frontend `InfluxDatasource.interpolateQueryExpr`: a variable that is neither multi nor
  include-all is inserted as is, except inside a regex (`=~ /.../`, `!~ /.../`) where it is
  regex-escaped; a multi/include-all variable is always escaped, several values become
  `(a|b)`, one value stays bare; "All" with a custom all value inserts that value verbatim,
  without one it is every option, escaped and joined. Escaping is @grafana/data `escapeRegex`:
  `[\\^$*+?.()|[\\]{}/]` get a backslash.
- backend `pkg/tsdb/influxdb/models/query.go` `Build`: `$timeFilter` ->
  `time >= <from>ms and time <= <to>ms`, then `$interval`, `$__interval_ms`, `$__interval`
  (gtime.FormatInterval of the query interval).
- the interval: (to - from) / maxDataPoints rounded by Grafana's `roundInterval` table, at least
  the query's / datasource's minimum interval (`timeInterval`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

ALL = "$__all"
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")

# (upper bound ms, interval ms) from Grafana's roundInterval
_ROUND_TABLE = [
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1500, 1000),
    (3500, 2000), (7500, 5000), (12500, 10000), (17500, 15000), (25000, 20000), (45000, 30000),
    (90000, 60000), (210000, 120000), (450000, 300000), (750000, 600000), (1050000, 900000),
    (1500000, 1200000), (2700000, 1800000), (5400000, 3600000), (9000000, 7200000),
    (16200000, 10800000), (32400000, 21600000), (86400000, 43200000), (604800000, 86400000),
    (1814400000, 604800000), (3628800000, 2592000000),
]


def escape_regex(value: str) -> str:
    """@grafana/data escapeRegex."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def round_interval_ms(interval_ms: float) -> int:
    """Grafana's roundInterval."""
    for bound, result in _ROUND_TABLE:
        if interval_ms <= bound:
            return result
    return 31536000000


def format_interval(interval_ms: int) -> str:
    """gtime.FormatInterval: the largest whole unit."""
    for unit_ms, suffix in ((31536000000, "y"), (86400000, "d"), (3600000, "h"), (60000, "m"), (1000, "s"), (1, "ms")):
        if interval_ms >= unit_ms:
            return f"{interval_ms // unit_ms}{suffix}"
    return "1ms"


def parse_duration_ms(text: str) -> int:
    """'10s', '1m', '500ms' -> ms."""
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip())
    if not m:
        raise ValueError(f"not a Grafana duration: {text!r}")
    return int(m.group(1)) * {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}[m.group(2)]


def query_interval_ms(from_ms: int, to_ms: int, max_data_points: int, min_interval_ms: int = 0) -> int:
    """The $__interval Grafana computes for a panel query."""
    return max(round_interval_ms((to_ms - from_ms) / max_data_points), min_interval_ms, 1)


@dataclass
class Variable:
    """A dashboard variable with its current value(s) and options."""
    name: str
    current: str | list[str]
    multi: bool = False
    include_all: bool = False
    all_value: str | None = None
    options: list[str] = field(default_factory=list)


def _in_regex(query: str, start: int) -> bool:
    """Is position `start` inside `=~ /.../` or `!~ /.../`?"""
    before = query[:start]
    opened = list(re.finditer(r"[=!]~\s*/", before))
    if not opened:
        return False
    m = opened[-1]
    return "/" not in before[m.end():].replace("\\/", "")


def _format(var: Variable, query: str, pos: int) -> str:
    values = var.current
    if values == ALL or values == [ALL]:
        if var.all_value is not None:
            return var.all_value
        values = list(var.options)
    if not var.multi and not var.include_all:
        value = values[0] if isinstance(values, list) else values
        return escape_regex(value) if _in_regex(query, pos) else value
    if isinstance(values, str):
        return escape_regex(values)
    escaped = [escape_regex(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate_variables(query: str, variables: dict[str, Variable]) -> str:
    """Frontend templateSrv.replace with the InfluxDB formatter ($name and ${name})."""
    out, i = [], 0
    pattern = re.compile(r"\$(\w+)|\$\{(\w+)\}")
    for m in pattern.finditer(query):
        name = m.group(1) or m.group(2)
        if name not in variables:
            continue  # a macro for the backend, or not a variable
        out.append(query[i:m.start()])
        out.append(_format(variables[name], query, m.start()))
        i = m.end()
    out.append(query[i:])
    return "".join(out)


def apply_backend_macros(query: str, from_ms: int, to_ms: int, interval_ms: int) -> str:
    """Grafana's InfluxQL backend: $timeFilter, $interval, $__interval_ms, $__interval (in that order)."""
    text = format_interval(interval_ms)
    query = query.replace("$timeFilter", f"time >= {from_ms}ms and time <= {to_ms}ms")
    query = query.replace("$interval", text)
    query = query.replace("$__interval_ms", str(interval_ms))
    return query.replace("$__interval", text)


def expand(query: str, variables: dict[str, Variable], from_ms: int, to_ms: int, *,
           max_data_points: int = 1000, min_interval_ms: int = 0) -> str:
    """The InfluxQL that reaches InfluxDB for a dashboard panel."""
    interval_ms = query_interval_ms(from_ms, to_ms, max_data_points, min_interval_ms)
    scoped = {"__interval": Variable("__interval", format_interval(interval_ms)),
              "__interval_ms": Variable("__interval_ms", str(interval_ms))}
    query = interpolate_variables(query, {**variables, **scoped})
    return apply_backend_macros(query, from_ms, to_ms, interval_ms)


def expand_alert_query(model: dict, relative_from_s: int, relative_to_s: int, now_ms: int) -> str:
    """The InfluxQL that reaches InfluxDB when Grafana evaluates an alert rule query at now_ms."""
    from_ms = now_ms - relative_from_s * 1000
    to_ms = now_ms - relative_to_s * 1000
    interval_ms = max(int(model.get("intervalMs", 1000)), 1)
    return apply_backend_macros(model["query"], from_ms, to_ms, interval_ms)


