"""Stability statistics: 95% intervals for availability, freeze rate, MTBF, MTTR, and containers vs VMs.

Pure functions (stdlib only; box kinds and layers from their one place), from a FleetObservation to a
Report; see agent.report for why these intervals.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist

from agent.core.config import BOX_KINDS as KINDS
from agent.core.events import BoxKind
from probes import LAYERS

CONFIDENCE = 0.95
DAY_S = 86400.0
KIND_LABELS: dict[str, str] = {BoxKind.CONTAINER: "all containers", BoxKind.VM: "all VMs"}  # StrEnum keys: "vm" finds VM


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
    """x with P(shape, x) = p (unit scale); chi2(p, k) = 2 * gamma_quantile(p, k/2).

    Newton steps on P (its derivative is the gamma density) kept inside a bisection bracket
    (Numerical Recipes' rtsafe), from the Wilson-Hilferty approximation: a handful of evaluations of P instead
    of ~45 by bisection alone, the same 1e-12 relative tolerance.
    """
    if not 0 < p < 1:
        raise ValueError(f"probability must be in (0, 1), got {p}")
    lo, hi = 0.0, max(1.0, shape)
    while regularized_gamma_p(shape, hi) < p:
        lo, hi = hi, hi * 2
    log_norm = math.lgamma(shape)
    # From shape 5 on, start from the Wilson-Hilferty approximation (relative error below 1e-3 there): half the
    # evaluations of P of a start from the mean; below, and when it falls outside the bracket, from the mean.
    cube = 1 - 1 / (9 * shape) + NormalDist().inv_cdf(p) / (3 * math.sqrt(shape))
    guess = shape * cube ** 3 if shape >= 5 and cube > 0 else shape
    x = guess if lo < guess < hi else min(max(shape, lo), hi)
    for _ in range(200):
        f = regularized_gamma_p(shape, x) - p
        if f < 0:
            lo = x
        else:
            hi = x
        density = math.exp((shape - 1) * math.log(x) - x - log_norm) if x > 0 else 0.0
        step = f / density if density > 0 else math.inf
        nxt = x - step
        if not lo < nxt < hi:     # Newton would leave the bracket: bisect
            nxt = (lo + hi) / 2
        if abs(nxt - x) <= 1e-12 * max(1.0, nxt) or hi - lo <= 1e-12 * max(1.0, hi):
            return nxt
        x = nxt
    return x


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
            if hi - lo <= 1e-12 * hi:   # the tolerance of gamma_quantile; bisecting on adds nothing a report shows
                break
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
    """1 - frozen/observed, with an interval for both uncertainties in the unavailability k x mean duration.

    Unavailability U = frozen/observed ~ (freeze rate) x (mean duration). On the log scale the
    two uncertainties add: the exact Poisson interval of k and the exact interval of the mean of
    k exponential durations (as mttr()); each side's half-width is the root of the sum of squares.
    Checked by simulation (tests/agent/report/test_coverage.py): coverage 95-97 % over fleets of
    3-50 boxes. Undefined (None) without a freeze, where no duration was ever seen.
    """
    if observed_s <= 0:
        return Estimate(None, None, None)
    value = 1 - frozen_s / observed_s
    if mean_duration_s is None or k <= 0 or frozen_s <= 0 or mean_duration_s <= 0:
        return Estimate(value, None, None)
    u = frozen_s / observed_s
    k_lo, k_hi = poisson_interval(k, confidence)
    alpha = 1 - confidence
    # mean of k exponential durations: total / Gamma(k, 1) quantiles (see mttr)
    d_lo = k / gamma_quantile(1 - alpha / 2, k)
    d_hi = k / gamma_quantile(alpha / 2, k)
    down = math.hypot(math.log(k / k_lo), math.log(1 / d_lo))
    up = math.hypot(math.log(k_hi / k), math.log(d_hi))
    return Estimate(value, max(0.0, 1 - u * math.exp(up)), min(1.0, 1 - u * math.exp(-down)))


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
    """Cycles observed for one box (cycles: judged ones, with an up; maintenance_cycles: in a maintenance window,
    left out of cycles)."""

    box: str
    kind: str
    cycles: int
    up_cycles: int
    judged_cycles: int = 0      # cycles with the raw verdict `healthy` (0 for data written before it existed)
    healthy_cycles: int = 0     # of those, the ones in which every probe answered
    degraded: bool = False      # degraded (flapping or lossy, agent.core.flapping) at some cycle of the range
    max_percent_state_change: float | None = None
    maintenance_cycles: int = 0


@dataclass(frozen=True, slots=True)
class Bucket:
    """Cycles of one kind in one time bucket (for the availability-over-time chart)."""

    start_ms: int
    kind: str
    cycles: int
    up_cycles: int


@dataclass(frozen=True, slots=True)
class SegmentOutage:
    """One `segment_freeze` point: many boxes of a segment down together (a switch or link, not the boxes)."""

    segment: str
    start_ms: int
    layer: str
    duration_s: float
    open: bool
    box_names: tuple[str, ...]

    def holds(self, f: FreezeRecord) -> bool:
        """Whether a box freeze is part of this outage: its box is one of the outage's, starting inside it."""
        end_ms = self.start_ms + self.duration_s * 1000 if not self.open else float("inf")
        # the box freezes open a cycle or so before the segment's is recognised: allow 30 s before its start
        return f.box in self.box_names and self.start_ms - 30_000 <= f.start_ms <= end_ms


@dataclass(frozen=True, slots=True)
class ClassPeriod:
    """From start_ms on (until the box's next period), the box's audit class (an `audit_box` point's)."""

    box: str
    start_ms: int
    audit_class: str


@dataclass(frozen=True, slots=True)
class ClassSlice:
    """A box's cycles (as BoxRecord's cycles, up_cycles) while one audit class was in force."""

    box: str
    kind: str
    audit_class: str
    cycles: int
    up_cycles: int


# the classes of agent.audit.AuditClass, in the report's order; "unknown": no audit in force (never "default")
AUDIT_CLASSES: tuple[str, ...] = ("privileged", "elevated", "default", "unknown")


def class_at(periods: Sequence[ClassPeriod], box: str, t_ms: int) -> str:
    """The audit class of BOX in force at t_ms: its latest period starting at or before t_ms, else unknown."""
    best: ClassPeriod | None = None
    for p in periods:
        if p.box == box and p.start_ms <= t_ms and (best is None or p.start_ms >= best.start_ms):
            best = p
    return best.audit_class if best is not None else "unknown"


def class_windows(periods: Sequence[ClassPeriod], box: str, start_ms: int, end_ms: int) -> list[tuple[int, int, str]]:
    """[start, end) windows of [start_ms, end_ms) with BOX's class in each (adjacent equal classes merged)."""
    cuts = sorted({p.start_ms for p in periods if p.box == box and start_ms < p.start_ms < end_ms})
    edges = [start_ms, *cuts, end_ms]
    out: list[tuple[int, int, str]] = []
    for a, b in zip(edges, edges[1:], strict=False):
        cls = class_at(periods, box, a)
        if out and out[-1][2] == cls:
            out[-1] = (out[-1][0], b, cls)
        else:
            out.append((a, b, cls))
    return out


@dataclass(frozen=True)
class ClassSplit:
    """The container/VM comparison split by the containers' audit class: per class, the containers' stability
    while in that class (exposure and freezes counted for the class in force at the time) and its comparison
    with all VMs, with the same intervals as the kinds'."""

    groups: tuple[GroupStats, ...]
    comparisons: dict[str, RateComparison]


def split_by_audit_class(obs: FleetObservation, fallback_duration_s: float | None = None) -> ClassSplit | None:
    """ClassSplit of an observation with class slices (None without): each container class's cycles from its
    slices, its freezes those that started while the class was in force; VMs are the reference, whole."""
    if not obs.class_slices:
        return None
    vms = [b for b in obs.boxes if b.kind == BoxKind.VM]
    vm_freezes = [f for f in obs.freezes if f.kind == BoxKind.VM]
    vm = _group(KIND_LABELS[BoxKind.VM], BoxKind.VM, vms, vm_freezes, obs.interval_s, fallback_duration_s) \
        if vms else None
    groups, comparisons = [], {}
    for cls in AUDIT_CLASSES:
        slices = [s for s in obs.class_slices if s.kind == BoxKind.CONTAINER and s.audit_class == cls]
        if not slices:
            continue
        records = [BoxRecord(f"{s.box}", s.kind, s.cycles, s.up_cycles) for s in slices]
        freezes = [f for f in obs.freezes if f.kind == BoxKind.CONTAINER
                   and class_at(obs.audit_periods, f.box, f.start_ms) == cls]
        g = _group(f"containers {cls}", BoxKind.CONTAINER, records, freezes, obs.interval_s, fallback_duration_s)
        groups.append(replace(g, boxes=len({s.box for s in slices})))
        comparisons[cls] = compare_rates(g.freezes, g.box_days, vm.freezes if vm else 0, vm.box_days if vm else 0.0)
    if vm is not None:
        groups.append(vm)
    return ClassSplit(tuple(groups), comparisons)


@dataclass(frozen=True)
class NameHistory:
    """A box by name over the range (its `name` points, agent.resolve): the hostname, the addresses it was probed
    at in order, how often it resolved elsewhere, how often it stopped resolving, its last resolver state."""

    box: str
    hostname: str
    addresses: tuple[str, ...]
    address_changes: int
    not_resolving: int     # state changes to nxdomain, servfail, timeout, refused or error
    last_state: str


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
    first_ms: int | None = None    # the first and last `box` point: the span the data really covers
    last_ms: int | None = None
    cycles: int | None = None      # the agent's probe cycles in the range (its `agent` points)
    segment_outages: tuple[SegmentOutage, ...] = ()
    # the isolation audit (agent.audit): each box's class from each audit on (`audit_box` points), and the
    # boxes' cycles cut where their class changed; empty: no split (data without audits)
    audit_periods: tuple[ClassPeriod, ...] = ()
    class_slices: tuple[ClassSlice, ...] = ()
    names: tuple[NameHistory, ...] = ()   # boxes by name (their `name` points)

    @property
    def observed_s(self) -> float:
        """Seconds from the first to the last point (plus one cycle: a point stands for its cycle); 0 without data."""
        if self.first_ms is None or self.last_ms is None:
            return 0.0
        return (self.last_ms - self.first_ms) / 1000 + self.interval_s


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
    # every failed cycle counted (mean of `healthy`), not only freezes; None without `healthy` data
    availability_all_failures: float | None = None
    failed_cycles: int = 0      # cycles that failed (healthy=0), lone ones too
    down_cycles: int = 0        # cycles inside freezes (up=0)
    degraded_boxes: tuple[str, ...] = ()
    maintenance_s: float = 0.0     # time in maintenance windows: shown, left out of every figure above


@dataclass(frozen=True)
class Report:
    """The whole report: per kind, per box, the comparison, and the raw observation (for charts)."""

    observation: FleetObservation
    kinds: tuple[GroupStats, ...]
    boxes: tuple[GroupStats, ...]
    comparison: RateComparison
    # the comparison without the box freezes that are part of segment outages; None when there are none
    comparison_without_segments: RateComparison | None = None
    segment_freezes: int = 0       # box freezes inside segment outages
    by_audit_class: ClassSplit | None = None   # the comparison split by audit class (None: no audit data read)


def _group(name: str, kind: str, boxes: Sequence[BoxRecord], freezes: Sequence[FreezeRecord],
           interval_s: float, fallback_duration_s: float | None) -> GroupStats:
    observed_s = sum(b.cycles for b in boxes) * interval_s
    frozen_s = sum(b.cycles - b.up_cycles for b in boxes) * interval_s
    k = len(freezes)
    mean_d = frozen_s / k if k and frozen_s > 0 else (sum(f.duration_s for f in freezes) / k if k else
                                                       fallback_duration_s)
    box_days = observed_s / DAY_S
    by_layer = {layer: sum(1 for f in freezes if f.layer == layer) for layer in LAYERS}
    judged = sum(b.judged_cycles for b in boxes)
    healthy = sum(b.healthy_cycles for b in boxes)
    return GroupStats(name, kind, len(boxes), box_days, availability(observed_s, frozen_s, k, mean_d), k,
                      sum(1 for f in freezes if f.open), rate_per_day(k, box_days),
                      mtbf(observed_s - frozen_s, k), mttr([f.duration_s for f in freezes if not f.open]), by_layer,
                      healthy / judged if judged else None, judged - healthy,
                      sum(b.cycles - b.up_cycles for b in boxes), tuple(b.box for b in boxes if b.degraded),
                      sum(b.maintenance_cycles for b in boxes) * interval_s)


def build_report(obs: FleetObservation) -> Report:
    """Statistics per kind and per box and the containers-vs-VMs comparison."""
    all_closed = [f.duration_s for f in obs.freezes if not f.open]
    fallback = sum(all_closed) / len(all_closed) if all_closed else None
    kinds = []
    for kind in sorted({b.kind for b in obs.boxes} | set(KINDS)):
        bs = [b for b in obs.boxes if b.kind == kind]
        if not bs:
            continue
        freezes = [f for f in obs.freezes if f.kind == kind]
        kinds.append(_group(KIND_LABELS.get(kind, kind), kind, bs, freezes, obs.interval_s, fallback))
    boxes = tuple(_group(b.box, b.kind, [b], [f for f in obs.freezes if f.box == b.box], obs.interval_s, fallback)
                  for b in obs.boxes)
    by = {g.kind: g for g in kinds}
    c, v = by.get(BoxKind.CONTAINER), by.get(BoxKind.VM)
    comparison = compare_rates(c.freezes if c else 0, c.box_days if c else 0.0,
                               v.freezes if v else 0, v.box_days if v else 0.0)
    in_segment = [f for f in obs.freezes if any(o.holds(f) for o in obs.segment_outages)]
    without = None
    if obs.segment_outages:
        rest = [f for f in obs.freezes if f not in in_segment]
        without = compare_rates(sum(1 for f in rest if f.kind == BoxKind.CONTAINER), c.box_days if c else 0.0,
                                sum(1 for f in rest if f.kind == BoxKind.VM), v.box_days if v else 0.0)
    return Report(obs, tuple(kinds), boxes, comparison, without, len(in_segment),
                  split_by_audit_class(obs, fallback))


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"
