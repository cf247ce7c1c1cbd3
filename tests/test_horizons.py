"""Every figure reported over a horizon covers exactly that horizon: expected purchases and CLV
against an independent computation with mpmath (BG/NBD conditional expectation, Fader, Hardie &
Lee 2005, eq. 10; Gamma-Gamma spend, Fader, Hardie & Lee 2005b) at horizons that are not whole
months, and the profile's figures against the same."""

from __future__ import annotations

import math

import mpmath
import pytest

from models.btyd import BetaGeoParams, GammaGammaParams, customer_lifetime_value, expected_purchases
from models.valuation import Valuation

mpmath.mp.dps = 40
BG = BetaGeoParams(r=0.243, alpha=30.898, a=0.793, b=2.426)  # lifetimes' CDNOW fit, alpha in days
GG = GammaGammaParams(p=6.25, q=3.74, v=15.44)
CUSTOMERS = [(0, 0.0, 40.0, 0.0), (2, 213.0, 272.0, 22.35), (7, 300.0, 310.0, 80.0), (1, 5.0, 400.0, 12.0)]
HORIZONS = [1, 7, 29, 31, 45, 90.5, 365, 366, 1000]


def expected_purchases_mp(t: float, x: int, t_x: float, T: float) -> mpmath.mpf:
    r, alpha, a, b = (mpmath.mpf(v) for v in (BG.r, BG.alpha, BG.a, BG.b))
    t, t_x, T = mpmath.mpf(t), mpmath.mpf(t_x), mpmath.mpf(T)
    hyp = mpmath.hyp2f1(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    head = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    tail = 1 + (a / (b + x - 1)) * ((alpha + T) / (alpha + t_x)) ** (r + x) if x > 0 else 1
    return head / tail


def spend_mp(x: int, m: float) -> mpmath.mpf:
    p, q, v = (mpmath.mpf(val) for val in (GG.p, GG.q, GG.v))
    if x == 0:
        return p * v / (q - 1)
    return p * (v + x * mpmath.mpf(m)) / (p * x + q - 1)


def clv_mp(horizon: float, rate: float, x: int, t_x: float, T: float, m: float) -> mpmath.mpf:
    """The expected purchases in each period (30-day months, the last one partial) times the
    expected spend, each discounted at the period's end: a direct sum over exactly ``horizon`` days."""
    ends = [min(30.0 * i, horizon) for i in range(1, math.ceil(horizon / 30) + 1)]
    total, start = mpmath.mpf(0), 0.0
    for end in ends:
        bought = expected_purchases_mp(end, x, t_x, T) - expected_purchases_mp(start, x, t_x, T)
        total += bought * (1 + mpmath.mpf(rate)) ** (-mpmath.mpf(end) / 30)
        start = end
    return total * spend_mp(x, m)


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("customer", CUSTOMERS)
def test_expected_purchases_cover_exactly_the_horizon(horizon: float, customer: tuple) -> None:
    x, t_x, T, _ = customer
    assert expected_purchases(BG, horizon, x, t_x, T) == pytest.approx(float(expected_purchases_mp(horizon, x, t_x, T)),
                                                                       rel=1e-9)


@pytest.mark.parametrize("horizon", HORIZONS)
@pytest.mark.parametrize("customer", CUSTOMERS)
def test_clv_covers_exactly_the_horizon(horizon: float, customer: tuple) -> None:
    x, t_x, T, m = customer
    expected = float(clv_mp(horizon, 0.01, x, t_x, T, m))
    assert customer_lifetime_value(BG, GG, x, t_x, T, m, horizon, 0.01) == pytest.approx(expected, rel=1e-9)


def test_a_year_is_not_thirteen_months() -> None:
    """The fault itself: a 365-day CLV summed 13 whole months (390 days)."""
    x, t_x, T, m = CUSTOMERS[1]
    year = customer_lifetime_value(BG, GG, x, t_x, T, m, 365, 0.0)
    assert year == pytest.approx(float(clv_mp(365, 0.0, x, t_x, T, m)), rel=1e-9)
    assert year < customer_lifetime_value(BG, GG, x, t_x, T, m, 390, 0.0)


@pytest.mark.parametrize("horizon", [45, 365])
def test_the_profile_and_change_figures_use_the_same_horizon(horizon: int) -> None:
    valuation = Valuation(BG, GG, horizon, 0.01)
    x, t_x, T, m = CUSTOMERS[2]
    assert valuation.expected_purchases(x, t_x, T) == pytest.approx(float(expected_purchases_mp(horizon, x, t_x, T)),
                                                                    rel=1e-9)
    assert valuation.clv(x, t_x, T, m) == pytest.approx(float(clv_mp(horizon, 0.01, x, t_x, T, m)), rel=1e-9)
