"""The report as a self-contained HTML page: tables and inline SVG charts (no scripts, no external resources)."""
from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Callable

from agent.report.stats import LAYERS, Report
from agent.report.text import (
    HEADERS,
    _iso,
    all_failures_lines,
    audit_class_lines,
    comparison_lines,
    coverage,
    fmt_duration,
    fmt_estimate,
    fmt_pct,
    rows_for,
    segment_lines,
)

MAX_FREEZE_ROWS = 200


_COLORS = {"container": "#1f77b4", "vm": "#d62728",
           "l2": "#9467bd", "l3": "#ff7f0e", "l4": "#2ca02c", "l7": "#8c564b", "?": "#7f7f7f"}
_W, _H, _L, _R, _T, _B = 720, 260, 64, 110, 20, 40


def _svg(body: list[str], title: str) -> str:
    return (f'<figure><figcaption>{html.escape(title)}</figcaption>'
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
            f'role="img" aria-label="{html.escape(title)}">' + "".join(body) + "</svg></figure>")


def _axes(y_ticks: list[tuple[float, str]], x_ticks: list[tuple[float, str]], y_label: str) -> list[str]:
    out = [f'<line x1="{_L}" y1="{_H - _B}" x2="{_W - _R}" y2="{_H - _B}" stroke="#444"/>',
           f'<line x1="{_L}" y1="{_T}" x2="{_L}" y2="{_H - _B}" stroke="#444"/>',
           f'<text x="14" y="{(_T + _H - _B) / 2}" transform="rotate(-90 14 {(_T + _H - _B) / 2})" '
           f'text-anchor="middle" font-size="11">{html.escape(y_label)}</text>']
    for y, label in y_ticks:
        out.append(f'<line x1="{_L - 4}" y1="{y:.1f}" x2="{_W - _R}" y2="{y:.1f}" stroke="#ddd"/>'
                   f'<text x="{_L - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="10">{html.escape(label)}</text>')
    for x, label in x_ticks:
        out.append(f'<text x="{x:.1f}" y="{_H - _B + 14}" text-anchor="middle" font-size="10">'
                   f'{html.escape(label)}</text>')
    return out


def _legend(items: list[tuple[str, str]]) -> list[str]:
    out = []
    for i, (name, color) in enumerate(items):
        y = _T + 6 + i * 16
        out.append(f'<rect x="{_W - _R + 12}" y="{y - 8}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{_W - _R + 26}" y="{y + 1}" font-size="11">{html.escape(name)}</text>')
    return out


def _time_ticks(start_ms: int, end_ms: int, x_of: Callable[[float], float], step_s: int) -> list[tuple[float, str]]:
    fmt = "%m-%d" if step_s >= 86400 else "%m-%d %H:%M"
    n = max(1, int((end_ms - start_ms) / 1000 / step_s))
    every = max(1, n // 8)
    first = start_ms - start_ms % (step_s * 1000)
    return [(x_of(t), time.strftime(fmt, time.gmtime(t / 1000)))
            for i, t in enumerate(range(first, end_ms + 1, step_s * 1000)) if t >= start_ms and i % every == 0]


def chart_availability(report: Report) -> str:
    """Availability per kind per time bucket (line chart)."""
    obs = report.observation
    series: dict[str, list[tuple[int, float]]] = {}
    for b in obs.buckets:
        if b.cycles:
            series.setdefault(b.kind, []).append((b.start_ms, 100 * b.up_cycles / b.cycles))
    values = [v for pts in series.values() for _, v in pts] or [100.0]
    y_min = min(99.0, math.floor(min(values)))
    span_ms = max(1, obs.end_ms - obs.start_ms)

    def x_of(t: float) -> float:
        return _L + (t - obs.start_ms) / span_ms * (_W - _L - _R)

    def y_of(v: float) -> float:
        return _T + (100 - v) / (100 - y_min) * (_H - _T - _B)

    ticks = [(y_of(v), f"{v:g}%") for v in _nice_ticks(y_min, 100)]
    body = _axes(ticks, _time_ticks(obs.start_ms, obs.end_ms, x_of, obs.bucket_s), "availability")
    def x_mid(t: int) -> float:  # middle of the part of the bucket inside the range
        return x_of((max(t, obs.start_ms) + min(t + obs.bucket_s * 1000, obs.end_ms)) / 2)

    for kind, pts in sorted(series.items()):
        color = _COLORS.get(kind, "#333")
        path = " ".join(f"{x_mid(t):.1f},{y_of(v):.1f}" for t, v in sorted(pts))
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}"/>')
        for t, v in pts:
            body.append(f'<circle cx="{x_mid(t):.1f}" cy="{y_of(v):.1f}" r="2.5" fill="{color}">'
                        f'<title>{kind} {_iso(t)}: {v:.3f}%</title></circle>')
    body += _legend([(k, _COLORS.get(k, "#333")) for k in sorted(series)])
    unit = "day" if obs.bucket_s >= 86400 else "hour"
    return _svg(body, f"Availability per kind, per {unit}")


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    first = math.ceil(lo / step) * step
    return [round(first + i * step, 10) for i in range(int((hi - first) / step + 1e-9) + 1)]


def chart_freezes_per_day(report: Report) -> str:
    """Freezes per day, stacked by layer (bar chart)."""
    obs = report.observation
    day0 = obs.start_ms - obs.start_ms % 86_400_000
    days = list(range(day0, obs.end_ms, 86_400_000))
    counts = {(d, layer): 0 for d in days for layer in (*LAYERS, "?")}
    for f in obs.freezes:
        d = f.start_ms - f.start_ms % 86_400_000
        layer = f.layer if f.layer in LAYERS else "?"
        counts[(d, layer)] = counts.get((d, layer), 0) + 1
    totals = [sum(counts[(d, layer)] for layer in (*LAYERS, "?")) for d in days]
    top = max([1, *totals])
    ticks_v = [t for t in _nice_ticks(0, top) if float(t).is_integer()] or [0, top]
    slot = (_W - _L - _R) / max(1, len(days))

    def y_of(v: float) -> float:
        return _H - _B - v / max(top, ticks_v[-1]) * (_H - _T - _B)

    x_ticks = [(_L + (i + 0.5) * slot, time.strftime("%m-%d", time.gmtime(d / 1000)))
               for i, d in enumerate(days) if i % max(1, len(days) // 10) == 0]
    body = _axes([(y_of(v), f"{v:g}") for v in ticks_v], x_ticks, "freezes")
    for i, d in enumerate(days):
        acc = 0
        for layer in (*LAYERS, "?"):
            n = counts[(d, layer)]
            if not n:
                continue
            y1, y0 = y_of(acc + n), y_of(acc)
            day = time.strftime("%Y-%m-%d", time.gmtime(d / 1000))
            body.append(f'<rect x="{_L + i * slot + slot * 0.15:.1f}" y="{y1:.1f}" width="{slot * 0.7:.1f}" '
                        f'height="{y0 - y1:.1f}" fill="{_COLORS[layer]}"><title>{day}'
                        f' {layer}: {n}</title></rect>')
            acc += n
    body += _legend([(layer, _COLORS[layer]) for layer in LAYERS])
    return _svg(body, "Freezes per day by layer")


def chart_mttr(report: Report) -> str:
    """MTTR per kind with its 95% interval (bars with error bars)."""
    groups = [g for g in report.kinds if g.mttr_s.value is not None]
    top = max([60.0] + [g.mttr_s.high or g.mttr_s.value or 0 for g in groups])
    unit = 3600 if top > 3 * 3600 else 60 if top > 180 else 1
    ticks = [t * unit for t in _nice_ticks(0, top / unit)]
    if ticks[-1] < top:
        ticks.append(ticks[-1] + (ticks[1] - ticks[0] if len(ticks) > 1 else top))
    top = ticks[-1]

    def y_of(v: float) -> float:
        return _H - _B - v / top * (_H - _T - _B)

    slot = (_W - _L - _R) / max(1, len(groups))
    body = _axes([(y_of(v), fmt_duration(v) if v else "0") for v in ticks],
                 [(_L + (i + 0.5) * slot, g.name) for i, g in enumerate(groups)], "MTTR")
    for i, g in enumerate(groups):
        cx = _L + (i + 0.5) * slot
        v, lo, hi = g.mttr_s.value, g.mttr_s.low, g.mttr_s.high
        if v is None:  # groups holds only kinds with an MTTR
            continue
        body.append(f'<rect x="{cx - slot * 0.2:.1f}" y="{y_of(v):.1f}" width="{slot * 0.4:.1f}" '
                    f'height="{y_of(0) - y_of(v):.1f}" fill="{_COLORS.get(g.kind, "#333")}" opacity="0.8">'
                    f'<title>{g.name}: {fmt_estimate(g.mttr_s, fmt_duration)}</title></rect>')
        if lo is not None and hi is not None:
            body.append(f'<line x1="{cx:.1f}" y1="{y_of(min(hi, top)):.1f}" x2="{cx:.1f}" y2="{y_of(lo):.1f}" '
                        f'stroke="#000"/><line x1="{cx - 8:.1f}" y1="{y_of(min(hi, top)):.1f}" x2="{cx + 8:.1f}" '
                        f'y2="{y_of(min(hi, top)):.1f}" stroke="#000"/><line x1="{cx - 8:.1f}" y1="{y_of(lo):.1f}" '
                        f'x2="{cx + 8:.1f}" y2="{y_of(lo):.1f}" stroke="#000"/>')
        closed = sum(1 for f in report.observation.freezes if f.kind == g.kind and not f.open)
        body.append(f'<text x="{cx + slot * 0.22:.1f}" y="{y_of(v) - 4:.1f}" font-size="11">'
                    f'{html.escape(fmt_duration(v))} (n={closed})</text>')
    return _svg(body, "MTTR per kind (mean repair time of closed freezes, 95% interval)")


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}table{border-collapse:collapse;font-size:13px}
th,td{border-bottom:1px solid #ddd;padding:4px 8px;text-align:left;white-space:nowrap}th{background:#f4f4f4}
td.n,th.n{text-align:right}p.verdict{font-size:15px;font-weight:600}
figure{margin:12px 0}figcaption{font-size:13px;font-weight:600;margin-bottom:4px}.note{color:#666;font-size:12px}"""


def _is_number(cell: str) -> bool:
    return bool(re.match(r"^-?\d", cell)) and not re.match(r"^\d{4}-\d\d-\d\d ", cell)


def _html_table(headers: list[str], rows: list[list[str]]) -> str:
    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] in ("", "-") for r in rows) for i in range(len(headers))]
    head = "".join(f"<th{' class=n' if numeric[i] else ''}>{html.escape(h)}</th>" for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f"<td{' class=n' if numeric[i] else ''}>{html.escape(c)}</td>"
                                    for i, c in enumerate(r)) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(report: Report) -> str:
    """A self-contained HTML page (inline CSS and SVG, no scripts, no external resources)."""
    obs = report.observation
    title = f"vobox stability, range {_iso(obs.start_ms)} .. {_iso(obs.end_ms)}" + (f" - site {obs.site}" if obs.site else "")
    freeze_rows = [[_iso(f.start_ms), f.box, f.kind, f.layer, fmt_duration(f.duration_s), "open" if f.open else ""]
                   for f in sorted(obs.freezes, key=lambda f: f.start_ms, reverse=True)]
    rem_rows = [[a, str(n), str(rec), fmt_pct(rec / n if n else None)] for a, (n, rec) in sorted(obs.remediations.items())]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=\"covers\">{html.escape(coverage(report))}</p>",
        *(f"<p class=\"verdict\">{html.escape(line)}</p>" for line in comparison_lines(report)),
        "<h2>Per kind</h2>", _html_table(HEADERS, rows_for(report.kinds)),
        chart_availability(report), chart_freezes_per_day(report), chart_mttr(report),
        "<h2>Per box</h2>", _html_table(HEADERS, rows_for(report.boxes)),
        f"<h2>Freezes ({len(freeze_rows)}"
        f"{', the last ' + str(MAX_FREEZE_ROWS) + ' shown' if len(freeze_rows) > MAX_FREEZE_ROWS else ''})</h2>",
        _html_table(["start", "box", "kind", "layer", "duration", ""], freeze_rows[:MAX_FREEZE_ROWS]),
    ]
    split = audit_class_lines(report)
    if report.by_audit_class is not None:
        parts += ["<h2>By audit class</h2>", f"<p>{html.escape(split[0])}</p>",
                  _html_table(HEADERS, rows_for(report.by_audit_class.groups)),
                  *(f"<p class=\"verdict\">{html.escape(line.strip())}</p>" for line in split[1 + len(
                      report.by_audit_class.groups) + 1:])]
    if obs.segment_outages:
        seg = segment_lines(report)
        parts += [f"<h2>Segment outages</h2><p>{html.escape(seg[0].rstrip(':'))}</p>",
                  _html_table(["start", "segment", "layer", "duration", "boxes"],
                              [[_iso(o.start_ms), o.segment, o.layer, "open" if o.open else fmt_duration(o.duration_s),
                                ", ".join(o.box_names)] for o in obs.segment_outages])]
    flap = all_failures_lines(report)
    if flap:
        parts += ["<h2>Every failed cycle</h2>", f"<p>{html.escape(flap[0])}</p>",
                  _html_table(["", "every failed cycle", "freeze-based", "failed cycles", "down in freezes"],
                              [[g.name, fmt_pct(g.availability_all_failures), fmt_pct(g.availability.value),
                                str(g.failed_cycles), str(g.down_cycles)]
                               for g in (*report.kinds, *report.boxes) if g.availability_all_failures is not None]),
                  *(f"<p>{html.escape(line.strip())}</p>" for line in flap
                    if line.startswith(("  they differ", "  degraded")))]
    if rem_rows:
        parts += ["<h2>Remediations</h2>", _html_table(["action", "actions", "recovered", "success"], rem_rows)]
    parts.append(f"<p class=\"note\">cycle {obs.interval_s:g}s. Intervals are 95%: exact Poisson on the number of "
                 "freezes (cycles are autocorrelated, freezes are the independent events); availability's interval "
                 "scales the count's interval by the mean freeze duration; MTTR assumes exponential repair times; "
                 "the container/VM comparison is the exact conditional binomial test on the two freeze counts "
                 "given their box-days.</p></body></html>\n")
    return "".join(parts)
