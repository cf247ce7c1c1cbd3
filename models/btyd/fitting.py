"""Maximum-likelihood fits of the BG/NBD and Gamma-Gamma models on per-customer sufficient
statistics (see :mod:`models.btyd` for the conventions and units)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, special

from schemas.errors import ConfigurationError, ContractError, ModelFitError
from models.btyd.parameters import ArrayLike, BetaGeoParams, GammaGammaParams

# ---------------------------------------------------------------------------------------------
# Fitting
# ---------------------------------------------------------------------------------------------


def _as_1d(name: str, values: ArrayLike) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ContractError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size == 0:
        raise ContractError(f"{name} is empty: at least one customer row is needed to fit")
    if not np.all(np.isfinite(array)):
        raise ContractError(f"{name} contains NaN or infinite values")
    return array


def _as_weights(weights: ArrayLike | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = _as_1d("weights", weights)
    if w.size != n:
        raise ContractError(f"weights has {w.size} rows, expected {n}")
    if np.any(w < 0):
        raise ContractError("weights must be non-negative customer counts")
    if not w.sum() > 0:
        raise ContractError("weights sum to zero: no customers to fit")
    return w


def _check_frequency(frequency: np.ndarray) -> None:
    if np.any(frequency < 0) or np.any(frequency != np.round(frequency)):
        raise ContractError("frequency must hold non-negative integers (repeat purchase counts)")


# Box on the log-parameters searched by the fits: every parameter stays in [e^-30, e^30], i.e.
# about [9.4e-14, 1.07e13] (alpha in the fit's rescaled time unit, see fit_beta_geo).
_LOG_PARAM_BOX = 30.0

# A fit warm-started from ``initial`` keeps its optimum unless the one from the default start has
# a mean negative log-likelihood lower by more than this (relative): on a ridge where the
# likelihood peaks only in a limit, both searches stop at points equal to rounding, and the warm
# one is kept so refits on growing data stay continuous.
_WARM_START_SLACK = 1e-9


def _minimize(fun: Any, x0: np.ndarray, args: tuple, what: str) -> np.ndarray:
    """Minimise a (value, gradient) objective over box-constrained log-parameters.

    L-BFGS-B with the analytic gradient does the work. The box (|log θ| <= 30) keeps a runaway
    line search away from overflow; at an interior optimum it does not bind. When the supremum of
    the likelihood is only reached in a limit (a parameter pair running off to infinity, see
    fit_beta_geo), the search follows the likelihood until it no longer improves measurably or
    until the box stops it, so the returned point is always finite. If the line search gives up
    away from a stationary point, a Nelder-Mead polish (no gradient, so immune to gradient
    round-off) takes over from where it stopped, inside the same box.
    """
    bounds = [(-_LOG_PARAM_BOX, _LOG_PARAM_BOX)] * len(x0)
    result = optimize.minimize(
        fun,
        x0,
        args=args,
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": 10_000, "ftol": 1e-15, "gtol": 1e-9},
    )
    best_x, best_f = result.x, result.fun
    gradient = fun(best_x, *args)[1]
    if not (result.success or np.max(np.abs(gradient)) < 1e-6) or not np.isfinite(best_f):
        polish = optimize.minimize(
            lambda theta: fun(theta, *args)[0],
            best_x if np.isfinite(best_f) else x0,
            method="Nelder-Mead",
            bounds=bounds,
            # 2,000 evaluations: where it helps (a line search stuck off the optimum) it converges
            # in a few hundred; on a flat ridge (parameters running off together, common in
            # Gamma-Gamma fits) 20,000 took 4 s of CPU for a relative gain of 1e-8.
            options={"maxfev": 2_000, "xatol": 1e-10, "fatol": 1e-14},
        )
        if np.isfinite(polish.fun) and (not np.isfinite(best_f) or polish.fun <= best_f):
            best_x, best_f = polish.x, polish.fun
    if not np.isfinite(best_f):
        raise ModelFitError(f"{what}: the likelihood could not be evaluated at any tried parameters")
    return np.clip(best_x, -_LOG_PARAM_BOX, _LOG_PARAM_BOX)


def _beta_geo_nll(
    log_params: np.ndarray,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    w: np.ndarray,
    repeat: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Weighted mean negative BG/NBD log-likelihood and its gradient w.r.t. log-parameters.

    Per customer (FHL 2005, eq. 6, in logs)::

        ll = A1 + A2 + logaddexp(A3, A4)
        A1 = lnΓ(r+x) - lnΓ(r) + r ln α
        A2 = lnB(a, b+x) - lnB(a, b)
        A3 = -(r+x) ln(α+T)                                  # still alive at T
        A4 = ln a - ln(b+x-1) - (r+x) ln(α+t_x)  if x > 0    # died right after the last purchase

    evaluated as ``A1 + A3 + A2 + log(1 + exp(A4 - A3))`` with every piece in a form that keeps
    its relative precision however large the parameters get: the Gamma-function differences as
    sums over the ``x`` purchases (``lnΓ(r+x) - lnΓ(r) = Σ_{j<x} ln(r+j)`` and so on, ``x`` being
    an integer) and ``r ln α - r ln(α+T)`` as ``-r log1p(T/α)``. The textbook form loses ~10
    digits once a, b or r, α run off towards the limits where the Beta or the Gamma mixing
    distribution degenerates (homogeneous drop-out or purchase rates), and the optimiser then
    stalls in the noise instead of following the likelihood.
    """
    r, alpha, a, b = np.exp(log_params)
    counts = np.rint(x).astype(np.intp)
    j = np.arange(counts.max(initial=0), dtype=float)
    cumulative = np.zeros(j.size + 1)

    def sum_below_x(terms: np.ndarray) -> np.ndarray:
        # Σ_{j < x} terms[j] for every row.
        np.cumsum(terms, out=cumulative[1:])
        return cumulative[counts]

    b_j, ab_j = b + j, a + b + j
    log_rise_r = sum_below_x(np.log(r + j))  # lnΓ(r+x) - lnΓ(r)
    psi_rise_r = sum_below_x(1.0 / (r + j))  # ψ(r+x) - ψ(r)
    # lnB(a, b+x) - lnB(a, b) = Σ ln((b+j)/(a+b+j)), each term in its precise form (the clamp
    # only keeps the branch np.where discards finite).
    log_beta_ratio = sum_below_x(np.where(a > b_j, np.log(b_j / ab_j), np.log1p(-np.minimum(a / ab_j, 0.5))))
    psi_rise_ab = sum_below_x(1.0 / ab_j)  # ψ(a+b+x) - ψ(a+b)
    psi_gap_b = sum_below_x(a / (b_j * ab_j))  # ψ(b+x) - ψ(b) - [ψ(a+b+x) - ψ(a+b)]

    log_age = np.log1p(T / alpha)  # ln((α+T)/α)
    log_gap = np.log1p((T - t_x) / (alpha + t_x))  # ln((α+T)/(α+t_x))
    # max(x, 1) keeps b+x-1 > 0 on the x == 0 rows, where A4 is masked out anyway.
    b_x_1 = b + np.maximum(x, 1.0) - 1.0
    log_odds = np.where(repeat, math.log(a) - np.log(b_x_1) + (r + x) * log_gap, -np.inf)  # A4 - A3
    ll = log_rise_r - r * log_age - x * np.log(alpha + T) + log_beta_ratio + np.logaddexp(0.0, log_odds)

    # Posterior weight of the "dropped out after the last purchase" branch (0 when x == 0).
    s = special.expit(log_odds)
    # Gradient w.r.t. log θ (chain rule for θ = exp(log θ) included), in cancellation-free forms.
    g_r = r * (psi_rise_r - log_age + s * log_gap)
    g_alpha = (r * T - x * alpha) / (alpha + T) - s * (r + x) * alpha * (T - t_x) / ((alpha + t_x) * (alpha + T))
    g_a = s - a * psi_rise_ab
    g_b = b * psi_gap_b - s * b / b_x_1

    total = w.sum()
    value = -np.dot(w, ll) / total
    grad = -np.array([np.dot(w, g) for g in (g_r, g_alpha, g_a, g_b)]) / total
    if not (np.isfinite(value) and np.all(np.isfinite(grad))):
        return np.inf, np.zeros(4)
    return float(value), grad


def fit_beta_geo(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    initial: BetaGeoParams | Sequence[float] | None = None,
) -> BetaGeoParams:
    """Fit the BG/NBD model by maximum likelihood.

    Parameters
    ----------
    frequency
        Repeat purchase counts ``x`` (non-negative integers), one per row.
    recency
        ``t_x`` in days: first to last purchase (0 when ``x == 0``).
    T
        Customer age in days: first purchase to the end of observation (``>= recency``).
    weights
        Number of customers sharing each row, so a compressed histogram of ``(x, t_x, T)``
        tuples gives the same fit as the expanded rows. Defaults to one customer per row.
    initial
        An extra starting point (``alpha`` in days), typically the previous fit; the search
        always also starts from the default, ``r = a = b = 1`` and ``alpha`` at a tenth of the
        largest ``T``, and the better of the two optima is returned (the one from ``initial``
        unless the default's is better by more than :data:`_WARM_START_SLACK`). A start on a
        flat boundary region (e.g. ``a -> 0``, ``b -> ∞``: a fit of a population in which
        nobody had dropped out yet) cannot trap the fit there once the data show drop-out.

    Returns
    -------
    BetaGeoParams
        The maximum-likelihood parameters, ``alpha`` in days. Always finite and positive.

    Raises
    ------
    ValueError
        On empty, mismatched, non-finite or inconsistent inputs.

    Notes
    -----
    The BG/NBD likelihood can keep increasing towards a boundary of the parameter space, and
    then has no finite maximiser. Typical cases:

    * ``a, b -> ∞`` with ``a / (a + b)`` fixed: the Beta drop-out distribution collapses to a
      point mass, i.e. every customer drops out after a purchase with the same probability
      ``p = a / (a + b)`` (data with homogeneous churn, or too few repeat purchases to see its
      heterogeneity; common for data simulated with a fixed ``p``).
    * ``r, alpha -> ∞`` with ``r / alpha`` fixed: the Gamma distribution of purchase rates
      collapses to the single rate ``r / alpha`` (homogeneous Poisson buyers).
    * ``a -> 0`` or ``b -> 0``: (almost) nobody, or (almost) everybody, drops out.

    The fit is searched over the box ``|ln θ| <= 30`` (``θ`` in [9.4e-14, 1.07e13]; for
    ``alpha`` in a time unit where the largest ``T`` is 10, so the box on ``alpha`` in days
    scales with the data). Along such a ridge it stops where the likelihood no longer improves
    in double precision, typically at ``a, b ~ 1e7 .. 1e13``, or at the box edge. The result is
    then a finite member of the family that is numerically equivalent to the limiting model:
    only the identified combinations (``a / (a + b)``, ``r / alpha``) are meaningful, the
    individual values are not, and they are not reproducible between runs or data sets. No
    warning is raised; check e.g. ``params.a + params.b > 1e6`` to detect the case. The
    prediction functions handle such parameters (see :func:`expected_purchases`); their results
    differ from those of the limiting homogeneous model by ``O((x + 1) / (a + b))`` relative.

    Examples
    --------
    >>> params = fit_beta_geo([0, 1, 2, 0, 3], [0, 20, 45, 0, 70], [90, 80, 60, 50, 75])
    >>> isinstance(params, BetaGeoParams)
    True
    """
    x = _as_1d("frequency", frequency)
    t_x = _as_1d("recency", recency)
    age = _as_1d("T", T)
    if not x.size == t_x.size == age.size:
        raise ContractError(
            f"frequency, recency and T must have the same length, got {x.size}, {t_x.size}, {age.size}"
        )
    w = _as_weights(weights, x.size)
    _check_frequency(x)
    if np.any(t_x < 0):
        raise ContractError("recency must be non-negative")
    if np.any(t_x > age):
        raise ContractError("recency must not exceed T (last purchase after the end of observation?)")
    if np.any(t_x[x == 0] != 0):
        raise ContractError("recency must be 0 for customers with frequency 0 (columns swapped?)")

    keep = w > 0
    x, t_x, age, w = x[keep], t_x[keep], age[keep], w[keep]

    # Only alpha carries the time unit, and the MLE is equivariant in it: fitting on time
    # rescaled so that max(T) == 10 and dividing alpha back gives the same optimum, while
    # keeping all log-parameters O(1) whether the caller uses days, hours or years.
    t_max = float(age.max())
    scale = 10.0 / t_max if t_max > 0 else 1.0
    default_start = np.zeros(4)  # log of r = a = b = 1 and alpha = 1 (a tenth of max T)
    starts = [default_start]
    if initial is not None:
        r0, alpha0, a0, b0 = (
            (initial.r, initial.alpha, initial.a, initial.b)
            if isinstance(initial, BetaGeoParams)
            else tuple(float(v) for v in initial)
        )
        start = np.array([r0, alpha0 * scale, a0, b0])
        if not np.all(np.isfinite(start) & (start > 0)):
            raise ConfigurationError(f"initial parameters must be positive and finite, got {initial!r}")
        if not np.array_equal(np.log(start), default_start):
            starts.insert(0, np.log(start))

    args = (x, t_x * scale, age * scale, w, x > 0)
    # Near a boundary of the parameter space the likelihood can be flat to within L-BFGS-B's
    # stopping tolerance over many orders of magnitude: from a = 6e-5, b = 2e6 (the previous fit,
    # made before anyone had dropped out) the gradient w.r.t. ln a, ln b is ~3e-8 and the search
    # stops at once, 0.48 nats per customer below the optimum, with P(alive) ~ 1 for everybody.
    # So a warm start is always paired with the default one, and the better optimum wins.
    best, best_nll, failure = None, np.inf, None
    for start in starts:
        try:
            found = _minimize(_beta_geo_nll, start, args, "fit_beta_geo")
        except RuntimeError as exc:  # the likelihood could not be evaluated from this start
            failure = exc
            continue
        nll = _beta_geo_nll(found, *args)[0]
        if best is None or nll < best_nll - _WARM_START_SLACK * max(1.0, abs(best_nll)):
            best, best_nll = found, nll
    if best is None:
        assert failure is not None
        raise failure
    r, alpha, a, b = np.exp(best)
    return BetaGeoParams(r=float(r), alpha=float(alpha / scale), a=float(a), b=float(b))


def _gamma_gamma_nll(
    log_params: np.ndarray,
    x: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    log_x: np.ndarray,
    log_m: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Weighted mean negative Gamma-Gamma log-likelihood (Fader & Hardie note 025, eq. 1a)."""
    p, q, v = np.exp(log_params)
    px = p * x
    log_xm_v = np.log(x * m + v)
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * math.log(v)
        + (px - 1.0) * log_m
        + px * log_x
        - (px + q) * log_xm_v
    )
    psi_pxq = special.digamma(px + q)
    d_p = x * (psi_pxq - special.digamma(px) + log_m + log_x - log_xm_v)
    d_q = psi_pxq - special.digamma(q) + math.log(v) - log_xm_v
    d_v = q / v - (px + q) / (x * m + v)

    total = w.sum()
    value = -np.dot(w, ll) / total
    grad = -np.array([np.dot(w, d) for d in (d_p, d_q, d_v)]) / total
    grad *= np.array([p, q, v])
    if not np.isfinite(value):
        return np.inf, np.zeros(3)
    return float(value), grad


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    weights: ArrayLike | None = None,
) -> GammaGammaParams:
    """Fit the Gamma-Gamma spend model by maximum likelihood.

    Rows with ``frequency == 0`` are dropped: they carry no repeat-spend information (their
    ``monetary_value`` is 0 by convention), exactly as in Fader & Hardie and ``lifetimes``.

    Parameters
    ----------
    frequency
        Repeat purchase counts ``x``, one per row.
    monetary_value
        Mean spend over the repeat purchase days ``m``; must be positive where ``x > 0``.
    weights
        Number of customers sharing each row; defaults to one.

    Returns
    -------
    GammaGammaParams
        The maximum-likelihood parameters (``v`` in the money unit of ``monetary_value``).

    Raises
    ------
    ValueError
        On empty or mismatched input, no repeat customers, or non-positive spend.

    Examples
    --------
    >>> gg = fit_gamma_gamma([1, 2, 3, 1, 4, 2], [12.0, 30.5, 18.0, 55.0, 22.0, 9.5])
    >>> gg.p > 0 and gg.q > 0 and gg.v > 0
    True
    """
    x = _as_1d("frequency", frequency)
    m = _as_1d("monetary_value", monetary_value)
    if x.size != m.size:
        raise ContractError(f"frequency and monetary_value must have the same length, got {x.size}, {m.size}")
    w = _as_weights(weights, x.size)
    _check_frequency(x)

    keep = (x > 0) & (w > 0)
    if not np.any(keep):
        raise ContractError("no customers with frequency > 0: the Gamma-Gamma model needs repeat buyers")
    x, m, w = x[keep], m[keep], w[keep]
    if np.any(m <= 0):
        raise ContractError("monetary_value must be positive for customers with frequency > 0")

    # v is a money scale and the MLE is equivariant in it: fit on spend divided by its
    # weighted mean so the optimiser sees O(1) numbers in cents, dollars or yen alike.
    scale = float(np.dot(w, m) / w.sum())
    m_scaled = m / scale
    log_params = _minimize(
        _gamma_gamma_nll,
        np.zeros(3),
        (x, m_scaled, w, np.log(x), np.log(m_scaled)),
        "fit_gamma_gamma",
    )
    p, q, v = np.exp(log_params)
    return GammaGammaParams(p=float(p), q=float(q), v=float(v * scale))
