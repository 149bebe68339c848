"""The report as terminal text: a table per kind and per box, the comparison, the remediations."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

from agent.report.stats import Estimate, GroupStats, Report, _num


def fmt_duration(s: float | None) -> str:
    """Seconds as a short human duration (45s, 12.5m, 3.2h, 4.1d)."""
    if s is None:
        return "-"
    if s == math.inf:
        return "inf"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.3g}{unit}"
    return f"{s:.3g}s"


def fmt_pct(x: float | None) -> str:
    """A fraction as a percentage with enough digits for 99.9x%."""
    return "-" if x is None else f"{100 * x:.3f}%"


def fmt_estimate(e: Estimate, fmt: Callable[[float | None], str]) -> str:
    """'value [low, high]'."""
    if e.low is None and e.high is None:
        return fmt(e.value)
    return f"{fmt(e.value)} [{fmt(e.low)}, {fmt(e.high) if e.high is not None else 'inf'}]"


def rows_for(groups: Sequence[GroupStats]) -> list[list[str]]:
    """Table rows (strings) of groups."""
    return [[g.name, g.kind, str(g.boxes), f"{g.box_days:.2f}", fmt_estimate(g.availability, fmt_pct),
             f"{g.freezes}" + (f" ({g.open_freezes} open)" if g.open_freezes else ""),
             fmt_estimate(g.rate_per_box_day, lambda x: _num(x)), fmt_estimate(g.mtbf_s, fmt_duration),
             fmt_estimate(g.mttr_s, fmt_duration), fmt_duration(g.maintenance_s) if g.maintenance_s else "-"]
            for g in groups]


HEADERS = ["", "kind", "boxes", "box-days", "availability [95%]", "freezes", "freezes/box-day [95%]",
           "MTBF [95%]", "MTTR [95%]", "maintenance"]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def coverage(report: Report) -> str:
    """What the data really covers: observed span (first to last point) against the range asked, boxes, cycles."""
    obs = report.observation
    asked_s = (obs.end_ms - obs.start_ms) / 1000
    if obs.first_ms is None or obs.last_ms is None:
        return f"covers: no data in the {fmt_duration(asked_s)} asked for"
    n_boxes = len(obs.boxes)
    cycles = obs.cycles if obs.cycles is not None else max((b.cycles for b in obs.boxes), default=0)
    return (f"covers: {_iso(obs.first_ms)} .. {_iso(obs.last_ms)}, {fmt_duration(obs.observed_s)} observed of the "
            f"{fmt_duration(asked_s)} asked for; {n_boxes} box{'es' if n_boxes != 1 else ''}, {cycles} cycles")


def segment_lines(report: Report) -> list[str]:
    """Segment outages, one a line, and how many box freezes they account for; [] when there are none."""
    obs = report.observation
    if not obs.segment_outages:
        return []
    lines = [f"segment outages ({len(obs.segment_outages)}; every box of a segment down at once, "
             f"{report.segment_freezes} of the {len(obs.freezes)} box freezes are part of them):"]
    for o in obs.segment_outages:
        state = "open" if o.open else fmt_duration(o.duration_s)
        lines.append(f"  {_iso(o.start_ms)}  segment {o.segment}  layer {o.layer}  {state}  "
                     f"{len(o.box_names)} boxes: {', '.join(o.box_names)}")
    return lines


def comparison_lines(report: Report) -> list[str]:
    """The containers/VMs comparison, both ways when there were segment outages."""
    if report.comparison_without_segments is None:
        return [report.comparison.sentence()]
    return [f"with segment outages: {report.comparison.sentence()}",
            f"without them ({report.segment_freezes} box freezes left out): "
            f"{report.comparison_without_segments.sentence()}"]


def all_failures_lines(report: Report) -> list[str]:
    """Availability from every failed cycle next to the freeze-based one, and why they differ; [] without data."""
    groups = [g for g in report.kinds if g.availability_all_failures is not None]
    if not groups:
        return []
    lines = ["availability from every failed cycle (mean of `healthy`: each failed cycle counts) against the "
             "freeze-based one above (mean of `up`: only cycles inside freezes count):"]
    for g in [*groups, *(b for b in report.boxes if b.availability_all_failures is not None)]:
        lone = max(0, g.failed_cycles - g.down_cycles)
        lines.append(f"  {g.name:<16} {fmt_pct(g.availability_all_failures)} against {fmt_pct(g.availability.value)}: "
                     f"{g.failed_cycles} failed cycles, {g.down_cycles} down in freezes"
                     + (f", about {lone} lone failures" if lone else ""))
    lines.append("  they differ because a freeze needs [freeze] fail_cycles failing cycles in a row: a lone failure, "
                 "or a box failing every other cycle, is no freeze and leaves the freeze-based figure at 100 %; "
                 "a freeze's healthy cycles during a recovery that relapsed count down in it.")
    degraded = [b for b in report.boxes if b.degraded_boxes]
    if degraded:
        lines.append("  degraded (flapping or losing cycles) at some time in the range: " + ", ".join(
            f"{b.name} ({_num(next((r.max_percent_state_change for r in report.observation.boxes if r.box == b.name), None))} % "
            f"state change at most)" for b in degraded))
    return lines


def audit_class_lines(report: Report) -> list[str]:
    """The container/VM comparison split by audit class (agent.audit): a table row per class, then each class's
    containers against all VMs; [] without audit data."""
    split = report.by_audit_class
    if split is None:
        return []
    table = [HEADERS] + rows_for(split.groups)
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = ["by audit class (vobox-agent audit; exposure and freezes count for the class in force at the time; "
             "unknown: no audit):"]
    for r in table:
        lines.append("  " + "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip())
    for cls, comparison in split.comparisons.items():
        lines.append(f"  {comparison.sentence(f'{cls} containers')}")
    return lines


def render_text(report: Report) -> str:
    """The terminal report."""
    obs = report.observation
    table = [HEADERS] + rows_for(report.kinds) + [[""] * len(HEADERS)] + rows_for(report.boxes)
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = [f"vobox stability, range {_iso(obs.start_ms)} .. {_iso(obs.end_ms)}"
             + (f"  site {obs.site}" if obs.site else "") + f"  (cycle {obs.interval_s:g}s)", coverage(report), ""]
    for r in table:
        cells = (c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
        lines.append("  ".join(cells).rstrip())
    lines += [""] + comparison_lines(report)
    split = audit_class_lines(report)
    if split:
        lines += [""] + split
    flap = all_failures_lines(report)
    if flap:
        lines += [""] + flap
    seg = segment_lines(report)
    if seg:
        lines += [""] + seg
    if obs.names:   # boxes by name: the name next to the addresses it was probed at
        lines.append("names: " + "; ".join(
            f"{n.box} = {n.hostname} -> {' '.join(n.addresses) or 'never resolved'}"
            + (f", resolved elsewhere {n.address_changes}x" if n.address_changes else "")
            + (f", stopped resolving {n.not_resolving}x" if n.not_resolving else "")
            + (f", now {n.last_state}" if n.last_state != "resolved" else "") for n in obs.names))
    if obs.remediations:
        parts = [f"{a} {n} ({rec}/{n} recovered)" for a, (n, rec) in sorted(obs.remediations.items())]
        lines.append("remediations: " + ", ".join(parts))
    if any(g.maintenance_s for g in report.boxes):
        lines.append("maintenance: time in maintenance windows (column) is left out of box-days, availability, "
                     "freeze rates, MTBF and MTTR")
    lines.append("intervals: exact Poisson on the number of freezes (cycles are autocorrelated; freezes are the "
                 "events); MTTR assumes exponential repair times")
    return "\n".join(lines) + "\n"
