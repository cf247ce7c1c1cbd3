"""Tests of the BTYD models against the CDNOW sample and the published BG/NBD and Gamma-Gamma fits.

Published values:

* BG/NBD on the CDNOW 2357-customer sample, 39-week calibration period (Fader, Hardie & Lee 2005):
  r = 0.243, alpha = 4.414 (weeks), a = 0.793, b = 2.426.
* Gamma-Gamma on the 946 repeat buyers of the same calibration period (Fader & Hardie 2013,
  http://www.brucehardie.com/notes/025/): p = 6.25, q = 3.74, v = 15.44.

``data/cdnow/cdnow_customers_summary.csv`` is the per-customer summary that ships with lifetimes
(MIT, see ``LICENSE-lifetimes.txt``): frequency, recency and T in weeks rounded to 2 decimals.
"""

from __future__ import annotations

import csv
import datetime as dt
import itertools
import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

from models import btyd
from models.cdnow import SAMPLE
from models.btyd import (
    BetaGeoParams,
    GammaGammaParams,
    customer_lifetime_value,
    expected_average_spend,
    expected_purchases,
    fit_beta_geo,
    fit_gamma_gamma,
    prob_alive,
)

CDNOW = Path(__file__).resolve().parent.parent / "data" / "cdnow"
CALIBRATION_END = dt.date(1997, 9, 30)

PUBLISHED_BG_WEEKS = BetaGeoParams(r=0.243, alpha=4.414, a=0.793, b=2.426)
PUBLISHED_BG_DAYS = BetaGeoParams(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426)
PUBLISHED_GG = GammaGammaParams(p=6.25, q=3.74, v=15.44)
# A second parameter set with a > 1 (the CDNOW fit has a < 1, which flips the sign of both
# factors of the expected-purchases formula), to exercise both regimes.
OTHER_BG_DAYS = BetaGeoParams(r=1.2, alpha=15.0, a=2.5, b=4.0)
BG_PARAM_SETS = [PUBLISHED_BG_DAYS, OTHER_BG_DAYS]


# ---------------------------------------------------------------------------------------------
# CDNOW reader and lifetimes-style summary
# ---------------------------------------------------------------------------------------------


def load_cdnow_transactions(path: Path) -> list[tuple[int, dt.date, float]]:
    """(sample customer id, date, dollar amount) rows of a CDNOW_sample.txt file.

    Columns: original customer id, sample customer id, date YYYYMMDD, number of CDs, dollars.
    """
    rows = []
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            if not fields:
                continue
            _, customer, day, _, amount = fields
            rows.append((int(customer), dt.datetime.strptime(day, "%Y%m%d").date(), float(amount)))
    return rows


def summarise(transactions: list[tuple[int, dt.date, float]], observation_end: dt.date) -> dict[str, np.ndarray]:
    """Per-customer (frequency, recency, T, monetary_value) in days, as
    ``lifetimes.utils.summary_data_from_transaction_data(freq="D", observation_period_end=...)``.

    Transactions after ``observation_end`` are dropped; same-day transactions of a customer are
    one purchase (amounts summed); frequency counts the purchase days after the first;
    monetary_value is the mean of those repeat days' totals (0 without repeats).
    """
    per_day: dict[int, dict[dt.date, float]] = defaultdict(lambda: defaultdict(float))
    for customer, day, amount in transactions:
        if day <= observation_end:
            per_day[customer][day] += amount
    ids = sorted(per_day)
    frequency, recency, age, monetary = [], [], [], []
    for customer in ids:
        days = sorted(per_day[customer])
        repeat_totals = [per_day[customer][day] for day in days[1:]]
        frequency.append(len(days) - 1)
        recency.append((days[-1] - days[0]).days)
        age.append((observation_end - days[0]).days)
        monetary.append(sum(repeat_totals) / len(repeat_totals) if repeat_totals else 0.0)
    return {
        "id": np.array(ids),
        "frequency": np.array(frequency, dtype=float),
        "recency": np.array(recency, dtype=float),
        "T": np.array(age, dtype=float),
        "monetary_value": np.array(monetary),
    }


@pytest.fixture(scope="module")
def calibration() -> dict[str, np.ndarray]:
    return summarise(load_cdnow_transactions(SAMPLE), CALIBRATION_END)  # the sample the package ships


@pytest.fixture(scope="module")
def fitted_bg(calibration: dict[str, np.ndarray]) -> BetaGeoParams:
    return fit_beta_geo(calibration["frequency"], calibration["recency"], calibration["T"])


def test_calibration_summary_matches_published_lifetimes_summary(calibration: dict[str, np.ndarray]) -> None:
    with open(CDNOW / "cdnow_customers_summary.csv") as handle:
        published = {int(row["ID"]): row for row in csv.DictReader(handle)}
    assert len(published) == 2357
    assert sorted(published) == calibration["id"].tolist()

    mismatches = []
    for i, customer in enumerate(calibration["id"]):
        row = published[int(customer)]
        x, t_x, age = (calibration[k][i] for k in ("frequency", "recency", "T"))
        if (
            x != int(row["frequency"])
            or abs(t_x / 7 - float(row["recency"])) > 0.006
            or abs(age / 7 - float(row["T"])) > 0.006
        ):
            mismatches.append((int(customer), (x, t_x / 7, age / 7), dict(row)))
    assert mismatches == []
    # Fader & Hardie's note 025 fits the Gamma-Gamma model on these 946 repeat buyers.
    assert int(np.sum(calibration["frequency"] > 0)) == 946


# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


def test_fit_beta_geo_reproduces_published_cdnow_params(fitted_bg: BetaGeoParams) -> None:
    # Fitted in days; only alpha carries the time unit.
    in_weeks = {"r": fitted_bg.r, "alpha": fitted_bg.alpha / 7, "a": fitted_bg.a, "b": fitted_bg.b}
    for name, value in in_weeks.items():
        assert abs(value - getattr(PUBLISHED_BG_WEEKS, name)) < 0.005, (name, value)


def test_beta_geo_log_likelihood_matches_published_value(fitted_bg: BetaGeoParams, calibration) -> None:
    # FHL 2005 report LL = -9582.4 at their estimates, with time in weeks. (The likelihood in
    # days differs by a constant Jacobian term, so the comparison is made in weeks.)
    x, t_x, age = calibration["frequency"], calibration["recency"] / 7, calibration["T"] / 7
    log_params = np.log([fitted_bg.r, fitted_bg.alpha / 7, fitted_bg.a, fitted_bg.b])
    mean_nll, gradient = btyd.fitting._beta_geo_nll(log_params, x, t_x, age, np.ones_like(x), x > 0)
    assert -mean_nll * x.size == pytest.approx(-9582.4, abs=0.05)
    # At the optimum the (analytic) gradient vanishes.
    assert np.max(np.abs(gradient)) < 1e-5


def test_beta_geo_gradient_matches_finite_differences(calibration) -> None:
    x, t_x, age = calibration["frequency"], calibration["recency"] / 7, calibration["T"] / 7
    args = (x, t_x, age, np.ones_like(x), x > 0)
    point = np.log([0.5, 3.0, 1.3, 2.0])
    _, gradient = btyd.fitting._beta_geo_nll(point, *args)
    step = 1e-6
    numeric = [
        (btyd.fitting._beta_geo_nll(point + step * e, *args)[0] - btyd.fitting._beta_geo_nll(point - step * e, *args)[0]) / (2 * step)
        for e in np.eye(4)
    ]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-8)


def test_fit_beta_geo_is_equivariant_in_the_time_unit(fitted_bg: BetaGeoParams, calibration) -> None:
    in_weeks = fit_beta_geo(calibration["frequency"], calibration["recency"] / 7, calibration["T"] / 7)
    assert in_weeks.alpha == pytest.approx(fitted_bg.alpha / 7, rel=1e-6)
    for name in ("r", "a", "b"):
        assert getattr(in_weeks, name) == pytest.approx(getattr(fitted_bg, name), rel=1e-6)


@pytest.mark.parametrize(
    "initial",
    [(0.01, 1000.0, 5.0, 0.1), (5.0, 1.0, 0.1, 20.0), BetaGeoParams(r=1.0, alpha=1.0, a=1.0, b=1.0)],
)
def test_fit_beta_geo_converges_from_poor_starting_points(initial, fitted_bg, calibration) -> None:
    params = fit_beta_geo(calibration["frequency"], calibration["recency"], calibration["T"], initial=initial)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(params, name) == pytest.approx(getattr(fitted_bg, name), rel=1e-5)


def test_fit_gamma_gamma_reproduces_published_cdnow_params(calibration) -> None:
    # The published values come from the calibration-period (weeks 1-39) mean repeat spend;
    # using spend from the full 78 weeks gives p ~ 4.68, q ~ 4.19, v ~ 24.4 instead.
    gg = fit_gamma_gamma(calibration["frequency"], calibration["monetary_value"])
    assert abs(gg.p - PUBLISHED_GG.p) < 0.005
    assert abs(gg.q - PUBLISHED_GG.q) < 0.005
    assert abs(gg.v - PUBLISHED_GG.v) < 0.005


def test_fit_gamma_gamma_is_equivariant_in_the_money_unit(calibration) -> None:
    dollars = fit_gamma_gamma(calibration["frequency"], calibration["monetary_value"])
    cents = fit_gamma_gamma(calibration["frequency"], calibration["monetary_value"] * 100)
    assert cents.p == pytest.approx(dollars.p, rel=1e-6)
    assert cents.q == pytest.approx(dollars.q, rel=1e-6)
    assert cents.v == pytest.approx(dollars.v * 100, rel=1e-6)


def _assert_same_params(left, right, rel: float = 1e-6) -> None:
    for name, value in left.to_dict().items():
        assert value == pytest.approx(getattr(right, name), rel=rel), name


def test_weighted_histogram_fit_equals_row_fit(fitted_bg: BetaGeoParams, calibration) -> None:
    rows = np.column_stack([calibration["frequency"], calibration["recency"], calibration["T"]])
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    assert len(unique) < len(rows)  # the histogram really is compressed
    from_histogram = fit_beta_geo(unique[:, 0], unique[:, 1], unique[:, 2], weights=counts)
    _assert_same_params(from_histogram, fitted_bg)

    spend = np.column_stack([calibration["frequency"], calibration["monetary_value"]])
    unique_spend, spend_counts = np.unique(spend, axis=0, return_counts=True)
    gg_rows = fit_gamma_gamma(spend[:, 0], spend[:, 1])
    gg_histogram = fit_gamma_gamma(unique_spend[:, 0], unique_spend[:, 1], weights=spend_counts)
    _assert_same_params(gg_histogram, gg_rows)


def test_zero_weight_rows_are_ignored_and_weights_are_scale_free(fitted_bg, calibration) -> None:
    x, t_x, age = calibration["frequency"], calibration["recency"], calibration["T"]
    doubled = fit_beta_geo(x, t_x, age, weights=np.full(x.size, 2.0))
    _assert_same_params(doubled, fitted_bg)
    # An extra row with weight 0 (even an odd one) must not move the fit.
    padded = fit_beta_geo(np.append(x, 50), np.append(t_x, 1.0), np.append(age, 1.0), weights=np.append(np.ones(x.size), 0))
    _assert_same_params(padded, fitted_bg)


def _simulate_beta_geo(params: BetaGeoParams, ages: np.ndarray, rng: np.random.Generator):
    """Draw (x, t_x) for customers observed for ``ages`` days under the BG/NBD story."""
    rates = rng.gamma(params.r, 1.0 / params.alpha, size=ages.size)
    dropout = rng.beta(params.a, params.b, size=ages.size)
    x = np.zeros(ages.size)
    t_x = np.zeros(ages.size)
    for i, (age, rate, p) in enumerate(zip(ages, rates, dropout)):
        now = 0.0
        while True:
            now += rng.exponential(1.0 / rate)
            if now > age:
                break
            x[i] += 1
            t_x[i] = now
            # Customers drop out right after a purchase (not after the first one).
            if rng.random() < p:
                break
    return x, t_x


def test_fit_beta_geo_recovers_simulated_params() -> None:
    truth = BetaGeoParams(r=1.0, alpha=20.0, a=0.8, b=3.0)
    rng = np.random.default_rng(20050101)
    ages = rng.uniform(200.0, 500.0, size=20_000)
    x, t_x = _simulate_beta_geo(truth, ages, rng)
    fitted = fit_beta_geo(x, t_x, ages)
    # About 5 standard errors at this sample size (relative SEs over seeds: r 1%, alpha 1.3%,
    # a 2%, b 2.6%).
    assert fitted.r == pytest.approx(truth.r, rel=0.05)
    assert fitted.alpha == pytest.approx(truth.alpha, rel=0.07)
    assert fitted.a == pytest.approx(truth.a, rel=0.10)
    assert fitted.b == pytest.approx(truth.b, rel=0.13)


def test_fit_gamma_gamma_recovers_simulated_params() -> None:
    truth = GammaGammaParams(p=5.0, q=4.0, v=20.0)
    rng = np.random.default_rng(2013)
    n = 100_000
    x = rng.integers(1, 10, size=n)
    nu = rng.gamma(truth.q, 1.0 / truth.v, size=n)  # numpy takes a scale, i.e. 1 / rate
    # Each of the x spends is Gamma(p, rate nu); their sum is Gamma(p x, rate nu).
    m = rng.gamma(truth.p * x, 1.0 / nu) / x
    fitted = fit_gamma_gamma(x, m)
    # About 4 standard errors at this sample size (relative SEs over seeds: p 2%, q 0.5%, v 2.5%);
    # p is the weakly identified one.
    assert fitted.p == pytest.approx(truth.p, rel=0.08)
    assert fitted.q == pytest.approx(truth.q, rel=0.03)
    assert fitted.v == pytest.approx(truth.v, rel=0.10)


def test_fit_gamma_gamma_ignores_non_repeat_customers(calibration) -> None:
    repeat = calibration["frequency"] > 0
    only_repeat = fit_gamma_gamma(calibration["frequency"][repeat], calibration["monetary_value"][repeat])
    everyone = fit_gamma_gamma(calibration["frequency"], calibration["monetary_value"])
    _assert_same_params(only_repeat, everyone, rel=1e-9)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: fit_beta_geo([], [], []), "empty"),
        (lambda: fit_beta_geo([1, 2], [3.0], [4.0, 5.0]), "same length"),
        (lambda: fit_beta_geo([1], [10.0], [5.0]), "exceed T"),
        (lambda: fit_beta_geo([1.5], [1.0], [5.0]), "integers"),
        (lambda: fit_beta_geo([0], [2.0], [5.0]), "recency must be 0"),
        (lambda: fit_beta_geo([1], [1.0], [float("nan")]), "NaN"),
        (lambda: fit_beta_geo([1], [1.0], [5.0], weights=[0]), "sum to zero"),
        (lambda: fit_gamma_gamma([], []), "empty"),
        (lambda: fit_gamma_gamma([0, 0], [0.0, 0.0]), "frequency > 0"),
        (lambda: fit_gamma_gamma([1, 2], [10.0, 0.0]), "positive"),
        (lambda: BetaGeoParams(r=-1.0, alpha=1.0, a=1.0, b=1.0), "positive"),
        (lambda: GammaGammaParams.from_dict({"p": 1.0, "q": 2.0}), "missing"),
    ],
)
def test_invalid_input_raises_value_error(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_params_round_trip_through_dicts() -> None:
    assert BetaGeoParams.from_dict(PUBLISHED_BG_DAYS.to_dict()) == PUBLISHED_BG_DAYS
    assert GammaGammaParams.from_dict({**PUBLISHED_GG.to_dict(), "fitted_at": 0}) == PUBLISHED_GG
    assert all(type(v) is float for v in BetaGeoParams(np.float64(1), 2, 3, 4).to_dict().values())


# ---------------------------------------------------------------------------------------------
# Independent closed-form reference (plain Python, no scipy): FHL 2005 eq. (10), plain form
# ---------------------------------------------------------------------------------------------


def hyp2f1_series(a: float, b: float, c: float, z: float) -> float:
    """Gauss series of 2F1 for 0 <= z < 1 (fine for the moderate z used here)."""
    term, total, k = 1.0, 1.0, 0
    while abs(term) > 1e-17 * abs(total) or k < 5:
        term *= (a + k) * (b + k) / ((c + k) * (k + 1)) * z
        total += term
        k += 1
        assert k < 100_000
    return total


def reference_expected_purchases(params: BetaGeoParams, t: float, x: float, t_x: float, T: float) -> float:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    hyp = hyp2f1_series(r + x, b + x, a + b + x - 1, t / (alpha + T + t))
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    denominator = 1 + (x > 0) * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x)
    return numerator / denominator


def reference_prob_alive(params: BetaGeoParams, x: float, t_x: float, T: float) -> float:
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if x == 0:
        return 1.0
    try:
        return 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    except OverflowError:  # the odds of being dead exceed 1e308: alive with probability ~0
        return 0.0


# ---------------------------------------------------------------------------------------------
# prob_alive
# ---------------------------------------------------------------------------------------------

histories = st.integers(0, 200).flatmap(
    lambda x: st.tuples(
        st.just(x),
        st.floats(0.0, 1.0),  # recency as a fraction of T
        st.floats(0.0, 3000.0),
    ).map(lambda v: (float(v[0]), 0.0 if v[0] == 0 else v[1] * v[2], v[2]))
)


def test_prob_alive_of_the_paper_customer_in_weeks_and_days() -> None:
    # Customer 1 of the CDNOW sample: x = 2, t_x = 30.43, T = 38.86 weeks.
    in_weeks = prob_alive(PUBLISHED_BG_WEEKS, 2, 30.43, 38.86)
    assert in_weeks == pytest.approx(reference_prob_alive(PUBLISHED_BG_WEEKS, 2, 30.43, 38.86), rel=1e-12)
    in_days = prob_alive(PUBLISHED_BG_DAYS, 2, 30.43 * 7, 38.86 * 7)
    assert in_days == pytest.approx(in_weeks, rel=1e-12)
    assert in_weeks == pytest.approx(0.7266, abs=1e-4)


@pytest.mark.parametrize("params", BG_PARAM_SETS)
def test_prob_alive_is_one_without_repeat_purchases(params: BetaGeoParams) -> None:
    assert prob_alive(params, 0, 0.0, 500.0) == 1.0
    np.testing.assert_array_equal(prob_alive(params, np.zeros(3), np.zeros(3), np.array([0.0, 10.0, 1e6])), 1.0)


@pytest.mark.parametrize("params", BG_PARAM_SETS)
@settings(max_examples=200, deadline=None)
@given(history=histories, extra=st.floats(0.1, 5000.0))
def test_prob_alive_is_a_probability_that_decays_with_age(params, history, extra) -> None:
    x, t_x, T = history
    now, later = prob_alive(params, x, t_x, T), prob_alive(params, x, t_x, T + extra)
    assert 0.0 <= later <= now <= 1.0
    if x > 0:
        assert later < now or later < 1e-300  # strictly, unless both underflow
        assert now == pytest.approx(reference_prob_alive(params, x, t_x, T), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("params", BG_PARAM_SETS)
@settings(max_examples=100, deadline=None)
@given(history=histories)
def test_prob_alive_grows_with_recency(params, history) -> None:
    x, t_x, T = history
    if x > 0 and t_x < T:
        assert prob_alive(params, x, T, T) >= prob_alive(params, x, t_x, T)


def test_prob_alive_long_lapsed_heavy_buyer_does_not_overflow() -> None:
    value = prob_alive(PUBLISHED_BG_DAYS, 500, 1.0, 1e6)
    assert 0.0 <= value < 1e-100
    assert prob_alive(PUBLISHED_BG_DAYS, np.array([500.0]), np.array([1.0]), np.array([1e6]))[0] == value


# ---------------------------------------------------------------------------------------------
# expected_purchases
# ---------------------------------------------------------------------------------------------


def test_expected_purchases_of_the_paper_customer_in_weeks_and_days() -> None:
    # 1.226 purchases in the next 39 weeks is the figure quoted for this customer in the BG/NBD
    # paper's worked example; the independent series evaluation is the actual check.
    args_weeks = (39.0, 2, 30.43, 38.86)
    in_weeks = expected_purchases(PUBLISHED_BG_WEEKS, *args_weeks)
    assert in_weeks == pytest.approx(reference_expected_purchases(PUBLISHED_BG_WEEKS, *args_weeks), rel=1e-10)
    assert in_weeks == pytest.approx(1.226, abs=5e-4)
    # The same customer and horizon in days, with alpha in days.
    in_days = expected_purchases(PUBLISHED_BG_DAYS, 39.0 * 7, 2, 30.43 * 7, 38.86 * 7)
    assert in_days == pytest.approx(in_weeks, rel=1e-12)


@pytest.mark.parametrize("params", BG_PARAM_SETS)
@pytest.mark.parametrize(
    ("t", "x", "t_x", "T"),
    [(30.0, 0, 0.0, 100.0), (1.0, 1, 10.0, 20.0), (365.0, 5, 200.0, 400.0), (90.0, 20, 300.0, 310.0), (200.0, 3, 5.0, 900.0)],
)
def test_expected_purchases_matches_independent_series(params, t, x, t_x, T) -> None:
    assert expected_purchases(params, t, x, t_x, T) == pytest.approx(
        reference_expected_purchases(params, t, x, t_x, T), rel=1e-9
    )


@pytest.mark.parametrize("params", BG_PARAM_SETS)
@settings(max_examples=200, deadline=None)
@given(history=histories, t=st.floats(0.0, 3650.0), dt_=st.floats(1.0, 3650.0))
def test_expected_purchases_grows_with_the_horizon(params, history, t, dt_) -> None:
    x, t_x, T = history
    near, far = expected_purchases(params, t, x, t_x, T), expected_purchases(params, t + dt_, x, t_x, T)
    assert math.isfinite(far)
    assert near >= -1e-12
    assert far >= near - 1e-9 * max(1.0, abs(near))
    assert expected_purchases(params, 0.0, x, t_x, T) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "params", [BetaGeoParams(r=5.0, alpha=2.0, a=8.0, b=0.5), BetaGeoParams(r=1.0, alpha=10.0, a=2.0, b=1.0)]
)
@pytest.mark.parametrize(("t", "x", "t_x", "T"), [(2589.1, 98, 90.0, 96.76), (2130.9, 150, 190.0, 197.1), (30.0, 2, 5.0, 40.0)])
def test_expected_purchases_with_integer_r_minus_a(params, t, x, t_x, T) -> None:
    # r - a integer makes c - a - b of the hypergeometric term an integer, where scipy's
    # hyp2f1 returns inf/NaN for z near 1 and large c.
    expected = reference_expected_purchases(params, t, x, t_x, T)
    assert expected_purchases(params, t, x, t_x, T) == pytest.approx(expected, rel=1e-9)
    array = expected_purchases(params, np.array([t]), np.array([x]), np.array([t_x]), np.array([T]))
    assert array[0] == pytest.approx(expected, rel=1e-9)


def test_expected_purchases_heavy_buyer_long_horizon_is_finite() -> None:
    # The plain hypergeometric form overflows here; the Euler-transformed one must not.
    value = expected_purchases(PUBLISHED_BG_DAYS, 3650.0, 300, 400.0, 410.0)
    assert math.isfinite(value) and value > 0


# ---------------------------------------------------------------------------------------------
# Scalar and array paths agree
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("params", BG_PARAM_SETS)
@settings(max_examples=50, deadline=None)
@given(rows=st.lists(histories, min_size=1, max_size=20), t=st.floats(0.0, 3650.0), m=st.floats(0.5, 500.0))
def test_scalar_and_array_paths_agree(params, rows, t, m) -> None:
    x, t_x, T = (np.array(column) for column in zip(*rows))
    spend = np.full_like(x, m)
    np.testing.assert_allclose(
        prob_alive(params, x, t_x, T), [prob_alive(params, *row) for row in rows], rtol=1e-12, atol=1e-300
    )
    np.testing.assert_allclose(
        expected_purchases(params, t, x, t_x, T),
        [expected_purchases(params, t, *row) for row in rows],
        rtol=1e-12,
        # 1 - H(t) cancels for horizons far shorter than the age: ulp-level differences in
        # (1-z)^(a-1) then show up as ~1e-13 absolute differences.
        atol=1e-12,
    )
    np.testing.assert_allclose(
        expected_average_spend(PUBLISHED_GG, x, spend), [expected_average_spend(PUBLISHED_GG, row[0], m) for row in rows]
    )
    np.testing.assert_allclose(
        customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, spend, 365, 0.01),
        [customer_lifetime_value(params, PUBLISHED_GG, *row, m, 365, 0.01) for row in rows],
        rtol=1e-12,
        atol=1e-12,
    )


def test_numpy_scalars_and_0d_arrays_give_floats() -> None:
    args = (np.int64(2), np.float64(213.0), np.array(272.0))
    assert type(prob_alive(PUBLISHED_BG_DAYS, *args)) is float
    assert type(expected_purchases(PUBLISHED_BG_DAYS, 30, *args)) is float
    assert prob_alive(PUBLISHED_BG_DAYS, *args) == pytest.approx(prob_alive(PUBLISHED_BG_DAYS, 2, 213.0, 272.0), rel=1e-14)


def test_predictions_broadcast() -> None:
    horizons = np.array([[30.0], [365.0]])
    result = expected_purchases(PUBLISHED_BG_DAYS, horizons, np.array([0, 2, 5]), np.array([0, 100, 200]), 300.0)
    assert result.shape == (2, 3)
    assert np.all(result[1] > result[0])


# ---------------------------------------------------------------------------------------------
# expected_average_spend
# ---------------------------------------------------------------------------------------------


def test_expected_average_spend_is_a_credibility_weighted_mean() -> None:
    p, q, v = PUBLISHED_GG.p, PUBLISHED_GG.q, PUBLISHED_GG.v
    population_mean = p * v / (q - 1)
    assert expected_average_spend(PUBLISHED_GG, 0, 123.0) == pytest.approx(population_mean, rel=1e-15)
    for x, m in [(1, 10.0), (2, 22.35), (10, 80.0)]:
        weight = p * x / (p * x + q - 1)
        expected = weight * m + (1 - weight) * population_mean
        assert expected_average_spend(PUBLISHED_GG, x, m) == pytest.approx(expected, rel=1e-12)
    # Array path: customers without repeats get the population mean whatever their m holds.
    spend = expected_average_spend(PUBLISHED_GG, np.array([0, 0, 3]), np.array([np.nan, 5.0, 40.0]))
    np.testing.assert_allclose(spend[:2], population_mean)
    assert math.isfinite(spend[2])


# ---------------------------------------------------------------------------------------------
# customer_lifetime_value
# ---------------------------------------------------------------------------------------------


def reference_clv(bg, gg, x, t_x, T, m, horizon_days, rate) -> float:
    """lifetimes' _customer_lifetime_value(freq="D") with the plain-Python reference, over exactly
    the horizon (lifetimes counts a partial last month as whole: 390 days for 365), each period
    discounted at its end."""
    spend = expected_average_spend(gg, x, m)
    total = 0.0
    for i in range(1, math.ceil(horizon_days / 30) + 1):
        start, end = 30.0 * (i - 1), min(30.0 * i, horizon_days)
        purchases = reference_expected_purchases(bg, end, x, t_x, T) - reference_expected_purchases(
            bg, start, x, t_x, T
        )
        total += spend * purchases / (1 + rate) ** (end / 30)
    return total


@pytest.mark.parametrize("params", BG_PARAM_SETS)
@pytest.mark.parametrize(("x", "t_x", "T", "m"), [(0, 0.0, 50.0, 0.0), (2, 213.0, 272.0, 22.35), (7, 400.0, 420.0, 15.0)])
@pytest.mark.parametrize(("horizon", "rate"), [(365, 0.01), (100, 0.0), (730, 0.05)])
def test_clv_matches_independent_reference(params, x, t_x, T, m, horizon, rate) -> None:
    value = customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, m, horizon, rate)
    assert value == pytest.approx(reference_clv(params, PUBLISHED_GG, x, t_x, T, m, horizon, rate), rel=1e-8)


def test_clv_without_discount_is_expected_purchases_times_spend() -> None:
    args = (2, 213.0, 272.0)
    value = customer_lifetime_value(PUBLISHED_BG_DAYS, PUBLISHED_GG, *args, 22.35, 360, 0.0)
    expected = expected_purchases(PUBLISHED_BG_DAYS, 360.0, *args) * expected_average_spend(PUBLISHED_GG, 2, 22.35)
    assert value == pytest.approx(expected, rel=1e-10)


def test_clv_covers_a_partial_month_partly_and_zero_horizon_is_zero() -> None:
    args = (PUBLISHED_BG_DAYS, PUBLISHED_GG, 2, 213.0, 272.0, 22.35)
    assert customer_lifetime_value(*args, 30, 0.01) < customer_lifetime_value(*args, 31, 0.01) < \
        customer_lifetime_value(*args, 60, 0.01)
    assert customer_lifetime_value(*args, 0, 0.01) == 0.0
    np.testing.assert_array_equal(
        customer_lifetime_value(PUBLISHED_BG_DAYS, PUBLISHED_GG, np.array([1, 2]), np.array([5.0, 9.0]), 10.0, 3.0, 0, 0.01),
        [0.0, 0.0],
    )
    with pytest.raises(ValueError):
        customer_lifetime_value(*args, -1, 0.01)
    with pytest.raises(ValueError):
        customer_lifetime_value(*args, 30, -1.0)


@pytest.mark.parametrize("params", BG_PARAM_SETS)
@settings(max_examples=100, deadline=None)
@given(
    history=histories,
    m=st.floats(0.0, 1000.0),
    horizon=st.integers(0, 3650),
    extra=st.integers(30, 3650),
    rate=st.floats(0.0, 0.2),
)
def test_clv_is_non_negative_and_monotone(params, history, m, horizon, extra, rate) -> None:
    x, t_x, T = history
    value = customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, m, horizon, rate)
    assert value >= 0.0
    assert customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, m, horizon + extra, rate) >= value * (1 - 1e-12)
    assert customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, m, horizon, rate + 0.05) <= value * (1 + 1e-12)


def test_clv_of_calibration_customers(fitted_bg, calibration) -> None:
    gg = fit_gamma_gamma(calibration["frequency"], calibration["monetary_value"])
    values = customer_lifetime_value(
        fitted_bg, gg, calibration["frequency"], calibration["recency"], calibration["T"], calibration["monetary_value"], 365, 0.01
    )
    assert values.shape == calibration["frequency"].shape
    assert np.all(np.isfinite(values)) and np.all(values >= 0)


# ---------------------------------------------------------------------------------------------
# Extreme and degenerate parameters: the closed form's fallbacks
# ---------------------------------------------------------------------------------------------

# The parameter grid of the bug report: scipy's hyp2f1 returned NaN/inf for 1527 of these
# (parameter set, horizon) pairs. a, b -> large is where a fit lands when the drop-out
# probability is the same for everyone (the Beta collapses to a point mass).
EXTREME_GRID = dict(
    a=[0.5, 5, 50, 100, 500, 1e3, 1e4, 1e5],
    b=[0.5, 5, 50, 100, 500, 7.7e4, 7.7e6],
    r=[0.05, 0.2, 2.2, 20, 50],
    alpha=[0.5, 1, 42, 400, 5000],
)
EXTREME_HORIZONS = np.array([1.0, 30.0, 365.0, 3650.0])


def _extreme_grid_params():
    names = list(EXTREME_GRID)
    for values in itertools.product(*EXTREME_GRID.values()):
        yield BetaGeoParams(**dict(zip(names, values)))


def _extreme_grid_customers():
    x = np.arange(0, 400, 7.0)
    t_x = 2 * x
    return x, t_x, t_x + 100


def reference_alive_purchases_quad(params: BetaGeoParams, t: float, x: float, T: float) -> float:
    """E[purchases in (0, t] | alive] by adaptive quadrature over p ~ Beta(a, b+x), independently
    of the module's closed form, Gauss rules and series (for a, b+x small enough that the Beta
    density is not a spike)::

        G = E_p[(1 - (1 + p t/(α+T))^-(r+x)) / p]
    """
    k, s, beta = params.r + x, t / (params.alpha + T), params.b + x

    def g(p: float) -> float:
        return -math.expm1(-k * math.log1p(p * s)) / p if p > 0 else k * s

    value, _ = integrate.quad(
        g, 0.0, 1.0, weight="alg", wvar=(params.a - 1.0, beta - 1.0), epsabs=0.0, epsrel=1e-13, limit=200
    )
    return value / math.exp(special.betaln(params.a, beta))


def test_extreme_grid_expected_purchases_and_prob_alive_are_finite_non_negative_and_monotone() -> None:
    x, t_x, T = _extreme_grid_customers()
    problems = []
    for params in _extreme_grid_params():
        values = expected_purchases(params, EXTREME_HORIZONS[:, None], x, t_x, T)
        alive = prob_alive(params, x, t_x, T)
        if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
            problems.append(("expected_purchases", params))
        elif np.any(np.diff(values, axis=0) < -1e-9 * values[1:]):
            problems.append(("not monotone in t", params))
        if not (np.all(np.isfinite(alive)) and np.all((alive >= 0) & (alive <= 1))):
            problems.append(("prob_alive", params))
    assert problems == []


def test_extreme_grid_clv_is_finite_and_non_negative() -> None:
    x, t_x, T = _extreme_grid_customers()
    spend = np.full(x.shape, 20.0)
    problems = []
    for params in _extreme_grid_params():
        values = customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, spend, 365, 0.01)
        if not (np.all(np.isfinite(values)) and np.all(values >= 0)):
            problems.append(params)
    assert problems == []


@pytest.mark.parametrize(
    ("params", "t", "x", "t_x", "T"),
    [
        # The bug report's example: the closed form gave NaN.
        (BetaGeoParams(r=2.19, alpha=42.35, a=1000.0, b=77000.0), 365.0, 3, 100.0, 200.0),
        # scipy's hyp2f1 gave a finite value here, but 4e-6 off.
        (BetaGeoParams(r=20.0, alpha=5000.0, a=1e5, b=7.7e6), 30.0, 0, 0.0, 100.0),
        (BetaGeoParams(r=2.19, alpha=42.35, a=1e4, b=7.7e6), 3650.0, 50, 100.0, 200.0),
        (BetaGeoParams(r=50.0, alpha=5000.0, a=0.5, b=0.5), 3650.0, 7, 14.0, 114.0),
    ],
)
def test_large_parameter_regime_matches_independent_series(params, t, x, t_x, T) -> None:
    expected = reference_expected_purchases(params, t, x, t_x, T)
    assert expected_purchases(params, t, x, t_x, T) == pytest.approx(expected, rel=1e-9)
    array = expected_purchases(params, np.array([t]), np.array([x]), np.array([t_x]), np.array([T]))
    assert array[0] == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize(
    "params",
    [
        BetaGeoParams(r=50.0, alpha=5000.0, a=0.5, b=0.5),  # a + b + x - 1 == 0 at x == 0
        BetaGeoParams(r=0.243, alpha=30.9, a=0.3, b=0.4),  # a + b + x - 1 < 0 at x == 0
        BetaGeoParams(r=0.243, alpha=30.9, a=1.0, b=2.426),  # K = (a+b+x-1)/(a-1) is 1/0
        BetaGeoParams(r=0.243, alpha=30.9, a=1.0 + 1e-9, b=2.426),  # 1 - H cancels completely
        BetaGeoParams(r=0.243, alpha=30.9, a=0.5, b=1000.0),  # |K| ~ 2e3: 1 - H cancels
        BetaGeoParams(r=200.0, alpha=300.0, a=0.5, b=3.0),  # r >> a + b: closed form not trusted
    ],
)
@pytest.mark.parametrize(("t", "x", "T"), [(365.0, 0, 0.0), (30.0, 0, 100.0), (1.0, 1, 20.0), (3650.0, 12, 400.0)])
def test_singular_and_cancelling_regimes_match_quadrature(params, t, x, T) -> None:
    expected = reference_alive_purchases_quad(params, t, x, T)
    assert expected_purchases(params, t, x, 0.0 if x == 0 else T / 2, T) == pytest.approx(
        expected * prob_alive(params, x, 0.0 if x == 0 else T / 2, T), rel=1e-9
    )
    assert btyd.prediction._alive_purchases_array(params, np.array([t]), np.array([x]), np.array([T]))[0] == pytest.approx(
        expected, rel=1e-9
    )


def test_fallbacks_agree_with_the_closed_form_where_it_is_trusted() -> None:
    # Random parameters over the range of real fits and beyond; wherever the closed form passes
    # its acceptance test, the quadrature and the series must give the same value.
    rng = np.random.default_rng(20240601)
    checked = worst_series = worst_gauss = 0.0
    for _ in range(150):
        params = BetaGeoParams(
            r=10 ** rng.uniform(-2, 2),
            alpha=10 ** rng.uniform(-1, 4),
            a=10 ** rng.uniform(-1.5, 2.5),
            b=10 ** rng.uniform(-1.5, 3),
        )
        x = np.floor(10 ** rng.uniform(0, 2.5, size=12)) - 1
        T = x + rng.uniform(0, 1500, size=12)
        t = rng.choice([0.5, 7.0, 30.0, 365.0, 3650.0], size=3, replace=False)[:, None]
        _, _, fast, ok = btyd.prediction._alive_purchases_fast(params, t, x, T)
        ok = np.broadcast_to(ok, fast.shape) & (fast > 0)
        if not ok.any():
            continue
        t_ok, x_ok, T_ok = (np.broadcast_to(v, fast.shape)[ok] for v in (t, x, T))
        series = btyd.prediction._alive_purchases_series(params, t_ok, x_ok, T_ok)
        gauss, converged = btyd.prediction._alive_purchases_gauss(params, t_ok, x_ok, T_ok)
        worst_series = max(worst_series, np.max(np.abs(series / fast[ok] - 1)))
        if converged.any():
            worst_gauss = max(worst_gauss, np.max(np.abs(gauss[converged] / fast[ok][converged] - 1)))
        checked += ok.sum()
    assert checked > 2000
    assert worst_series < 1e-9
    assert worst_gauss < 1e-9


@pytest.mark.parametrize("params", [BetaGeoParams(r=2.19, alpha=42.35, a=1e4, b=7.7e5)] + BG_PARAM_SETS)
@pytest.mark.parametrize(("t", "x", "T"), [(30.0, 0, 100.0), (365.0, 3, 200.0), (3650.0, 50, 900.0), (0.01, 2, 1000.0)])
def test_quadrature_and_series_agree(params, t, x, T) -> None:
    gauss, converged = btyd.prediction._alive_purchases_gauss(params, np.array([t]), np.array([x]), np.array([T]))
    series = btyd.prediction._alive_purchases_series(params, t, x, T)
    assert converged[0]
    assert gauss[0] == pytest.approx(float(series), rel=1e-12)


def test_quadrature_reports_non_convergence_and_the_series_takes_over() -> None:
    # A diffuse Beta and ~6000 purchases expected of a never-dying customer: 256 nodes are not
    # enough, which the quadrature must notice; the series is then used.
    params, t, x, T = BetaGeoParams(r=0.243, alpha=30.9, a=1.0, b=2.426), 7000.0, 200.0, 201.0
    _, converged = btyd.prediction._alive_purchases_gauss(params, np.array([t]), np.array([x]), np.array([T]))
    assert not converged[0]
    expected = float(btyd.prediction._alive_purchases_series(params, t, x, T))
    assert btyd.prediction._alive_purchases_robust(params, t, x, T) == pytest.approx(expected, rel=1e-15)
    assert expected == pytest.approx(reference_alive_purchases_quad(params, t, x, T), rel=1e-10)


@pytest.mark.parametrize("p", [0.013, 0.2, 0.9])
@pytest.mark.parametrize(
    ("t", "x", "t_x", "T"), [(365.0, 0, 0.0, 0.0), (30.0, 3, 100.0, 200.0), (3650.0, 40, 300.0, 320.0)]
)
def test_huge_a_and_b_give_the_homogeneous_dropout_limit(p, t, x, t_x, T) -> None:
    # With a, b -> ∞ at a / (a + b) = p, every customer drops out after each purchase with
    # probability p: E = (1 - (1 + p t/(α+T))^-(r+x)) / p * P(alive), and
    # P(alive) = 1 / (1 + [x > 0] p / (1-p) ((α+T)/(α+t_x))^(r+x)). The finite-n corrections
    # are O(x / (a+b)), ~1e-11 here.
    n = 1e12
    params = BetaGeoParams(r=2.19, alpha=42.35, a=p * n, b=(1 - p) * n)
    r, alpha = params.r, params.alpha
    alive = 1.0 / (1.0 + (x > 0) * p / (1 - p) * ((alpha + T) / (alpha + t_x)) ** (r + x))
    limit = -math.expm1(-(r + x) * math.log1p(p * t / (alpha + T))) / p * alive
    assert prob_alive(params, x, t_x, T) == pytest.approx(alive, rel=1e-9)
    assert expected_purchases(params, t, x, t_x, T) == pytest.approx(limit, rel=1e-9)
    assert expected_purchases(params, np.array([t]), x, t_x, T)[0] == pytest.approx(limit, rel=1e-9)


@pytest.mark.parametrize("params", BG_PARAM_SETS + [BetaGeoParams(r=2.19, alpha=42.35, a=1e5, b=7.7e6)])
@pytest.mark.parametrize("t", [1e-3, 1e-6])
def test_short_horizons_keep_full_relative_precision(params, t) -> None:
    # For t -> 0, G = (r+x) s (1 - (r+x+1) E[p] s / 2 + O(s^2)), s = t/(α+T), E[p] = a/(a+b+x).
    # 1 - H cancels here (~8 digits at t = 1e-6 for the CDNOW fit), the fallback does not.
    x, T = 2.0, 272.0
    k, s, mean_p = params.r + x, t / (params.alpha + T), params.a / (params.a + params.b + x)
    expected = k * s * (1 - (k + 1) * mean_p * s / 2)
    assert btyd.prediction._alive_purchases_scalar(params, t, x, T) == pytest.approx(expected, rel=1e-9)
    assert btyd.prediction._alive_purchases_array(params, np.array([t]), x, T)[0] == pytest.approx(expected, rel=1e-9)


DEGENERATE_BG = [
    BetaGeoParams(r=2.19, alpha=42.35, a=1000.0, b=77000.0),
    BetaGeoParams(r=2.18, alpha=42.66, a=4.7e10, b=3.3e12),
    BetaGeoParams(r=4.3e12, alpha=4.3e14, a=3.6, b=57.7),  # homogeneous purchase rates
    BetaGeoParams(r=50.0, alpha=5000.0, a=0.5, b=0.5),
    BetaGeoParams(r=0.243, alpha=30.9, a=1.0, b=2.426),
    BetaGeoParams(r=1e-13, alpha=1e-13, a=1e-13, b=1e-13),
    BetaGeoParams(r=1e13, alpha=1e13, a=1e13, b=1e13),
]


@pytest.mark.parametrize("params", DEGENERATE_BG)
@settings(max_examples=40, deadline=None)
@given(history=histories, t=st.floats(0.0, 3650.0), dt_=st.floats(0.0, 3650.0))
def test_degenerate_params_give_finite_non_negative_monotone_predictions(params, history, t, dt_) -> None:
    x, t_x, T = history
    near, far = expected_purchases(params, t, x, t_x, T), expected_purchases(params, t + dt_, x, t_x, T)
    assert math.isfinite(near) and math.isfinite(far)
    assert 0.0 <= near <= far * (1 + 1e-9)
    array = expected_purchases(params, np.array([t, t + dt_]), x, t_x, T)
    np.testing.assert_allclose(array, [near, far], rtol=1e-12, atol=1e-300)
    clv = customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, 20.0, t, 0.01)
    assert math.isfinite(clv) and clv >= 0.0
    clv_array = customer_lifetime_value(params, PUBLISHED_GG, np.array([x]), t_x, T, 20.0, t, 0.01)
    np.testing.assert_allclose(clv_array, [clv], rtol=1e-12, atol=1e-300)


def test_clv_fallback_matches_expected_purchases_without_discount() -> None:
    # On the robust path too, undiscounted CLV is expected purchases times spend.
    params = BetaGeoParams(r=2.19, alpha=42.35, a=1000.0, b=77000.0)
    x, t_x, T = np.array([0.0, 3.0, 40.0]), np.array([0.0, 100.0, 300.0]), np.array([50.0, 200.0, 320.0])
    clv = customer_lifetime_value(params, PUBLISHED_GG, x, t_x, T, 25.0, 360, 0.0)
    expected = expected_purchases(params, 360.0, x, t_x, T) * expected_average_spend(PUBLISHED_GG, x, 25.0)
    np.testing.assert_allclose(clv, expected, rtol=1e-10)
    scalar = customer_lifetime_value(params, PUBLISHED_GG, 3, 100.0, 200.0, 25.0, 360, 0.0)
    assert scalar == pytest.approx(expected[1], rel=1e-10)


# ---------------------------------------------------------------------------------------------
# Fitting at the boundary of the parameter space
# ---------------------------------------------------------------------------------------------


def test_beta_geo_nll_stays_accurate_for_huge_parameters(calibration) -> None:
    # As a, b -> ∞ at a/(a+b) = p the likelihood tends to the homogeneous drop-out one:
    # lnB(a, b+x) - lnB(a, b) -> x ln(1-p) and a/(b+x-1) -> p/(1-p).
    x, t_x, age = calibration["frequency"], calibration["recency"] / 7, calibration["T"] / 7
    r, alpha, p = 0.5, 4.0, 0.15
    log_params = np.log([r, alpha, p * 1e13, (1 - p) * 1e13])
    value, gradient = btyd.fitting._beta_geo_nll(log_params, x, t_x, age, np.ones_like(x), x > 0)
    alive = -(r + x) * np.log(alpha + age)
    dead = np.where(x > 0, np.log(p / (1 - p)) - (r + x) * np.log(alpha + t_x), -np.inf)
    ll = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha) + x * np.log(1 - p) + np.logaddexp(alive, dead)
    assert value == pytest.approx(-np.mean(ll), rel=1e-11)
    # Along the ridge the likelihood is flat: the gradient along (1, 1) in (log a, log b) vanishes.
    assert abs(gradient[2] + gradient[3]) < 1e-9


def test_beta_geo_gradient_matches_finite_differences_at_large_parameters(calibration) -> None:
    x, t_x, age = calibration["frequency"], calibration["recency"] / 7, calibration["T"] / 7
    args = (x, t_x, age, np.ones_like(x), x > 0)
    point = np.log([30.0, 200.0, 1e6, 5e6])
    _, gradient = btyd.fitting._beta_geo_nll(point, *args)
    step = 1e-5
    numeric = [
        (btyd.fitting._beta_geo_nll(point + step * e, *args)[0] - btyd.fitting._beta_geo_nll(point - step * e, *args)[0]) / (2 * step)
        for e in np.eye(4)
    ]
    np.testing.assert_allclose(gradient, numeric, rtol=1e-5, atol=1e-9)


def test_fit_beta_geo_on_homogeneous_dropout_is_finite_and_identifies_the_limit() -> None:
    # Everyone drops out after a purchase with the same probability p: the MLE of (a, b) runs
    # off to infinity along a / (a + b) = p. The fit must stop at finite parameters that
    # identify p and r / alpha, and predictions from them must be finite.
    truth = BetaGeoParams(r=2.19, alpha=42.35, a=0.013 * 1e12, b=0.987 * 1e12)
    rng = np.random.default_rng(1)
    ages = rng.uniform(100.0, 400.0, size=5000)
    x, t_x = _simulate_beta_geo(truth, ages, rng)
    fitted = fit_beta_geo(x, t_x, ages)
    values = np.array(list(fitted.to_dict().values()))
    assert np.all(np.isfinite(values)) and np.all(values <= math.exp(30) * max(1.0, ages.max() / 10))
    assert fitted.a + fitted.b > 1e6  # ran along the ridge
    assert fitted.a / (fitted.a + fitted.b) == pytest.approx(0.013, rel=0.15)
    assert fitted.r / fitted.alpha == pytest.approx(truth.r / truth.alpha, rel=0.1)
    clv = customer_lifetime_value(fitted, PUBLISHED_GG, x, t_x, ages, np.full(x.shape, 20.0), 365, 0.01)
    purchases = expected_purchases(fitted, 365.0, x, t_x, ages)
    assert np.all(np.isfinite(clv)) and np.all(clv >= 0)
    assert np.all(np.isfinite(purchases)) and np.all(purchases >= 0)


@pytest.mark.parametrize(
    ("frequency", "recency", "T"),
    [
        ([0, 0, 0, 0], [0, 0, 0, 0], [10, 20, 30, 40]),  # nobody came back: a, b unidentified
        ([3, 5, 2, 7], [30, 40, 20, 50], [30, 40, 20, 50]),  # everyone just bought: nobody dropped out
        ([1, 1, 1, 1, 1, 1], [5, 6, 7, 5, 6, 7], [300, 310, 320, 330, 340, 350]),  # one purchase, then gone
        ([10, 10, 10, 10], [100, 100, 100, 100], [100, 100, 100, 100]),  # perfectly homogeneous buyers
    ],
)
def test_fit_beta_geo_returns_finite_params_on_degenerate_data(frequency, recency, T) -> None:
    params = fit_beta_geo(frequency, recency, T)
    assert all(math.isfinite(v) and v > 0 for v in params.to_dict().values())
    values = expected_purchases(params, np.array([[30.0], [365.0]]), frequency, recency, T)
    assert np.all(np.isfinite(values)) and np.all(values >= 0)


# ---------------------------------------------------------------------------------------------
# Docstring examples
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Refits warm-started from a fit made before anyone had dropped out
# ---------------------------------------------------------------------------------------------


def test_fit_beta_geo_escapes_a_no_dropout_starting_point(fitted_bg: BetaGeoParams, calibration) -> None:
    # The previous fit of a young population in which nobody had dropped out yet sits at a -> 0,
    # b -> inf, where the likelihood is flat to within the optimiser's tolerance: warm-started
    # there, the fit used to stop at once (a = 1e-6, b = 1e8: P(alive) = 1.0 for everybody).
    no_dropout = BetaGeoParams(r=1.75, alpha=30.9, a=1e-6, b=1e8)
    params = fit_beta_geo(calibration["frequency"], calibration["recency"], calibration["T"], initial=no_dropout)
    for name in ("r", "alpha", "a", "b"):
        assert getattr(params, name) == pytest.approx(getattr(fitted_bg, name), rel=1e-5)
        assert getattr(params, name) == pytest.approx(getattr(PUBLISHED_BG_DAYS, name), rel=2e-3)
    # Six repeat purchases in the first month, then eight silent months.
    assert prob_alive(params, 6, 30.0, 270.0) < 0.01


def test_refits_see_dropout_that_happens_after_the_first_fit() -> None:
    """The valuation path of a stream: the first refit comes before anyone has dropped out (the
    MLE is then a -> 0, no drop-out), later refits start from the fit before them. Once the
    ``at_risk`` personas of the synthetic population (frequent buyers until 150-260 days before
    the end, silent since) have been gone for months, P(alive) must say so."""
    from datetime import datetime, timezone

    from models.config import ValueConfig
    from models.synthetic import STABLE_YEAR, generate_population
    from models.valuation import BtydPopulation, fit_valuation

    pop = generate_population(400, seed=1, personas=STABLE_YEAR)
    purchases = defaultdict(list)
    for event in pop.events:
        if event["type"] == "purchase":
            day = int(datetime.fromisoformat(event["timestamp"]).timestamp() // 86_400)
            purchases[event["customer_id"]].append(day)

    def population_on(day: int) -> BtydPopulation:
        population = BtydPopulation()
        for customer, days in purchases.items():
            seen = sorted({d for d in days if d <= day})
            if seen:
                population.update(customer, seen[0], seen[-1], len(seen) - 1, 50.0)
        return population

    def day_of(iso: str) -> int:
        return int(datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp() // 86_400)

    config = ValueConfig()
    early = fit_valuation(population_on(day_of("2025-01-29")), day_of("2025-01-29"), config)
    assert early.beta_geo is not None and early.beta_geo.a < 1e-3  # nobody has dropped out yet
    as_of = day_of("2025-10-04")
    later = fit_valuation(population_on(as_of), as_of, config, previous=early)
    cold = fit_valuation(population_on(as_of), as_of, config)
    assert later.beta_geo is not None and cold.beta_geo is not None
    at_risk = [
        (len(set(days)) - 1, max(days) - min(days), as_of - min(days))
        for customer, days in purchases.items()
        if pop.personas[customer] == "at_risk" and len(set(days)) >= 4 and as_of - max(days) >= 120
    ]
    assert len(at_risk) >= 20
    alive = [later.prob_alive(x, t_x, T) for x, t_x, T in at_risk]
    assert float(np.median(alive)) < 0.2
    assert max(alive) < 0.9
    # The same optimum as a fit from scratch on the same data.
    for name in ("r", "alpha", "a", "b"):
        assert getattr(later.beta_geo, name) == pytest.approx(getattr(cold.beta_geo, name), rel=1e-4)
