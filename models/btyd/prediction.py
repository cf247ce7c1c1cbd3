"""Per-customer BG/NBD predictions: P(alive) and the expected number of purchases, with the
four evaluation strategies of E[purchases | alive] (closed form where accurate, Gauss-Jacobi
quadrature, the series, and the robust fallback)."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
from scipy import linalg, special

from models.btyd.parameters import ArrayLike, BetaGeoParams, _all_scalar, _to_float_or_array

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
