"""Buy 'Til You Die (BTYD) models of customer lifetime value.

Two classic probability models, fitted by maximum likelihood on per-customer sufficient
statistics, and the per-customer predictions derived from them:

* BG/NBD (Fader, Hardie & Lee 2005, "Counting Your Customers the Easy Way") for *how often* a
  customer buys and whether they are still "alive".
* Gamma-Gamma (Fader & Hardie 2013, http://www.brucehardie.com/notes/025/) for *how much* they
  spend per repeat purchase.

The sufficient statistics follow the ``lifetimes`` conventions: ``x`` (frequency) is the number
of *repeat* purchase days, ``t_x`` (recency) the time from the first to the last purchase, ``T``
the time from the first purchase to the end of observation, and ``m`` the mean spend over the
repeat purchase days.

All time quantities (``t_x``, ``T``, the prediction horizon ``t`` and the fitted ``alpha``) are in
DAYS; converting from other units is the caller's job. Only ``alpha`` carries a time unit, so
parameters published in weeks convert with ``alpha_days = 7 * alpha_weeks``.

The prediction functions accept Python scalars (fast ``math`` path, for use per event in the
stream processor) or numpy arrays (broadcast, for batch scoring). They return finite,
non-negative values for any valid parameters, including the degenerate ones a fit produces when
its likelihood peaks at a boundary (see :func:`fit_beta_geo`): the hypergeometric closed form is
used only where it is known to be accurate, and a quadrature / series evaluation elsewhere.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Union

import numpy as np
from scipy import linalg, optimize, special

from schemas.errors import ConfigurationError, ContractError, ModelFitError

__all__ = [
    "BetaGeoParams",
    "GammaGammaParams",
    "fit_beta_geo",
    "fit_gamma_gamma",
    "prob_alive",
    "expected_purchases",
    "expected_average_spend",
    "customer_lifetime_value",
]

ArrayLike = Union[float, int, np.ndarray, Sequence[float]]

# lifetimes' ``customer_lifetime_value(..., freq="D")`` counts a month as 30 days; kept so that
# our CLV numbers are comparable with it.
DAYS_PER_MONTH = 30

# Types accepted by the scalar fast path. np.float64 is a float subclass; numpy integers and
# float32 are not, so they are listed explicitly.
_SCALAR_TYPES = (int, float, np.integer, np.floating)


def _all_scalar(*values: Any) -> bool:
    for value in values:
        if not isinstance(value, _SCALAR_TYPES):
            return False
    return True


def _to_float_or_array(result: np.ndarray) -> float | np.ndarray:
    # 0-d results (numpy scalars passed through the array path) are returned as plain floats
    # so callers get the same type as from the scalar path.
    return float(result) if np.ndim(result) == 0 else result


def _check_positive_finite(owner: str, name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0.0):
        raise ConfigurationError(f"{owner}.{name} must be a positive finite number, got {value!r}")
    return value


def _params_from_dict(cls: type, data: Mapping[str, float]) -> Any:
    names = [f.name for f in fields(cls)]
    missing = [name for name in names if name not in data]
    if missing:
        raise ContractError(f"{cls.__name__}.from_dict: missing key(s) {missing}; expected {names}")
    # Extra keys are ignored on purpose: stored parameter records may carry metadata
    # (fit time, number of customers, ...) next to the parameters.
    return cls(**{name: float(data[name]) for name in names})


@dataclass(frozen=True, slots=True)
class BetaGeoParams:
    """Parameters of the BG/NBD purchase model, with ``alpha`` in days.

    Purchase rates are Gamma(shape ``r``, rate ``alpha``) across customers, so ``alpha`` is a
    time scale; the per-purchase drop-out probability is Beta(``a``, ``b``).

    Examples
    --------
    >>> params = BetaGeoParams(r=0.243, alpha=30.9, a=0.793, b=2.426)
    >>> BetaGeoParams.from_dict(params.to_dict()) == params
    True
    """

    r: float
    alpha: float
    a: float
    b: float

    def __post_init__(self) -> None:
        for f in fields(self):
            # object.__setattr__ because the dataclass is frozen; values are normalised to
            # float so numpy scalars never leak into the hot path or into serialised dicts.
            object.__setattr__(
                self, f.name, _check_positive_finite("BetaGeoParams", f.name, getattr(self, f.name))
            )

    def to_dict(self) -> dict[str, float]:
        """Return the parameters as a plain ``{"r", "alpha", "a", "b"}`` dict."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> BetaGeoParams:
        """Build from a mapping with keys ``r``, ``alpha``, ``a``, ``b`` (extra keys ignored)."""
        return _params_from_dict(cls, data)


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Parameters of the Gamma-Gamma spend model (``v`` is in money units).

    A customer's mean spend per transaction is ``p / nu`` with ``nu ~ Gamma(q, v)``; the
    population mean spend ``p * v / (q - 1)`` is finite only for ``q > 1``.

    Examples
    --------
    >>> gg = GammaGammaParams(p=6.25, q=3.74, v=15.44)
    >>> gg.to_dict()
    {'p': 6.25, 'q': 3.74, 'v': 15.44}
    """

    p: float
    q: float
    v: float

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(
                self, f.name, _check_positive_finite("GammaGammaParams", f.name, getattr(self, f.name))
            )

    def to_dict(self) -> dict[str, float]:
        """Return the parameters as a plain ``{"p", "q", "v"}`` dict."""
        return {"p": self.p, "q": self.q, "v": self.v}

    @classmethod
    def from_dict(cls, data: Mapping[str, float]) -> GammaGammaParams:
        """Build from a mapping with keys ``p``, ``q``, ``v`` (extra keys ignored)."""
        return _params_from_dict(cls, data)


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


# ---------------------------------------------------------------------------------------------
# Per-customer predictions
# ---------------------------------------------------------------------------------------------


def prob_alive(params: BetaGeoParams, x: ArrayLike, t_x: ArrayLike, T: ArrayLike) -> float | np.ndarray:
    """Probability that a customer with history ``(x, t_x, T)`` is still alive.

    ``P = 1 / (1 + [x > 0] * a / (b + x - 1) * ((alpha + T) / (alpha + t_x)) ** (r + x))``
    (Fader, Hardie & Lee 2008, note 021), evaluated as a logistic of the log-odds so that very
    long-lapsed customers give a tiny probability instead of an overflow.

    Parameters
    ----------
    params
        Fitted BG/NBD parameters (``alpha`` in days).
    x, t_x, T
        Frequency, recency (days) and age (days); scalars or broadcastable arrays.

    Returns
    -------
    float or numpy.ndarray
        A float for scalar input, else an array of the broadcast shape.

    Examples
    --------
    >>> params = BetaGeoParams(r=0.243, alpha=30.898, a=0.793, b=2.426)
    >>> prob_alive(params, 0, 0, 272)
    1.0
    >>> round(prob_alive(params, 2, 213, 272), 4)
    0.7266
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if _all_scalar(x, t_x, T):
        # In BG/NBD customers can only drop out right after a purchase, so someone who never
        # came back after the first purchase is alive with certainty.
        if x <= 0:
            return 1.0
        log_odds_dead = math.log(a / (b + x - 1.0)) + (r + x) * math.log((alpha + T) / (alpha + t_x))
        if log_odds_dead > 0.0:
            odds_alive = math.exp(-log_odds_dead)
            return odds_alive / (1.0 + odds_alive)
        return 1.0 / (1.0 + math.exp(log_odds_dead))

    x, t_x, T = np.asarray(x, dtype=float), np.asarray(t_x, dtype=float), np.asarray(T, dtype=float)
    # Same operation order as the scalar path, so both agree to the last few ulps.
    log_odds_dead = np.log(a / (b + np.maximum(x, 1.0) - 1.0)) + (r + x) * np.log((alpha + T) / (alpha + t_x))
    result = np.where(x > 0, special.expit(-log_odds_dead), 1.0)
    return _to_float_or_array(result)


# ---- evaluation of G(t) = E[purchases in (0, t] | alive] ------------------------------------------
#
# Both prediction functions reduce to ``G(t) = K * (1 - H(t))``, the expected number of purchases
# in the next ``t`` days of a customer known to be alive now, with ``K = (a+b+x-1)/(a-1)`` and
# ``H`` the hypergeometric term of _survival_hyp_term. The closed form is fast but fragile:
# scipy's hyp2f1 returns NaN/inf, or finite values off by up to ~1e-5 relative, once its
# parameters are large (fits where the Beta drop-out distribution collapses to a point mass run
# a, b -> 1e5 and beyond); ``1 - H`` cancels for short horizons and for huge |K| (b >> a, or a
# near 1); and the form is singular at a == 1 and at a + b + x == 1. So it is used only where it
# is known to be accurate (_alive_purchases_fast). Elsewhere G is computed as what it is, an
# expectation over the customer's drop-out probability p ~ Beta(a, b+x) (given the history and
# being alive) of a bounded smooth function of p:
#
#     G(t) = E_p[g(p)],  g(p) = (1 - (1 + p s)^-(r+x)) / p,  s = t / (α+T),     (g(0) = (r+x) s)
#
# (for a fixed p, purchases come at Gamma(r+x, α+T)-distributed rate λ and the customer survives
# each with probability 1-p, so E[purchases | λ, p] = (1 - exp(-λ p t)) / p). That expectation
# is taken by Gauss quadrature for the Beta distribution (_alive_purchases_gauss), which is
# exact to rounding within 16-256 nodes unless the Beta is diffuse *and* the horizon is very long,
# and failing that by an exact series of positive terms (_alive_purchases_series).

# Relative nudge of the third hyp2f1 parameter, see _survival_hyp_term.
_HYP2F1_C_NUDGE = 1e-11
# The closed form is accepted only where scipy's hyp2f1(a+b-1-r, a-1; c; z), c = a+b+x-1, was
# found accurate: 0 < c <= _FAST_MAX_C and a+b-1-r >= -_FAST_MAX_R_EXCESS (for larger c or
# r >> a+b it drifts by up to 1e-9 .. 1e-5 and, for r >> a+b, by up to 20% while looking
# plausible), and only while |K * H| <= _FAST_MAX_CANCELLATION * G, i.e. at most 3 of the ~16
# digits of H cancel in 1 - H. Within those limits it agreed with the exact series to < 1e-10
# relative over ~100k random points spanning a, b in [1e-3, 3e3], r in [1e-3, 1e3], alpha in
# [1e-2, 1e5], x <= 630, t in [0.01, 3650] days, and to < 2.4e-10 on a grid reaching a = 1e5,
# b = 7.7e6 (the worst cases sit at c ~ 500 with a ~ 500).
_FAST_MAX_C = 500.0
_FAST_MAX_R_EXCESS = 30.0
_FAST_MAX_CANCELLATION = 1e3
# Gauss rules tried in turn; a value is accepted once two consecutive rules agree to
# _GAUSS_RTOL relative (the larger rule is then typically exact to rounding).
_GAUSS_NODES = (16, 32, 64, 128, 256)
_GAUSS_RTOL = 1e-12
# The series stops once a rigorous bound on the neglected tail is below this fraction of the sum.
_SERIES_RTOL = 2.0**-56
# Hard cap on the number of series terms per value (each costs ~0.2-0.5 us), reached only for
# absurd horizons (about (r+x) * t/(α+T) > 2e5 expected purchases); the partial sum is returned.
_SERIES_MAX_TERMS = 1 << 18
# Bound on the (values x terms) block evaluated at once, to cap memory.
_SERIES_BLOCK_ELEMENTS = 1 << 18


def _hyp2f1(a1: float, a2: float, c: Any, z: Any) -> Any:
    """``scipy.special.hyp2f1``, re-evaluating non-finite results with a nudged ``c``."""
    value = special.hyp2f1(a1, a2, c, z)
    if np.ndim(value) == 0:
        if math.isfinite(value):
            return value
        return special.hyp2f1(a1, a2, c * (1.0 + _HYP2F1_C_NUDGE), z)
    bad = ~np.isfinite(value)
    if bad.any():
        c_bad = np.broadcast_to(c, value.shape)[bad]
        z_bad = np.broadcast_to(z, value.shape)[bad]
        value[bad] = special.hyp2f1(a1, a2, c_bad * (1.0 + _HYP2F1_C_NUDGE), z_bad)
    return value


def _survival_hyp_term(params: BetaGeoParams, t: Any, x: Any, T: Any, power: Any = np.power) -> Any:
    """``((α+T)/(α+T+t))^(r+x) * 2F1(r+x, b+x; a+b+x-1; t/(α+T+t))``.

    Evaluated through Euler's transformation
    ``2F1(A, B; C; z) = (1-z)^(C-A-B) 2F1(C-A, C-B; C; z)``, which turns the product into
    ``(1-z)^(a-1) * 2F1(a+b-1-r, a-1; a+b+x-1; z)``: the same value, but without the
    ``(1-z)^(-(r+x))`` blow-up of the plain form, which overflows (or loses precision in
    scipy's hyp2f1) for heavy buyers and long horizons. lifetimes only falls back to this form
    once the plain one has already overflowed.

    When ``r - a`` is an integer (round, hand-pinned parameters), ``c - a1 - a2 = x + 1 + r - a``
    is an integer too, and for z near 1 scipy's special case for that returns inf/NaN once c is
    large (~100 and above) and is ~500x slower everywhere. The function is smooth in ``c``, so
    ``c`` is then moved by a relative 1e-11, which keeps scipy on its generic branch at a cost of
    ~1e-11 relative accuracy (checked against mpmath).

    This is the fast path only: its result can be NaN/inf or inaccurate for large parameters,
    see :func:`_alive_purchases_fast` for where it is trusted.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    one_minus_z = (alpha + T) / (alpha + T + t)
    z = t / (alpha + T + t)
    c = a + b + x - 1.0
    r_minus_a = r - a
    if abs(r_minus_a - round(r_minus_a)) < 1e-9:
        c = c * (1.0 + _HYP2F1_C_NUDGE)
    return power(one_minus_z, a - 1.0) * _hyp2f1(a + b - 1.0 - r, a - 1.0, c, z)


def _alive_purchases_fast(params: BetaGeoParams, t: Any, x: Any, T: Any) -> tuple[Any, Any, Any, Any]:
    """Closed-form ``G = K * (1 - H)`` on arrays, with a mask of the entries it can be trusted on.

    Returns ``(K, H, G, ok)`` broadcast together. ``ok`` requires ``0 < c <= _FAST_MAX_C``
    (``c = a+b+x-1``), a finite ``G`` inside its valid range ``0 <= G <= (r+x) t/(α+T)`` (the
    expected purchases of a customer who never drops out; so ``H`` lies in [0, 1] for a > 1 and
    is >= 1 for a < 1, where K < 0), and little cancellation in ``1 - H``. ``t == 0`` gives
    exactly ``G = 0``, which is always trusted.
    """
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(all="ignore"):
        c = a + b + x - 1.0
        k_factor = c / (a - 1.0) if a != 1.0 else np.full(np.shape(c), np.nan)
        hyp = _survival_hyp_term(params, t, x, T)
        value = k_factor * (1.0 - hyp)
        ok = (
            (c > 0.0)
            & (c <= _FAST_MAX_C)
            & (r - (a + b - 1.0) <= _FAST_MAX_R_EXCESS)
            & (value >= 0.0)
            & (value <= (r + x) * t / (alpha + T))
            & (np.abs(k_factor * hyp) <= _FAST_MAX_CANCELLATION * value)
        )
    zero = np.asarray(t) == 0.0
    value = np.where(zero, 0.0, value)
    return k_factor, hyp, value, ok | zero


@functools.lru_cache(maxsize=4096)
def _beta_gauss_rule(a: float, beta: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in [0, 1] and weights (summing to 1) of the ``n``-point Gauss rule for Beta(a, beta).

    Golub-Welsch: the nodes are the eigenvalues of the Jacobi matrix of the orthogonal
    polynomials of the Beta distribution (shifted Jacobi polynomials), written here in a form
    that stays finite and accurate for any a, beta > 0, including ~1e13. Cached: a stream
    processor asks for the same few (a, b + x) pairs over and over.
    """
    m = a + beta
    i = np.arange(1, n, dtype=float)
    diag = np.empty(n)
    diag[0] = a / m  # the mean
    diag[1:] = (2.0 * i * i + 2.0 * i * (m - 1.0) + a * (m - 2.0)) / ((2.0 * i + m - 2.0) * (2.0 * i + m))
    off_sq = np.empty(n - 1)
    off_sq[0] = a * beta / (m * m * (m + 1.0))  # the variance
    j = i[1:]
    off_sq[1:] = (
        j * (j + beta - 1.0) * (j + a - 1.0) * (j + m - 2.0)
        / ((2.0 * j + m - 2.0) ** 2 * (2.0 * j + m - 1.0) * (2.0 * j + m - 3.0))
    )
    nodes, vectors = linalg.eigh_tridiagonal(diag, np.sqrt(off_sq))
    weights = vectors[0] ** 2
    weights /= weights.sum()
    nodes = np.clip(nodes, 0.0, 1.0)
    nodes.flags.writeable = False
    weights.flags.writeable = False
    return nodes, weights


def _alive_purchases_gauss(
    params: BetaGeoParams, t: np.ndarray, x: np.ndarray, T: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``G = E_p[g(p)]`` (see the comment above _HYP2F1_C_NUDGE) by Gauss quadrature.

    Takes 1-d arrays of equal length; returns the values and a mask of those that converged
    (two consecutive rules of _GAUSS_NODES agree to _GAUSS_RTOL). ``g(p, s)`` is increasing in
    ``s`` for every ``p``, so with one rule the values are exactly monotone in ``t``.
    """
    r, a, b = params.r, params.a, params.b
    value = np.full(t.size, np.nan)
    converged = np.zeros(t.size, dtype=bool)
    rows = np.flatnonzero(np.isfinite(t) & np.isfinite(x) & np.isfinite(T) & (t >= 0.0))
    k = r + x[rows][:, None]
    with np.errstate(all="ignore"):
        s = (t[rows] / (params.alpha + T[rows]))[:, None]
        previous = None
        for n in _GAUSS_NODES:
            # One rule per distinct b + x; each value is paired with the nodes of its own rule.
            x_values, which = np.unique(x[rows], return_inverse=True)
            try:
                rules = [_beta_gauss_rule(a, b + x_value, n) for x_value in x_values.tolist()]
            except (ValueError, np.linalg.LinAlgError):
                break
            nodes = np.stack([rule[0] for rule in rules])[which]
            weights = np.stack([rule[1] for rule in rules])[which]
            u = s * nodes
            g = np.where(u > 0.0, -np.expm1(-k * np.log1p(u)) / np.where(u > 0.0, u, 1.0), k) * s
            current = np.einsum("ij,ij->i", g, weights)
            if previous is not None:
                done = np.abs(current - previous) <= _GAUSS_RTOL * current
                value[rows[done]] = current[done]
                converged[rows[done]] = True
                keep = ~done
                rows, k, s, current = rows[keep], k[keep], s[keep], current[keep]
                if not rows.size:
                    break
            previous = current
    return value, converged


def _alive_purchases_gauss_one(params: BetaGeoParams, t: np.ndarray, x: float, T: float) -> np.ndarray | None:
    """:func:`_alive_purchases_gauss` for one customer (finite ``x``, ``T``) and 1-d horizons ``t >= 0``.

    The scalar paths' version: one rule serves all horizons, so there is no grouping to do.
    Returns None unless every value converged.
    """
    k = params.r + x
    s = t / (params.alpha + T)
    previous = None
    for n in _GAUSS_NODES:
        try:
            nodes, weights = _beta_gauss_rule(params.a, params.b + x, n)
        except (ValueError, np.linalg.LinAlgError):
            return None
        if nodes[0] <= 0.0:  # only for absurdly concentrated rules; g(0) needs the limit
            return None
        u = np.multiply.outer(s, nodes)
        current = (-np.expm1(-k * np.log1p(u)) / nodes) @ weights
        if previous is not None and np.all(np.abs(current - previous) <= _GAUSS_RTOL * current):
            return current
        previous = current
    return None


def _alive_purchases_series(params: BetaGeoParams, t: Any, x: Any, T: Any) -> np.ndarray:
    """``G(t)``, the expected purchases in ``(0, t]`` of a customer alive now, as a positive series.

    Given the history, an alive customer's drop-out probability is ``p ~ Beta(a, b+x)`` and the
    number of purchase opportunities in the next ``t`` days (purchases of a customer who would
    never drop out) is ``N ~ NegBin(r+x, z)``, ``z = t/(α+T+t)``. Purchase ``n+1`` happens iff the
    customer survived the ``n`` previous ones (probability ``S_n = E[(1-p)^n]``) and ``N > n``::

        G = sum_{n>=0} S_n * Q_n,   S_n = prod_{j<n} (b+x+j)/(a+b+x+j),   Q_n = I_z(n+1, r+x)

    (``I_z`` the regularised incomplete beta function, the upper tail of the negative binomial).
    It equals the hypergeometric closed form (FHL 2005 eq. 10) but every term is positive: there
    is no ``1 - H`` cancellation, no singularity at ``a = 1`` or ``a + b + x = 1``, and it is
    monotone in ``t`` term by term. In the ``a, b -> ∞`` limit (``p -> a/(a+b)``) it tends to the
    homogeneous-drop-out value ``(1 - (1 + p t/(α+T))^-(r+x)) / p``.

    Summation stops once the rest is provably below ``_SERIES_RTOL`` times the sum: for ``n >= N``
    it is at most ``S_N Q_N * min(A1, A2)`` with ``A1 = (a+b+x-1+N)/(a-1)`` (exact sum of
    ``S_n/S_N``, a > 1) and ``A2 = 1/(1-q)``, ``q`` a bound on the negative binomial's
    probability ratio past ``N``. About ``min(40 (a+b)/a, (r+x) t/(α+T) + 10 sd)`` terms are needed.
    """
    r, a, b = params.r, params.a, params.b
    t, x, T = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (t, x, T)))
    shape = t.shape
    t, x, T = t.ravel(), x.ravel(), T.ravel()
    valid = np.isfinite(t) & np.isfinite(x) & np.isfinite(T)
    with np.errstate(all="ignore"):
        z_all = t / (params.alpha + T + t)
    out = np.where(valid, 0.0, np.nan)  # G = 0 for t <= 0
    rows = np.flatnonzero(valid & (t > 0.0) & (z_all > 0.0) & (z_all < 1.0))
    k, beta, z = r + x[rows], b + x[rows], z_all[rows]
    log_z, log_1mz = np.log(z), np.log1p(-z)
    total = np.zeros(rows.size)
    survival = np.ones(rows.size)  # S_start
    start, width = 0, 16
    with np.errstate(all="ignore"):
        while rows.size:
            n = np.arange(start, start + width, dtype=float)
            beta_n = beta[:, None] + n
            steps = np.cumprod(beta_n / (a + beta_n), axis=1)  # S_{n+1} / S_start
            surv = np.empty_like(steps)
            surv[:, 0] = survival
            surv[:, 1:] = survival[:, None] * steps[:, :-1]
            # Q_n for the block: Q_end = P(N > end) from the incomplete beta function, plus the
            # negative binomial probabilities P(N = m), start < m <= end, summed from the end.
            # Those come from an exact log-pmf at the block start and the ratios
            # P(N = m+1) / P(N = m) = (k+m) z / (m+1) within the block.
            end = start + width - 1
            tail_end = special.betainc(end + 1.0, k, z)
            log_pmf_start = -special.betaln(k, start + 1.0) - np.log(k + start) + start * log_z + k * log_1mz
            log_ratio = np.log((k[:, None] + n[:-1]) / (n[:-1] + 1.0)) + log_z[:, None]
            pmf = np.exp(log_pmf_start[:, None] + np.cumsum(log_ratio, axis=1))  # m = start+1 .. end
            tail_prob = np.empty_like(steps)
            tail_prob[:, -1] = tail_end
            tail_prob[:, :-1] = tail_end[:, None] + np.cumsum(pmf[:, ::-1], axis=1)[:, ::-1]
            total += np.sum(surv * tail_prob, axis=1)
            start += width
            survival = survival * steps[:, -1]
            # Bound the remaining sum from n = start on (see the docstring).
            q = z * np.maximum(1.0, (k + start + 1.0) / (start + 2.0))
            bound = np.where(q < 1.0, 1.0 / (1.0 - q), np.inf)
            if a > 1.0:
                bound = np.minimum(bound, (a + beta - 1.0 + start) / (a - 1.0))
            done = (survival * tail_end * bound <= _SERIES_RTOL * total) | (start >= _SERIES_MAX_TERMS)
            if done.any():
                out[rows[done]] = total[done]
                keep = ~done
                rows, k, beta, z, log_z, log_1mz, total, survival = (
                    v[keep] for v in (rows, k, beta, z, log_z, log_1mz, total, survival)
                )
            width = int(min(2 * width, 256, max(16, _SERIES_BLOCK_ELEMENTS // max(rows.size, 1))))
    return out.reshape(shape)


def _alive_purchases_robust(params: BetaGeoParams, t: Any, x: Any, T: Any) -> np.ndarray:
    """``G(t)`` on broadcast arrays without the closed form: Gauss quadrature, else the series."""
    t, x, T = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (t, x, T)))
    shape = t.shape
    t, x, T = t.ravel(), x.ravel(), T.ravel()
    value, converged = _alive_purchases_gauss(params, t, x, T)
    rest = ~converged
    if rest.any():
        value[rest] = _alive_purchases_series(params, t[rest], x[rest], T[rest])
    return value.reshape(shape)


def _alive_purchases_scalar(params: BetaGeoParams, t: float, x: float, T: float) -> float:
    """``G(t)`` for Python floats: the closed form if trusted, else the robust evaluation."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    c = a + b + x - 1.0
    if t > 0.0 and 0.0 < c <= _FAST_MAX_C and r - (a + b - 1.0) <= _FAST_MAX_R_EXCESS and a != 1.0:
        try:
            hyp = float(_survival_hyp_term(params, t, x, T, power=math.pow))
        except (OverflowError, ValueError):
            hyp = math.nan
        k_factor = c / (a - 1.0)
        value = k_factor * (1.0 - hyp)
        # The acceptance test of _alive_purchases_fast (NaN fails every comparison).
        if 0.0 <= value <= (r + x) * t / (alpha + T) and abs(k_factor * hyp) <= _FAST_MAX_CANCELLATION * value:
            return value
    elif t == 0.0:
        return 0.0
    if t > 0.0 and math.isfinite(t + x + T):
        with np.errstate(all="ignore"):
            value = _alive_purchases_gauss_one(params, np.array([t]), x, T)
        if value is not None:
            return float(value[0])
    return float(_alive_purchases_robust(params, t, x, T))


def _alive_purchases_array(params: BetaGeoParams, t: Any, x: Any, T: Any) -> np.ndarray:
    """``G(t)`` on broadcast arrays: the closed form where trusted, the robust evaluation elsewhere."""
    _, _, value, ok = _alive_purchases_fast(params, t, x, T)
    value = np.array(value, dtype=float)
    if not ok.all():
        shape = value.shape
        bad = ~np.broadcast_to(ok, shape)
        t_bad, x_bad, T_bad = (np.broadcast_to(v, shape)[bad] for v in (t, x, T))
        value[bad] = _alive_purchases_robust(params, t_bad, x_bad, T_bad)
    return value


def expected_purchases(
    params: BetaGeoParams, t: ArrayLike, x: ArrayLike, t_x: ArrayLike, T: ArrayLike
) -> float | np.ndarray:
    """Expected number of purchases in the next ``t`` days given history ``(x, t_x, T)``.

    FHL 2005 eq. (10), the same quantity as lifetimes'
    ``conditional_expected_number_of_purchases_up_to_time``::

        E = (a+b+x-1)/(a-1) * [1 - ((α+T)/(α+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; t/(α+T+t))]
            * P(alive | x, t_x, T)

    The closed form is used only where it is accurate (to ~1e-10 relative). Elsewhere (large
    ``a``/``b``, as when a fit collapses the drop-out distribution to a point mass, ``r`` much
    larger than ``a + b``, heavy buyers, ``a`` near 1, ``a + b + x <= 1``, horizons much shorter
    than the customer's age) the same quantity is computed as an expectation over the Beta
    drop-out distribution, by Gauss quadrature or, failing that, an exact series of positive
    terms. The result is finite, ``>= 0`` and non-decreasing in ``t`` for any valid parameters
    and finite ``t >= 0``; ``t < 0`` gives 0.

    Parameters
    ----------
    params
        Fitted BG/NBD parameters (``alpha`` in days).
    t
        Horizon in days (``>= 0``).
    x, t_x, T
        Frequency, recency (days) and age (days); scalars or broadcastable arrays.

    Returns
    -------
    float or numpy.ndarray
        A float for scalar input, else an array of the broadcast shape.

    Examples
    --------
    >>> params = BetaGeoParams(r=0.243, alpha=30.898, a=0.793, b=2.426)
    >>> round(expected_purchases(params, 273, 2, 213, 272), 3)
    1.226
    """
    if _all_scalar(t, x, t_x, T):
        return _alive_purchases_scalar(params, float(t), float(x), float(T)) * prob_alive(params, x, t_x, T)

    t, x = np.asarray(t, dtype=float), np.asarray(x, dtype=float)
    t_x, T = np.asarray(t_x, dtype=float), np.asarray(T, dtype=float)
    result = _alive_purchases_array(params, t, x, T) * prob_alive(params, x, t_x, T)
    return _to_float_or_array(np.asarray(result))


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
