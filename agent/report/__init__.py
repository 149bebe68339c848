"""Stability report: availability, freezes, MTBF and MTTR per kind and per box, each with a 95% interval.

Rooms: stats.py (pure statistics, stdlib only), read.py (InfluxQL `/query` reads through agent.storage.read,
so it works wherever the agent writes), text.py (terminal), html.py (HTML with inline SVG charts).

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

from agent.report.html import MAX_FREEZE_ROWS, chart_availability, chart_freezes_per_day, chart_mttr, render_html
from agent.report.read import ReportSource, read_fleet, source_from_config
from agent.report.stats import (
                                CONFIDENCE,
                                DAY_S,
                                KIND_LABELS,
                                KINDS,
                                LAYERS,
                                BoxRecord,
                                Bucket,
                                Estimate,
                                FleetObservation,
                                FreezeRecord,
                                GroupStats,
                                RateComparison,
                                Report,
                                availability,
                                binomial_pmf,
                                binomial_two_sided_p,
                                build_report,
                                clopper_pearson,
                                compare_rates,
                                gamma_quantile,
                                mtbf,
                                mttr,
                                poisson_interval,
                                rate_per_day,
                                regularized_gamma_p,
)
from agent.report.text import HEADERS, fmt_duration, fmt_estimate, fmt_pct, render_text, rows_for

__all__ = [
    "CONFIDENCE", "DAY_S", "HEADERS", "KIND_LABELS", "KINDS", "LAYERS", "MAX_FREEZE_ROWS", "Bucket", "BoxRecord",
    "Estimate", "FleetObservation", "FreezeRecord", "GroupStats", "RateComparison", "Report", "ReportSource",
    "availability", "binomial_pmf", "binomial_two_sided_p", "build_report", "chart_availability",
    "chart_freezes_per_day", "chart_mttr", "clopper_pearson", "compare_rates", "fmt_duration", "fmt_estimate",
    "fmt_pct", "gamma_quantile", "mtbf", "mttr", "poisson_interval", "rate_per_day", "read_fleet",
    "regularized_gamma_p", "render_html", "render_text", "rows_for", "source_from_config",
]
