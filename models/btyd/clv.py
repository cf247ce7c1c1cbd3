"""Customer lifetime value: Gamma-Gamma expected spend and the discounted CLV over a horizon
(as ``lifetimes.customer_lifetime_value`` with ``freq="D"``)."""

from __future__ import annotations

import functools
import math

import numpy as np

from schemas.errors import ConfigurationError
from models.btyd.parameters import ArrayLike, BetaGeoParams, DAYS_PER_MONTH, GammaGammaParams, _all_scalar, _to_float_or_array
from models.btyd.prediction import _FAST_MAX_C, _FAST_MAX_CANCELLATION, _FAST_MAX_R_EXCESS, _alive_purchases_gauss_one, _alive_purchases_robust, _survival_hyp_term, prob_alive

def expected_average_spend(gg: GammaGammaParams, x: ArrayLike, m: ArrayLike) -> float | np.ndarray:
    """Gamma-Gamma conditional expected spend per transaction.

    ``p * (v + x * m) / (p * x + q - 1)``: a credibility-weighted mix of the customer's own
    mean ``m`` and the population mean ``p * v / (q - 1)``, which is what a customer without
    repeat purchases (``x == 0``) gets whatever ``m`` holds. Meaningful for ``q > 1`` only.

    Parameters
    ----------
    gg
        Fitted Gamma-Gamma parameters.
    x
        Repeat purchase counts.
    m
        Mean spend over the repeat purchase days (ignored where ``x == 0``).

    Returns
    -------
    float or numpy.ndarray
        A float for scalar input, else an array of the broadcast shape.

    Examples
    --------
    >>> gg = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> round(expected_average_spend(gg, 0, 0.0), 2)
    35.22
    >>> round(expected_average_spend(gg, 2, 22.35), 2)
    24.66
    """
    p, q, v = gg.p, gg.q, gg.v
    if _all_scalar(x, m):
        if x <= 0:
            return p * v / (q - 1.0)
        return p * (v + x * m) / (p * x + q - 1.0)

    x, m = np.asarray(x, dtype=float), np.asarray(m, dtype=float)
    # np.where evaluates both branches; zero m on x == 0 rows so NaN spend cannot leak in.
    m = np.where(x > 0, m, 0.0)
    return _to_float_or_array(p * (v + x * m) / (p * x + q - 1.0))


@functools.lru_cache(maxsize=32)
def _month_grid(horizon_days: float, monthly_discount_rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Period boundaries ``0, 30, ..., 30 (n-1), horizon_days`` in days (``n = ceil(horizon / 30)``:
    whole months, then what is left of the horizon) and each period's discount factor
    ``(1 + rate) ** -(end / 30)``, at its end (month ``i``: ``(1 + rate) ** -i``).

    The horizon is covered exactly: a 365-day CLV sums 12 months and 5 days, not 13 months.
    Cached because a stream processor values every event with the same horizon and rate; the
    arrays are made read-only since they are shared between calls.
    """
    n_months = math.ceil(horizon_days / DAYS_PER_MONTH)
    days = np.minimum(DAYS_PER_MONTH * np.arange(n_months + 1, dtype=float), horizon_days)
    discounts = (1.0 + monthly_discount_rate) ** -(days[1:] / DAYS_PER_MONTH)
    days.flags.writeable = False
    discounts.flags.writeable = False
    return days, discounts


def customer_lifetime_value(
    bg: BetaGeoParams,
    gg: GammaGammaParams,
    x: ArrayLike,
    t_x: ArrayLike,
    T: ArrayLike,
    m: ArrayLike,
    horizon_days: float,
    monthly_discount_rate: float,
) -> float | np.ndarray:
    """Discounted expected spend over the next ``horizon_days`` (lifetimes' CLV, ``freq="D"``).

    Sums, over the periods ``(30 (i-1), min(30 i, horizon_days)]``, ``i = 1 .. ceil(horizon_days /
    30)``, the expected purchases in the period times :func:`expected_average_spend`, discounted
    at the period's end, ``(1 + monthly_discount_rate) ** -(end / 30)``: exactly the horizon, the
    last period partial when the horizon is not whole months (lifetimes' ``freq="D"`` CLV counts a
    partial month as a whole one, 390 days for a 365-day horizon).

    Parameters
    ----------
    bg, gg
        Fitted BG/NBD (``alpha`` in days) and Gamma-Gamma parameters.
    x, t_x, T, m
        Frequency, recency (days), age (days) and mean repeat spend; scalars or arrays.
    horizon_days
        Horizon in days (scalar, ``>= 0``), covered exactly (a partial last month is partial).
    monthly_discount_rate
        Discount rate per 30 days (scalar, ``> -1``).

    Returns
    -------
    float or numpy.ndarray
        A float for scalar input, else an array of the broadcast shape.

    Examples
    --------
    >>> bg = BetaGeoParams(r=0.243, alpha=30.898, a=0.793, b=2.426)
    >>> gg = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> clv = customer_lifetime_value(bg, gg, 2, 213, 272, 22.35, 365, 0.01)
    >>> 0 < clv < 100
    True
    """
    horizon_days = float(horizon_days)
    monthly_discount_rate = float(monthly_discount_rate)
    if not (math.isfinite(horizon_days) and horizon_days >= 0):
        raise ConfigurationError(f"horizon_days must be a non-negative finite number, got {horizon_days!r}")
    if not (math.isfinite(monthly_discount_rate) and monthly_discount_rate > -1):
        raise ConfigurationError(f"monthly_discount_rate must be > -1, got {monthly_discount_rate!r}")
    n_months = math.ceil(horizon_days / DAYS_PER_MONTH)

    # E(t) = G(t) * P(alive) with G(t) = K * (1 - H(t)), K = (a+b+x-1)/(a-1), so the purchases
    # expected in month i are P(alive) * K * (H(t_{i-1}) - H(t_i)): P(alive), K and the spend are
    # computed once per customer and only the hypergeometric term is evaluated per month. Where
    # the closed form is not trusted (see _alive_purchases_fast) for a customer, all of that
    # customer's month boundaries come from the series instead, so the monthly increments stay
    # consistent with each other.
    r, alpha, a, b = bg.r, bg.alpha, bg.a, bg.b
    if _all_scalar(x, t_x, T, m):
        if n_months == 0:
            return 0.0
        fx, fT = float(x), float(T)
        scale = prob_alive(bg, x, t_x, T) * expected_average_spend(gg, x, m)
        days, discounts = _month_grid(horizon_days, monthly_discount_rate)
        c = a + b + fx - 1.0
        if 0.0 < c <= _FAST_MAX_C and r - (a + b - 1.0) <= _FAST_MAX_R_EXCESS and a != 1.0:
            k_factor = c / (a - 1.0)
            # One vectorised hyp2f1 call over the month boundaries: ~3x cheaper than a Python
            # loop of scalar calls for a one-year horizon.
            hyp = _survival_hyp_term(bg, days, fx, fT)
            increments = k_factor * (hyp[:-1] - hyp[1:])
            total = float(np.dot(increments, discounts))
            # The acceptance test of _alive_purchases_fast, reduced to the month boundaries where
            # it binds: G(t) is increasing and |K H(t)| / G(t) decreasing in t.
            first, last = float(increments[0]), k_factor * (1.0 - float(hyp[-1]))
            if (
                math.isfinite(total)
                and 0.0 <= first
                and last <= (r + fx) * days[-1] / (alpha + fT)
                and abs(k_factor * float(hyp[1])) <= _FAST_MAX_CANCELLATION * first
            ):
                return scale * max(total, 0.0)
        alive = None
        if math.isfinite(fx + fT):
            with np.errstate(all="ignore"):
                alive = _alive_purchases_gauss_one(bg, days, fx, fT)
        if alive is None:
            alive = _alive_purchases_robust(bg, days, fx, fT)
        return scale * max(float(np.dot(np.diff(alive), discounts)), 0.0)

    x, t_x = np.asarray(x, dtype=float), np.asarray(t_x, dtype=float)
    T, m = np.asarray(T, dtype=float), np.asarray(m, dtype=float)
    shape = np.broadcast_shapes(x.shape, t_x.shape, T.shape, m.shape)
    if n_months == 0:
        return _to_float_or_array(np.zeros(shape))
    scale = prob_alive(bg, x, t_x, T) * expected_average_spend(gg, x, m)
    days, discounts = _month_grid(horizon_days, monthly_discount_rate)
    # Month boundaries along a new leading axis, broadcast against the customers.
    xt_shape = np.broadcast_shapes(x.shape, T.shape)
    trailing = (1,) * len(xt_shape)
    with np.errstate(all="ignore"):
        c = a + b + x - 1.0
        k_factor = c / (a - 1.0) if a != 1.0 else np.full(c.shape, np.nan)
        hyp = _survival_hyp_term(bg, days.reshape((-1,) + trailing), x, T)
        increments = k_factor * (hyp[:-1] - hyp[1:])
        total = np.array(np.sum(increments * discounts.reshape((-1,) + trailing), axis=0), dtype=float)
        ok = (
            np.isfinite(total)
            & (c > 0.0)
            & (c <= _FAST_MAX_C)
            & (r - (a + b - 1.0) <= _FAST_MAX_R_EXCESS)
            & (increments[0] >= 0.0)
            & (k_factor * (1.0 - hyp[-1]) <= (r + x) * days[-1] / (alpha + T))
            & (np.abs(k_factor * hyp[1]) <= _FAST_MAX_CANCELLATION * increments[0])
        )
    if not ok.all():
        bad = ~np.broadcast_to(ok, xt_shape)
        x_bad, T_bad = (np.broadcast_to(v, xt_shape)[bad] for v in (x, T))
        alive = _alive_purchases_robust(bg, days[:, None], x_bad, T_bad)
        total[bad] = discounts @ np.diff(alive, axis=0)
    return _to_float_or_array(scale * np.maximum(total, 0.0))
