"""Run InfluxQL against the fleet_data InfluxDB and turn answers into simple rows."""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

from tests.grafana.fleet_data import FleetData, _entered

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class QueryError(AssertionError):
    """InfluxDB answered with an error for a query."""


def run(fleet: FleetData, query: str) -> list[dict]:
    """POST /query; return the series of the first statement; raise QueryError on any error."""
    body = urllib.parse.urlencode({"q": query, "db": fleet.database, "epoch": "ms"}).encode()
    req = urllib.request.Request(f"{fleet.influx_url}/query", data=body, method="POST",
                                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    with _entered(fleet.netns):
        try:
            with _OPENER.open(req, timeout=60) as resp:
                answer = json.load(resp)
        except urllib.error.HTTPError as exc:
            raise QueryError(f"HTTP {exc.code} for {query!r}: {exc.read()[:400]!r}") from None
    if "error" in answer:
        raise QueryError(f"{answer['error']} in {query!r}")
    results = answer.get("results", [])
    if not results:
        raise QueryError(f"no results for {query!r}")
    if "error" in results[0]:
        raise QueryError(f"{results[0]['error']} in {query!r}")
    return results[0].get("series", [])


def rows(series: dict) -> list[dict]:
    """One dict per row of a series (columns -> values)."""
    return [dict(zip(series["columns"], v, strict=True)) for v in series["values"]]


def by_tag(series_list: list[dict], tag: str, column: str) -> dict[str, float]:
    """{tag value: value of `column` in the (single) row} for an aggregate grouped by `tag`."""
    out = {}
    for s in series_list:
        r = rows(s)
        assert len(r) == 1, f"expected one row per {tag}, got {len(r)}"
        out[s.get("tags", {}).get(tag, "")] = r[0][column]
    return out


def single(series_list: list[dict], column: str):
    """The value of `column` in the one row of the one series."""
    assert len(series_list) == 1, f"expected one series, got {len(series_list)}"
    r = rows(series_list[0])
    assert len(r) == 1, f"expected one row, got {len(r)}"
    return r[0][column]
