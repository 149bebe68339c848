"""The Prometheus dashboards' queries as Grafana would send them: macros and variables expanded.

Grafana's rules (https://grafana.com/docs/grafana/latest/datasources/prometheus/template-variables/):
$__range is the dashboard's range in seconds; $__interval the range over the panel's data points (at least
the datasource's scrape interval); $__rate_interval max($__interval + scrape interval, 4 x scrape interval);
a multi-value variable is sent as a regex alternation `(a|b)`, All as the variable's allValue (`.*`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Query:
    """One query of a Prometheus dashboard: where it is and what Grafana would ask."""

    where: str          # panel title / refId, or "annotation NAME", "variable NAME"
    expr: str
    instant: bool


def interval_s(range_s: float, scrape_s: float, max_points: int = 1000) -> int:
    """$__interval: the range over the data points, rounded up to a second, at least the scrape interval."""
    return max(math.ceil(scrape_s), math.ceil(range_s / max_points))


def expand(expr: str, *, range_s: float, scrape_s: float, variables: Mapping[str, str | list[str]],
           max_points: int = 1000) -> str:
    """EXPR with Grafana's macros and the dashboard's variables replaced."""
    step = interval_s(range_s, scrape_s, max_points)
    rate = max(step + math.ceil(scrape_s), 4 * math.ceil(scrape_s))
    out = expr.replace("$__rate_interval", f"{rate}s").replace("$__range", f"{math.ceil(range_s)}s")
    out = out.replace("$__interval", f"{step}s")
    for name in sorted(variables, key=len, reverse=True):   # $box before $b...
        value = variables[name]
        text = value if isinstance(value, str) else "(" + "|".join(re.escape(v) for v in value) + ")"
        out = out.replace("${" + name + "}", text).replace("$" + name, text)
    left = re.findall(r"\$\w+", out)
    if left:
        raise ValueError(f"unexpanded {left} in {out!r}")
    return out


def queries(dashboard: dict) -> Iterator[Query]:
    """Every PromQL query of a dashboard: panels' targets and annotations (variables: variable_selectors)."""
    for p in dashboard["panels"]:
        for t in p.get("targets", []):
            yield Query(f"{p['title']} / {t['refId']}", t["expr"], bool(t.get("instant")))
    for a in dashboard["annotations"]["list"]:
        if "expr" in a:
            yield Query(f"annotation {a['name']}", a["expr"], False)


def variable_selectors(dashboard: dict) -> dict[str, tuple[str, str]]:
    """label_values(SELECTOR, LABEL) variables: name -> (selector, label)."""
    out = {}
    for v in dashboard["templating"]["list"]:
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", str(v.get("query", "")))
        if v["type"] == "query" and m:
            out[v["name"]] = (m.group(1), m.group(2))
    return out
