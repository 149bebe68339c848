"""agent.report.stats: the pure statistics against known values."""
from __future__ import annotations

import math

import pytest

from agent.report import stats as r

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
    # one freeze: the count (Poisson, k in [0.0253, 5.5716]) and the duration (exponential mean in
    # [20/3.6889, 20/0.025318] s) are both uncertain; combined on the log scale (see availability())
    down = math.hypot(math.log(1 / 0.025318), math.log(3.688879))
    up = math.hypot(math.log(5.571643), math.log(1 / 0.025318))
    assert a.low == pytest.approx(max(0.0, 1 - math.exp(up) * 20 / 120), abs=1e-4)
    assert a.high == pytest.approx(1 - math.exp(-down) * 20 / 120, abs=1e-4)
    m = r.mtbf(uptime_s=1000.0, k=0)
    assert m.value is None and m.low == pytest.approx(1000 / 3.6889, rel=1e-4) and m.high is None
    t = r.mttr([10.0, 20.0, 30.0])
    assert t.value == 20.0 and t.low < 20 < t.high
    assert r.mttr([]).value is None
