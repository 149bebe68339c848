"""agent.report: the pure statistics against known values, and the report on the lab InfluxDB after a real agent run."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest

from agent import report as r
from tests.grafana.fleet_data import (BOXES, DATABASE, INTERVAL_S, KINDS, SITE, Span, _entered,  # noqa: F401
                                      fleet_data)  # the session fixture (one agent run per lab, shared with tests/grafana)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


# ----------------------------------------------------------------------------- pure statistics

@pytest.mark.parametrize("a,x", [(1, 0.5), (1, 3.0), (0.5, 0.2), (0.5, 4.0), (3, 2.5), (10, 12.0), (50, 40.0)])
def test_regularized_gamma_p_closed_forms(a, x):
    if a == 1:
        want = 1 - math.exp(-x)
    elif a == 0.5:
        want = math.erf(math.sqrt(x))
    else:  # integer a: 1 - e^-x sum_{i<a} x^i/i!
        want = 1 - math.exp(-x) * sum(x ** i / math.factorial(i) for i in range(a))
    assert r.regularized_gamma_p(a, x) == pytest.approx(want, rel=1e-10, abs=1e-14)


@pytest.mark.parametrize("p,df,chi2", [(0.975, 2, 7.377759), (0.025, 2, 0.050636), (0.95, 10, 18.307038),
                                       (0.05, 1, 0.00393214), (0.5, 30, 29.335963)])
def test_gamma_quantile_gives_chi_square_table_values(p, df, chi2):
    assert 2 * r.gamma_quantile(p, df / 2) == pytest.approx(chi2, rel=1e-5)


@pytest.mark.parametrize("k,lo,hi", [(0, 0.0, 3.6889), (1, 0.0253, 5.5716), (5, 1.6235, 11.6683),
                                     (10, 4.7954, 18.3904)])
def test_poisson_interval_garwood(k, lo, hi):
    got = r.poisson_interval(k)
    assert got == pytest.approx((lo, hi), abs=1e-4)


@pytest.mark.parametrize("k", [1, 3, 30, 100, 400])
def test_poisson_interval_tails_are_2_5_percent(k):
    """Independent check by summing Poisson probabilities: P(X >= k | lo) = P(X <= k | hi) = 0.025."""
    lo, hi = r.poisson_interval(k)

    def cdf(n, mu):
        return sum(math.exp(i * math.log(mu) - mu - math.lgamma(i + 1)) for i in range(n + 1))

    assert 1 - cdf(k - 1, lo) == pytest.approx(0.025, abs=1e-9)
    assert cdf(k, hi) == pytest.approx(0.025, abs=1e-9)


@pytest.mark.parametrize("k,n,lo,hi", [(5, 10, 0.187086, 0.812914), (0, 10, 0.0, 0.308497), (10, 10, 0.691503, 1.0),
                                       (1, 20, 0.001265, 0.248733)])
def test_clopper_pearson(k, n, lo, hi):
    assert r.clopper_pearson(k, n) == pytest.approx((lo, hi), abs=1e-6)


@pytest.mark.parametrize("k,n,p0,p", [(2, 10, 0.5, 0.109375), (0, 10, 0.5, 0.001953125), (5, 10, 0.5, 1.0)])
def test_binomial_two_sided_p(k, n, p0, p):
    assert r.binomial_two_sided_p(k, n, p0) == pytest.approx(p, abs=1e-12)


@pytest.mark.parametrize("k,n,p0", [(3, 20, 0.3), (0, 7, 0.2), (15, 40, 0.25), (40, 50, 0.6)])
def test_binomial_two_sided_p_by_exact_fractions(k, n, p0):
    """Independent: exact rational arithmetic with math.comb."""
    from fractions import Fraction
    q = Fraction(p0).limit_denominator(1000)
    pmf = [math.comb(n, i) * q ** i * (1 - q) ** (n - i) for i in range(n + 1)]
    want = float(sum(x for x in pmf if x <= pmf[k]))
    assert r.binomial_two_sided_p(k, n, float(q)) == pytest.approx(want, rel=1e-9)


def test_compare_rates_significant_and_not():
    sig = r.compare_rates(2, 100.0, 20, 100.0)
    assert sig.ratio == pytest.approx(0.1) and sig.low < 0.1 < sig.high < 1
    assert sig.sentence().startswith("containers freeze less than VMs (p=0.0001")
    more = r.compare_rates(20, 100.0, 2, 100.0)
    assert more.sentence().startswith("containers freeze more than VMs")
    same = r.compare_rates(5, 1.0, 5, 1.0)
    assert same.p_value == pytest.approx(1.0) and "not yet significant" in same.sentence()
    # exposure matters: 4 vs 8 freezes is no difference when VMs were watched twice as long
    assert r.compare_rates(4, 10.0, 8, 20.0).ratio == pytest.approx(1.0)
    assert "nothing to compare" in r.compare_rates(0, 1.0, 0, 1.0).sentence()


def test_estimates():
    rate = r.rate_per_day(10, 5.0)
    assert (rate.value, rate.low, rate.high) == pytest.approx((2.0, 4.7954 / 5, 18.3904 / 5), abs=1e-4)
    a = r.availability(observed_s=120.0, frozen_s=20.0, k=1, mean_duration_s=20.0)
    assert a.value == pytest.approx(100 / 120)                     # the 83 %
    assert a.low == pytest.approx(1 - 5.5716 * 20 / 120, abs=1e-4)
    assert a.high == pytest.approx(1 - 0.0253 * 20 / 120, abs=1e-4)
    m = r.mtbf(uptime_s=1000.0, k=0)
    assert m.value is None and m.low == pytest.approx(1000 / 3.6889, rel=1e-4) and m.high is None
    t = r.mttr([10.0, 20.0, 30.0])
    assert t.value == 20.0 and t.low < 20 < t.high
    assert r.mttr([]).value is None


def test_text_and_html_from_a_synthetic_observation():
    obs = r.FleetObservation(0, 2 * 86_400_000, 10.0, "x",
                             (r.BoxRecord("c1", "container", 17280, 17270), r.BoxRecord("v1", "vm", 17280, 17100)),
                             (r.FreezeRecord("c1", "container", 3_600_000, "l4", 100.0, False),
                              r.FreezeRecord("v1", "vm", 7_200_000, "l2", 1800.0, False)),
                             (r.Bucket(0, "container", 8640, 8630), r.Bucket(0, "vm", 8640, 8460)), 86400,
                             {"command": (1, 1)})
    rep = r.build_report(obs)
    text = r.render_text(rep)
    assert "container" in text and "not yet significant" in text and "command 1 (1/1 recovered)" in text
    page = r.render_html(rep)
    assert page.count("<svg") == 3 and "<script" not in page


# ----------------------------------------------------------------------------- on the real run (fleet_data)

def _query(fleet):
    from agent.storage.influx import query

    def run(q):
        with _entered(fleet.netns):
            return query(fleet.influx_url, q, db=fleet.database, epoch="ms")
    return run


def _in(value, span: Span, what: str) -> None:
    assert value in span, f"{what}: {value!r} not in [{span.lo:.4f}, {span.hi:.4f}]"


def test_report_on_fleet_data(fleet_data):  # noqa: F811
    t = fleet_data.truth
    obs = r.read_fleet(_query(fleet_data), fleet_data.start_ms, fleet_data.end_ms, fleet_data.interval_s, SITE)
    assert {b.box: b.cycles for b in obs.boxes} == {b: t.cycles for b in BOXES}
    assert len(obs.freezes) == len(t.freezes) == 8
    assert sorted((f.box, f.layer, f.open) for f in obs.freezes) == sorted((f.box, f.layer, f.open) for f in t.freezes)
    rep = r.build_report(obs)
    kinds = {g.kind: g for g in rep.kinds}
    assert sorted(kinds) == list(KINDS)
    for kind, g in kinds.items():
        n_boxes = sum(1 for k in BOXES.values() if k == kind)
        _in(100 * g.availability.value, t.availability(kind=kind), f"availability of {kind}")
        assert g.availability.low <= g.availability.value <= g.availability.high
        assert g.freezes == len(t.freezes_of(kind=kind))
        _in(g.mttr_s.value, t.mttr_s(kind), f"MTTR of {kind}")
        assert g.mttr_s.low < g.mttr_s.value < g.mttr_s.high
        _in(g.mtbf_s.value, t.mtbf_s(kind), f"MTBF of {kind}")
        assert g.box_days == pytest.approx(n_boxes * t.cycles * INTERVAL_S / 86400)
        assert g.rate_per_box_day.value == pytest.approx(g.freezes / g.box_days)
        assert g.freezes_by_layer == {layer: sum(1 for f in t.freezes_of(kind=kind) if f.layer == layer)
                                      for layer in ("l2", "l3", "l4")}
        assert g.open_freezes == sum(1 for f in t.freezes_of(kind=kind) if f.open)
    assert (kinds["container"].open_freezes, kinds["vm"].open_freezes) == (1, 0)
    boxes = {g.name: g for g in rep.boxes}
    for b in BOXES:
        _in(100 * boxes[b].availability.value, t.availability(box=b), f"availability of {b}")
    # 5 container freezes in 2 box-runs against 3 VM freezes in 1: no evidence either way
    want = r.compare_rates(5, 2 * t.observed_s / 86400, 3, t.observed_s / 86400)
    assert rep.comparison.p_value == pytest.approx(want.p_value)
    assert "not yet significant" in rep.comparison.sentence()
    assert obs.remediations == {"command": (3, 1)}  # vm1: one command recovered it, two did not; ctr2 dry runs
    # another site's view is empty
    assert r.read_fleet(_query(fleet_data), fleet_data.start_ms, fleet_data.end_ms, INTERVAL_S, "elsewhere").boxes == ()


def test_report_command(fleet_data, tmp_path):  # noqa: F811
    t = fleet_data.truth
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'[agent]\ninterval = {INTERVAL_S:g}\nsite = "{SITE}"\n\n[influxdb]\nurl = "{fleet_data.influx_url}"\n'
                   f'database = "{DATABASE}"\n\n[[box]]\nname = "vm1"\nkind = "vm"\nipv4 = "192.0.2.20"\n')
    out_html = tmp_path / "report.html"
    cmd = [sys.executable, "-m", "agent", "--netns", fleet_data.netns, "report", "-c", str(cfg), "--since", "7d",
           "--until", str(fleet_data.end_ms / 1000), "--html", str(out_html)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    kind_rows = {ln.split()[2]: ln for ln in lines if ln.startswith("all ")}
    avail = {k: float(re.search(r"(\d+\.\d+)% \[", v).group(1)) for k, v in kind_rows.items()}
    assert sorted(avail) == list(KINDS)
    for kind, value in avail.items():
        span = t.availability(kind=kind)
        _in(value, Span(span.lo - 1e-3, span.hi + 1e-3), f"report availability of {kind}")
    assert "containers vs VMs: not yet significant (p=" in proc.stdout
    page = out_html.read_text()
    assert page.count("<svg") == 3
    assert "<script" not in page and "<link" not in page
    assert not re.search(r"(src|href)=", page), "the HTML must not load anything"
    # a bad --since is a usage error naming the accepted forms
    bad = subprocess.run(cmd[:-4] + ["--since", "7days"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "expected a number and a unit" in bad.stderr
