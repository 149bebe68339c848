"""The report as data: one JSON-ready dict (`report --json`, schema docs/schemas/report.json).

The one place of the report's machine-readable shape: a reader that adds fields (a site, a fleet of sites)
extends `report_data`'s dict; the schema allows added keys and requires these.
"""
from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any

from agent.report.stats import CONFIDENCE, GroupStats, Report

SCHEMA_VERSION = 1


def _clean(value: Any) -> Any:
    """VALUE with tuples as lists and non-finite floats as None (JSON has no NaN or Infinity, RFC 8259 6)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def group_data(g: GroupStats) -> dict[str, Any]:
    """One kind's or box's figures: availability (a fraction 0..1), rate per box-day, MTBF and MTTR in seconds,
    each {value, low, high} at the report's confidence (None where not defined), counts, freezes by layer."""
    return dict(_clean(asdict(g)))


def report_data(report: Report) -> dict[str, Any]:
    """The whole report as a dict: the range it asked for and the span the data covers (epoch ms), per kind and per
    box (`group_data`), containers against VMs, segment outages and remediations per action."""
    obs = report.observation
    return dict(_clean({
        "schema_version": SCHEMA_VERSION,
        "range": {"start_ms": obs.start_ms, "end_ms": obs.end_ms, "first_ms": obs.first_ms, "last_ms": obs.last_ms},
        "site": obs.site,
        "interval_s": obs.interval_s,
        "cycles": obs.cycles,
        "confidence": CONFIDENCE,
        "kinds": [group_data(g) for g in report.kinds],
        "boxes": [group_data(g) for g in report.boxes],
        "comparison": asdict(report.comparison),
        "comparison_without_segments": (asdict(report.comparison_without_segments)
                                        if report.comparison_without_segments is not None else None),
        "segment_freezes": report.segment_freezes,
        "segment_outages": [asdict(s) for s in obs.segment_outages],
        "remediations": {action: {"actions": n, "recovered": ok} for action, (n, ok) in
                         sorted(obs.remediations.items())},
    }))
