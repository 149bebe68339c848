"""The report's 95 % intervals checked by simulation, as a physicist would: over many simulated fleets with
known freeze rates and durations, each interval must cover the truth about 95 % of the time.

Freezes arrive as a Poisson process per box, durations are exponential; each fleet is one report's data.
The coverage printed is the figure (run with -s to see it); the bounds allow for simulation noise
(1000 fleets: a standard error of 0.7 points at 95 %) and for exact intervals being conservative.
"""
from __future__ import annotations

import random

import pytest

from agent.report import stats as S

FLEETS = 1000
DAY_S = 86400.0


def _fleet(rng: random.Random, boxes: int, days: float, rate_per_day: float, mean_s: float,
           maint_every_s: float | None = None, maint_s: float = 0.0):
    """(freezes, frozen seconds, durations, up seconds) of one simulated fleet, maintenance left out.

    With MAINT_EVERY_S, each box has a maintenance window of MAINT_S seconds every MAINT_EVERY_S
    (at a random phase) as the agent keeps it (agent.core.maintenance, agent.core.freeze): a freeze
    open when a window starts ends there, none opens inside one, and the window's time is not observed.
    """
    durations: list[float] = []
    observed = 0.0
    for _ in range(boxes):
        end = days * DAY_S
        windows: list[tuple[float, float]] = []
        if maint_every_s:
            w = rng.uniform(0, maint_every_s)
            while w < end:
                windows.append((w, min(w + maint_s, end)))
                w += maint_every_s
        observed += end - sum(b - a for a, b in windows)
        t = 0.0
        while True:
            t += rng.expovariate(rate_per_day / DAY_S)
            inside = next(((a, b) for a, b in windows if a <= t < b), None)
            if inside is not None:   # no freeze opens in a window: the process resumes after it
                t = inside[1]
                continue
            if t >= end:
                break
            stop = min([end] + [a for a, _ in windows if a > t])   # a window starting ends the freeze
            d = min(rng.expovariate(1 / mean_s), stop - t)
            durations.append(d)
            t += d
    frozen = sum(durations)
    return len(durations), frozen, durations, observed - frozen


@pytest.mark.parametrize("boxes, days, rate_per_day, mean_s", [
    pytest.param(10, 14, 0.2, 600, id="10-boxes-2-weeks"),
    pytest.param(20, 30, 0.05, 1800, id="20-boxes-rare-long"),
    pytest.param(5, 7, 0.5, 120, id="5-boxes-frequent-short"),
    pytest.param(50, 30, 1.0, 60, id="50-boxes-many"),
])
def test_availability_and_rate_intervals_cover_the_truth(boxes, days, rate_per_day, mean_s):
    _check_coverage(boxes, days, rate_per_day, mean_s)


@pytest.mark.parametrize("boxes, days, rate_per_day, mean_s, every_s, window_s", [
    pytest.param(10, 14, 0.5, 1800, 3.5 * DAY_S, 4 * 3600, id="10-boxes-twice-weekly-4h"),
    pytest.param(20, 30, 0.2, 600, DAY_S, 3600, id="20-boxes-daily-1h"),
])
def test_intervals_cover_the_truth_with_maintenance_left_out(boxes, days, rate_per_day, mean_s, every_s, window_s):
    """Maintenance windows removed from the exposure (as the report does): the intervals still cover."""
    _check_coverage(boxes, days, rate_per_day, mean_s, every_s, window_s)


def _check_coverage(boxes, days, rate_per_day, mean_s, every_s=None, window_s=0.0):
    rng = random.Random(f"{boxes}-{days}-{rate_per_day}-{mean_s}-{every_s}")
    true_unavail = rate_per_day * mean_s / DAY_S / (1 + rate_per_day * mean_s / DAY_S)
    covered_a = covered_r = judged_a = 0
    for _ in range(FLEETS):
        k, frozen, durations, up_s = _fleet(rng, boxes, days, rate_per_day, mean_s, every_s, window_s)
        a = S.availability(up_s + frozen, frozen, k, frozen / k if k else None)
        if a.low is not None:
            judged_a += 1
            covered_a += a.low <= 1 - true_unavail <= a.high
        r = S.rate_per_day(k, up_s / DAY_S)
        covered_r += r.low <= rate_per_day <= r.high
    cov_a, cov_r = covered_a / judged_a, covered_r / FLEETS
    maint = f", maintenance {window_s / 3600:g} h every {every_s / DAY_S:g} d" if every_s else ""
    print(f"\ncoverage over {FLEETS} fleets ({boxes} boxes, {days} d, {rate_per_day}/box-day, {mean_s} s{maint}): "
          f"availability {cov_a:.3f}, freeze rate {cov_r:.3f}")
    assert 0.93 <= cov_a <= 0.99
    assert 0.93 <= cov_r <= 0.99


def test_container_vm_rate_ratio_interval_covers_the_truth():
    rng = random.Random("ratio")
    covered = judged = 0
    true_ratio = 0.1 / 0.3   # containers freeze three times less than VMs
    for _ in range(FLEETS):
        k1, _, _, up1 = _fleet(rng, 10, 14, 0.1, 300)
        k2, _, _, up2 = _fleet(rng, 5, 14, 0.3, 300)
        c = S.compare_rates(k1, up1 / DAY_S, k2, up2 / DAY_S)
        if c.low is None or c.high is None:
            continue
        judged += 1
        covered += c.low <= true_ratio <= c.high
    print(f"\nrate ratio coverage over {judged} fleets: {covered / judged:.3f}")
    assert judged > 0.9 * FLEETS
    assert 0.93 <= covered / judged <= 0.995


def test_the_old_availability_interval_would_have_failed_this_check():
    """The check has teeth: an interval from the count alone (duration taken as known) undercovers."""
    rng = random.Random("teeth")
    true_unavail = 0.5 * 120 / DAY_S / (1 + 0.5 * 120 / DAY_S)
    covered = judged = 0
    for _ in range(FLEETS):
        k, frozen, _, _ = _fleet(rng, 5, 7, 0.5, 120)
        if k == 0:
            continue
        k_lo, k_hi = S.poisson_interval(k)
        obs = 5 * 7 * DAY_S
        lo, hi = 1 - k_hi * (frozen / k) / obs, 1 - k_lo * (frozen / k) / obs
        judged += 1
        covered += lo <= 1 - true_unavail <= hi
    assert covered / judged < 0.9
