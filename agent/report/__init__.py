"""Stability report: availability, freezes, MTBF and MTTR per kind and per box, each with a 95% interval.

Reads InfluxDB over InfluxQL `/query` (InfluxDB 1.x, and 2.x/3.x through the v1 API), so it works
wherever the agent writes. The statistics are small pure functions (stdlib only).

Why these intervals. Cycles are strongly autocorrelated (a box that is down now is down 10 s
later), so treating each cycle as an independent Bernoulli trial (a Wilson interval on up-cycles)
would claim far too much precision. Freezes are the independent events: the number of freezes k
in an observed box-time T is modelled as Poisson, which gives
  - the freeze rate per box-day: k / box-days with the exact (Garwood) Poisson interval,
    i.e. gamma quantiles [G(a/2; k), G(1-a/2; k+1)];
  - availability = 1 - frozen_time / T, with the interval from the Poisson interval of k times
    the mean freeze duration (frozen_time / k): the count of freezes dominates the uncertainty
    while there are few of them; the spread of durations is not added (say so when quoting it);
  - MTBF = up-time / k, interval up-time / [G(1-a/2; k+1), G(a/2; k)] (time-terminated test);
  - MTTR = mean duration of closed freezes, interval assuming exponential repair times:
    sum / [G(1-a/2; n), G(a/2; n)].
Containers against VMs: the rate ratio (containers / VMs) with the exact conditional test: given
n = k1 + k2 freezes, k1 ~ Binomial(n, E1 r1 / (E1 r1 + E2 r2)); under equal rates p0 = E1/(E1+E2).
Two-sided exact p-value (sum of outcomes no more likely than the observed one) and a
Clopper-Pearson interval for p turned into one for the ratio.
"""
from __future__ import annotations

import html
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

CONFIDENCE = 0.95
DAY_S = 86400.0
KINDS = ("container", "vm")
KIND_LABELS = {"container": "all containers", "vm": "all VMs"}
LAYERS = ("l2", "l3", "l4")
MAX_FREEZE_ROWS = 200


# =========================================================================== pure statistics

def regularized_gamma_p(a: float, x: float) -> float:
    """P(a, x): the regularized lower incomplete gamma function (series / continued fraction)."""
    if a <= 0:
        raise ValueError(f"shape a must be > 0, got {a}")
    if x <= 0:
        return 0.0
    log_prefix = a * math.log(x) - x - math.lgamma(a)
    if x < a + 1:  # series
        term = total = 1.0 / a
        n = a
        for _ in range(10_000):
            n += 1
            term *= x / n
            total += term
            if abs(term) < abs(total) * 1e-16:
                break
        return min(1.0, total * math.exp(log_prefix))
    # continued fraction for Q(a, x) (modified Lentz)
    tiny = 1e-300
    b = x + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 10_000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-16:
            break
    return max(0.0, 1.0 - math.exp(log_prefix) * h)


def gamma_quantile(p: float, shape: float) -> float:
    """x with P(shape, x) = p (unit scale), by bisection; chi2(p, k) = 2 * gamma_quantile(p, k/2)."""
    if not 0 < p < 1:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    lo, hi = 0.0, max(1.0, shape)
    while regularized_gamma_p(shape, hi) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if regularized_gamma_p(shape, mid) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def poisson_interval(k: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact (Garwood) interval for a Poisson mean after observing k events."""
    if k < 0:
        raise ValueError(f"count must be >= 0, got {k}")
    alpha = 1 - confidence
    lo = 0.0 if k == 0 else gamma_quantile(alpha / 2, k)
    return lo, gamma_quantile(1 - alpha / 2, k + 1)


def binomial_pmf(i: int, n: int, p: float) -> float:
    """P(X = i) for X ~ Binomial(n, p)."""
    if p <= 0:
        return 1.0 if i == 0 else 0.0
    if p >= 1:
        return 1.0 if i == n else 0.0
    return math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
                    + i * math.log(p) + (n - i) * math.log1p(-p))


def binomial_two_sided_p(k: int, n: int, p0: float) -> float:
    """Exact two-sided p-value: total probability of outcomes no more likely than k (as R's binom.test)."""
    observed = binomial_pmf(k, n, p0)
    total = sum(q for q in (binomial_pmf(i, n, p0) for i in range(n + 1)) if q <= observed * (1 + 1e-7))
    return min(1.0, total)


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact interval for a binomial proportion after k successes in n trials."""
    if not 0 <= k <= n or n == 0:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k} n={n}")
    alpha = 1 - confidence

    def upper_tail(p: float) -> float:  # P(X >= k)
        return sum(binomial_pmf(i, n, p) for i in range(k, n + 1))

    def lower_tail(p: float) -> float:  # P(X <= k)
        return sum(binomial_pmf(i, n, p) for i in range(0, k + 1))

    def solve(f: Callable[[float], float], increasing: bool) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(100):
            mid = (lo + hi) / 2
            if (f(mid) < alpha / 2) == increasing:
                lo = mid
            else:
                hi = mid
        return (lo + hi) / 2

    lower = 0.0 if k == 0 else solve(upper_tail, increasing=True)
    upper = 1.0 if k == n else solve(lower_tail, increasing=False)
    return lower, upper


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its interval (None where not defined, e.g. no events)."""

    value: float | None
    low: float | None
    high: float | None


def rate_per_day(k: int, exposure_days: float, confidence: float = CONFIDENCE) -> Estimate:
    """Events per box-day with the exact Poisson interval."""
    if exposure_days <= 0:
        return Estimate(None, None, None)
    lo, hi = poisson_interval(k, confidence)
    return Estimate(k / exposure_days, lo / exposure_days, hi / exposure_days)


def availability(observed_s: float, frozen_s: float, k: int, mean_duration_s: float | None,
                 confidence: float = CONFIDENCE) -> Estimate:
    """1 - frozen/observed, interval from the Poisson interval of k times the mean freeze duration."""
    if observed_s <= 0:
        return Estimate(None, None, None)
    value = 1 - frozen_s / observed_s
    if mean_duration_s is None:
        return Estimate(value, None, None)
    k_lo, k_hi = poisson_interval(k, confidence)
    return Estimate(value, max(0.0, 1 - k_hi * mean_duration_s / observed_s),
                    min(1.0, 1 - k_lo * mean_duration_s / observed_s))


def mtbf(uptime_s: float, k: int, confidence: float = CONFIDENCE) -> Estimate:
    """Up-time per freeze; with k = 0 only a lower bound exists."""
    alpha = 1 - confidence
    low = uptime_s / gamma_quantile(1 - alpha / 2, k + 1)
    if k == 0:
        return Estimate(None, low, None)
    return Estimate(uptime_s / k, low, uptime_s / gamma_quantile(alpha / 2, k))


def mttr(durations_s: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """Mean repair time with the exact interval for exponential repair times."""
    n = len(durations_s)
    if n == 0:
        return Estimate(None, None, None)
    alpha = 1 - confidence
    total = float(sum(durations_s))
    return Estimate(total / n, total / gamma_quantile(1 - alpha / 2, n), total / gamma_quantile(alpha / 2, n))


@dataclass(frozen=True, slots=True)
class RateComparison:
    """Freeze rate of group 1 over group 2 with its exact conditional test."""

    ratio: float | None
    low: float | None
    high: float | None
    p_value: float | None
    k1: int
    k2: int
    exposure1_days: float
    exposure2_days: float

    def sentence(self, name1: str = "containers", name2: str = "VMs", level: float = 0.05) -> str:
        """'containers freeze less than VMs (p=...)' or 'not yet significant (...)'."""
        if self.p_value is None:
            return f"{name1} vs {name2}: no freezes yet, nothing to compare"
        ci = f"rate ratio {_num(self.ratio)} [{_num(self.low)}, {_num(self.high)}]"
        if self.p_value < level and self.ratio is not None and self.ratio < 1:
            return f"{name1} freeze less than {name2} (p={self.p_value:.2g}, {ci})"
        if self.p_value < level:
            return f"{name1} freeze more than {name2} (p={self.p_value:.2g}, {ci})"
        return f"{name1} vs {name2}: not yet significant (p={self.p_value:.2g}, {ci})"


def compare_rates(k1: int, e1_days: float, k2: int, e2_days: float,
                  confidence: float = CONFIDENCE) -> RateComparison:
    """Rate ratio (k1/e1)/(k2/e2), Clopper-Pearson based interval, exact conditional binomial p-value."""
    n = k1 + k2
    if n == 0 or e1_days <= 0 or e2_days <= 0:
        return RateComparison(None, None, None, None, k1, k2, e1_days, e2_days)
    p0 = e1_days / (e1_days + e2_days)
    p_value = binomial_two_sided_p(k1, n, p0)
    lo, hi = clopper_pearson(k1, n, confidence)
    scale = e2_days / e1_days

    def to_ratio(p: float) -> float | None:
        return None if p >= 1 else p / (1 - p) * scale

    ratio = None if k2 == 0 else (k1 / e1_days) / (k2 / e2_days)
    return RateComparison(ratio, to_ratio(lo), to_ratio(hi), p_value, k1, k2, e1_days, e2_days)


# =========================================================================== data

@dataclass(frozen=True, slots=True)
class FreezeRecord:
    """One `freeze` point."""

    box: str
    kind: str
    start_ms: int
    layer: str
    duration_s: float
    open: bool


@dataclass(frozen=True, slots=True)
class BoxRecord:
    """Cycles observed for one box."""

    box: str
    kind: str
    cycles: int
    up_cycles: int


@dataclass(frozen=True, slots=True)
class Bucket:
    """Cycles of one kind in one time bucket (for the availability-over-time chart)."""

    start_ms: int
    kind: str
    cycles: int
    up_cycles: int


@dataclass(frozen=True)
class FleetObservation:
    """Everything the report reads from InfluxDB for [start_ms, end_ms)."""

    start_ms: int
    end_ms: int
    interval_s: float
    site: str | None
    boxes: tuple[BoxRecord, ...]
    freezes: tuple[FreezeRecord, ...]
    buckets: tuple[Bucket, ...]
    bucket_s: int
    remediations: dict[str, tuple[int, int]] = field(default_factory=dict)  # action -> (actions, recovered)


def _where(start_ms: int, end_ms: int, site: str | None) -> str:
    w = f"time >= {int(start_ms)}ms AND time < {int(end_ms)}ms"
    if site:
        w += " AND \"site\" = '" + site.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return w


def read_fleet(query: Callable[[str], list[dict]], start_ms: int, end_ms: int, interval_s: float,
               site: str | None = None) -> FleetObservation:
    """Read box cycles, freezes, daily buckets and remediations with InfluxQL through `query(q) -> rows`."""
    w = _where(start_ms, end_ms, site)
    boxes = tuple(sorted(
        (BoxRecord(r["box"], r["kind"], int(r["cycles"] or 0), int(r["up"] or 0))
         for r in query(f'SELECT count("up") AS "cycles", sum("up") AS "up" FROM "box" WHERE {w} '
                        'GROUP BY "box", "kind"')), key=lambda b: (b.kind, b.box)))
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
    return FleetObservation(start_ms, end_ms, interval_s, site, boxes, freezes, buckets, bucket_s, remediations)


# =========================================================================== the report

@dataclass(frozen=True, slots=True)
class GroupStats:
    """Stability of one kind or one box."""

    name: str
    kind: str
    boxes: int
    box_days: float
    availability: Estimate
    freezes: int
    open_freezes: int
    rate_per_box_day: Estimate
    mtbf_s: Estimate
    mttr_s: Estimate
    freezes_by_layer: dict[str, int]


@dataclass(frozen=True)
class Report:
    """The whole report: per kind, per box, the comparison, and the raw observation (for charts)."""

    observation: FleetObservation
    kinds: tuple[GroupStats, ...]
    boxes: tuple[GroupStats, ...]
    comparison: RateComparison


def _group(name: str, kind: str, boxes: Sequence[BoxRecord], freezes: Sequence[FreezeRecord],
           interval_s: float, fallback_duration_s: float | None) -> GroupStats:
    observed_s = sum(b.cycles for b in boxes) * interval_s
    frozen_s = sum(b.cycles - b.up_cycles for b in boxes) * interval_s
    k = len(freezes)
    mean_d = frozen_s / k if k and frozen_s > 0 else (sum(f.duration_s for f in freezes) / k if k else
                                                       fallback_duration_s)
    box_days = observed_s / DAY_S
    by_layer = {layer: sum(1 for f in freezes if f.layer == layer) for layer in LAYERS}
    return GroupStats(name, kind, len(boxes), box_days, availability(observed_s, frozen_s, k, mean_d), k,
                      sum(1 for f in freezes if f.open), rate_per_day(k, box_days),
                      mtbf(observed_s - frozen_s, k), mttr([f.duration_s for f in freezes if not f.open]), by_layer)


def build_report(obs: FleetObservation) -> Report:
    """Statistics per kind and per box and the containers-vs-VMs comparison."""
    all_closed = [f.duration_s for f in obs.freezes if not f.open]
    fallback = sum(all_closed) / len(all_closed) if all_closed else None
    kinds = []
    for kind in sorted({b.kind for b in obs.boxes} | set(KINDS)):
        bs = [b for b in obs.boxes if b.kind == kind]
        if not bs:
            continue
        kinds.append(_group(KIND_LABELS.get(kind, kind), kind, bs, [f for f in obs.freezes if f.kind == kind], obs.interval_s, fallback))
    boxes = tuple(_group(b.box, b.kind, [b], [f for f in obs.freezes if f.box == b.box], obs.interval_s, fallback)
                  for b in obs.boxes)
    by = {g.kind: g for g in kinds}
    c, v = by.get("container"), by.get("vm")
    comparison = compare_rates(c.freezes if c else 0, c.box_days if c else 0.0,
                               v.freezes if v else 0, v.box_days if v else 0.0)
    return Report(obs, tuple(kinds), boxes, comparison)


# =========================================================================== formatting

def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


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
             fmt_estimate(g.mttr_s, fmt_duration)] for g in groups]


HEADERS = ["", "kind", "boxes", "box-days", "availability [95%]", "freezes", "freezes/box-day [95%]",
           "MTBF [95%]", "MTTR [95%]"]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def render_text(report: Report) -> str:
    """The terminal report."""
    obs = report.observation
    table = [HEADERS] + rows_for(report.kinds) + [[""] * len(HEADERS)] + rows_for(report.boxes)
    widths = [max(len(r[i]) for r in table) for i in range(len(HEADERS))]
    lines = [f"vobox stability {_iso(obs.start_ms)} .. {_iso(obs.end_ms)}"
             + (f"  site {obs.site}" if obs.site else "") + f"  (cycle {obs.interval_s:g}s)", ""]
    for r in table:
        lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    lines += ["", report.comparison.sentence()]
    if obs.remediations:
        parts = [f"{a} {n} ({rec}/{n} recovered)" for a, (n, rec) in sorted(obs.remediations.items())]
        lines.append("remediations: " + ", ".join(parts))
    lines.append("intervals: exact Poisson on the number of freezes (cycles are autocorrelated; freezes are the "
                 "events); MTTR assumes exponential repair times")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- HTML with inline SVG

_COLORS = {"container": "#1f77b4", "vm": "#d62728", "l2": "#9467bd", "l3": "#ff7f0e", "l4": "#2ca02c", "?": "#7f7f7f"}
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
            body.append(f'<rect x="{_L + i * slot + slot * 0.15:.1f}" y="{y1:.1f}" width="{slot * 0.7:.1f}" '
                        f'height="{y0 - y1:.1f}" fill="{_COLORS[layer]}"><title>{time.strftime("%Y-%m-%d", time.gmtime(d / 1000))}'
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
        body.append(f'<rect x="{cx - slot * 0.2:.1f}" y="{y_of(v):.1f}" width="{slot * 0.4:.1f}" '
                    f'height="{y_of(0) - y_of(v):.1f}" fill="{_COLORS.get(g.kind, "#333")}" opacity="0.8">'
                    f'<title>{g.name}: {fmt_estimate(g.mttr_s, fmt_duration)}</title></rect>')
        if lo is not None and hi is not None:
            body.append(f'<line x1="{cx:.1f}" y1="{y_of(min(hi, top)):.1f}" x2="{cx:.1f}" y2="{y_of(lo):.1f}" '
                        f'stroke="#000"/><line x1="{cx - 8:.1f}" y1="{y_of(min(hi, top)):.1f}" x2="{cx + 8:.1f}" '
                        f'y2="{y_of(min(hi, top)):.1f}" stroke="#000"/><line x1="{cx - 8:.1f}" y1="{y_of(lo):.1f}" '
                        f'x2="{cx + 8:.1f}" y2="{y_of(lo):.1f}" stroke="#000"/>')
        body.append(f'<text x="{cx + slot * 0.22:.1f}" y="{y_of(v) - 4:.1f}" font-size="11">'
                    f'{html.escape(fmt_duration(v))} (n={sum(1 for f in report.observation.freezes if f.kind == g.kind and not f.open)})</text>')
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
    title = f"vobox stability {_iso(obs.start_ms)} .. {_iso(obs.end_ms)}" + (f" - site {obs.site}" if obs.site else "")
    freeze_rows = [[_iso(f.start_ms), f.box, f.kind, f.layer, fmt_duration(f.duration_s), "open" if f.open else ""]
                   for f in sorted(obs.freezes, key=lambda f: f.start_ms, reverse=True)]
    rem_rows = [[a, str(n), str(rec), fmt_pct(rec / n if n else None)] for a, (n, rec) in sorted(obs.remediations.items())]
    parts = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class=\"verdict\">{html.escape(report.comparison.sentence())}</p>",
        "<h2>Per kind</h2>", _html_table(HEADERS, rows_for(report.kinds)),
        chart_availability(report), chart_freezes_per_day(report), chart_mttr(report),
        "<h2>Per box</h2>", _html_table(HEADERS, rows_for(report.boxes)),
        f"<h2>Freezes ({len(freeze_rows)}{', the last ' + str(MAX_FREEZE_ROWS) + ' shown' if len(freeze_rows) > MAX_FREEZE_ROWS else ''})</h2>",
        _html_table(["start", "box", "kind", "layer", "duration", ""], freeze_rows[:MAX_FREEZE_ROWS]),
    ]
    if rem_rows:
        parts += ["<h2>Remediations</h2>", _html_table(["action", "actions", "recovered", "success"], rem_rows)]
    parts.append(f"<p class=\"note\">cycle {obs.interval_s:g}s. Intervals are 95%: exact Poisson on the number of "
                 "freezes (cycles are autocorrelated, freezes are the independent events); availability's interval "
                 "scales the count's interval by the mean freeze duration; MTTR assumes exponential repair times; "
                 "the container/VM comparison is the exact conditional binomial test on the two freeze counts "
                 "given their box-days.</p></body></html>\n")
    return "".join(parts)
