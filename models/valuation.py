"""Population BTYD statistics and the lifetime-value model fitted from them.

The engine keeps, per customer, the four numbers BG/NBD and Gamma-Gamma need (first and last
purchase day, repeat days, mean repeat spend). A refit turns them into a compressed histogram of
``(x, t_x, T)`` rows as of a given day (customers sharing a row are fitted once, with a weight),
so a refit over a million customers costs a few thousand likelihood rows.

>>> pop = BtydPopulation()
>>> pop.update("c1", first_day=0, last_day=10, frequency=2, monetary=5.0)
>>> x, t_x, T, w = pop.histogram(as_of_day=30)
>>> x.tolist(), t_x.tolist(), T.tolist(), w.tolist()
([2.0], [10.0], [30.0], [1.0])
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

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
from models.config import ValueConfig

log = logging.getLogger("segstream.model")


#: Memoised predictions per valuation (a few MB at most; cleared when full).
MEMO_SIZE = 100_000

#: Repeat buyers used by a Gamma-Gamma refit at most (a uniform, seeded subsample beyond).
GG_FIT_SAMPLE = 5000


class BtydPopulation:
    """Per-customer BTYD sufficient statistics for refits (first day, last day, x, m)."""

    def __init__(self) -> None:
        self._rows: dict[str, tuple[int, int, int, float]] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def update(self, customer_id: str, first_day: int, last_day: int, frequency: int, monetary: float) -> None:
        self._rows[customer_id] = (first_day, last_day, frequency, monetary)

    def remove(self, customer_id: str) -> None:
        self._rows.pop(customer_id, None)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not self._rows:
            empty = np.empty(0)
            return empty, empty, empty, empty
        a = np.array(list(self._rows.values()), dtype=float)
        return a[:, 0], a[:, 1], a[:, 2], a[:, 3]

    def histogram(self, as_of_day: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Distinct ``(x, t_x, T)`` rows as of ``as_of_day`` and how many customers share each."""
        first, last, x, _ = self._arrays()
        keep = first <= as_of_day
        rows = np.column_stack([x[keep], (last - first)[keep], (as_of_day - first)[keep]])
        if not len(rows):
            empty = np.empty(0)
            return empty, empty, empty, empty
        unique, counts = np.unique(rows, axis=0, return_counts=True)
        return unique[:, 0], unique[:, 1], unique[:, 2], counts.astype(float)

    def repeat_spenders(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, m) of the customers with repeat purchases: what Gamma-Gamma is fitted on."""
        _, _, x, m = self._arrays()
        keep = (x > 0) & (m > 0)
        return x[keep], m[keep]


@dataclass(frozen=True)
class Valuation:
    """A fitted (or pinned) lifetime-value model; None parameters mean 'not enough data yet'."""

    beta_geo: BetaGeoParams | None
    gamma_gamma: GammaGammaParams | None
    horizon_days: int
    monthly_discount_rate: float
    customers: int = 0
    version: int = 0
    # Memo of per-customer predictions: BTYD needs only (x, t_x, T[, m]) with whole days, and most
    # events (engagement, feedback, repeat purchases the same day) leave those unchanged.
    _memo: dict = field(default_factory=dict, compare=False, repr=False)

    def _memoised(self, key: tuple, compute: Callable[[], float]) -> float:
        value = self._memo.get(key)
        if value is None:
            if len(self._memo) >= MEMO_SIZE:
                self._memo.clear()
            value = self._memo[key] = compute()
        return value

    def prob_alive(self, x: int, t_x: float, T: float) -> float | None:
        if self.beta_geo is None:
            return None
        bg = self.beta_geo
        return self._memoised(("p", x, t_x, T), lambda: float(prob_alive(bg, x, t_x, T)))

    def expected_purchases(self, x: int, t_x: float, T: float) -> float | None:
        if self.beta_geo is None:
            return None
        return float(expected_purchases(self.beta_geo, self.horizon_days, x, t_x, T))

    def expected_average_spend(self, x: int, m: float) -> float | None:
        return None if self.gamma_gamma is None else float(expected_average_spend(self.gamma_gamma, x, m))

    def clv(self, x: int, t_x: float, T: float, m: float) -> float | None:
        if self.beta_geo is None or self.gamma_gamma is None:
            return None
        bg, gg = self.beta_geo, self.gamma_gamma
        return self._memoised(("c", x, t_x, T, m), lambda: float(customer_lifetime_value(
            bg, gg, x, t_x, T, m, self.horizon_days, self.monthly_discount_rate)))

    def prob_alive_many(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray) -> np.ndarray | None:
        if self.beta_geo is None:
            return None
        bg = self.beta_geo
        return self._memoised_many("p_many", (x, t_x, T), lambda i: prob_alive(bg, x[i], t_x[i], T[i]))

    def clv_many(self, x: np.ndarray, t_x: np.ndarray, T: np.ndarray, m: np.ndarray) -> np.ndarray | None:
        if self.beta_geo is None or self.gamma_gamma is None:
            return None
        bg, gg = self.beta_geo, self.gamma_gamma
        return self._memoised_many("c_many", (x, t_x, T, m), lambda i: customer_lifetime_value(
            bg, gg, x[i], t_x[i], T[i], m[i], self.horizon_days, self.monthly_discount_rate))

    def _memoised_many(self, tag: str, columns: tuple[np.ndarray, ...],
                       compute: Callable[[np.ndarray], Any]) -> np.ndarray:
        """The vectorised predictions, memoised in the scalar ones' dict: a batch's
        customers mostly have (x, t_x, T[, m]) already seen (the discounted CLV sums 13 monthly
        periods of hypergeometric terms: about 30 µs a row even vectorised). ``compute`` gets the
        indices of the rows to compute. Under keys of their own (``tag``): numpy's vectorised arithmetic can
        differ from the scalar path's in the last bits, and a value must not depend on which path
        met its key first (tests/test_batch_engine.py holds the two paths to the same changes)."""
        keys = [(tag, *row) for row in zip(*(c.tolist() for c in columns))]
        out = np.empty(len(keys))
        missing = []
        memo = self._memo
        for i, key in enumerate(keys):
            value = memo.get(key)
            if value is None:
                missing.append(i)
            else:
                out[i] = value
        if missing:
            rows = np.array(missing)
            values = np.asarray(compute(rows), dtype=float).reshape(-1)
            out[rows] = values
            if len(memo) + len(missing) >= MEMO_SIZE:
                memo.clear()
            memo.update(zip((keys[i] for i in missing), values.tolist()))
        return out

    def to_dict(self) -> dict:
        return {
            "beta_geo": self.beta_geo.to_dict() if self.beta_geo else None,
            "gamma_gamma": self.gamma_gamma.to_dict() if self.gamma_gamma else None,
            "horizon_days": self.horizon_days,
            "monthly_discount_rate": self.monthly_discount_rate,
            "customers": self.customers,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, doc: dict) -> "Valuation":
        """Inverse of :meth:`to_dict` (workers install the trainer's valuation from a snapshot)."""
        return cls(
            BetaGeoParams.from_dict(doc["beta_geo"]) if doc.get("beta_geo") else None,
            GammaGammaParams.from_dict(doc["gamma_gamma"]) if doc.get("gamma_gamma") else None,
            int(doc["horizon_days"]), float(doc["monthly_discount_rate"]),
            customers=int(doc.get("customers", 0)), version=int(doc.get("version", 0)),
        )


def _predicts_finite(valuation: Valuation, population: BtydPopulation, as_of_day: int) -> bool:
    """A fit is only used if it values every distinct customer history with finite, valid numbers
    (P(alive) in [0, 1], CLV and spend non-negative).

    Degenerate maxima (a, b -> infinity when dropout is homogeneous) are legitimate likelihood
    optima but can push the hypergeometric terms out of floating-point range.
    """
    x, t_x, T, _ = population.histogram(as_of_day)
    if not len(x):
        return True
    _, m = population.repeat_spenders()
    m_mean = float(m.mean()) if len(m) else 0.0
    with np.errstate(all="ignore"):
        p_alive = valuation.prob_alive_many(x, t_x, T)
        clv = valuation.clv_many(x, t_x, T, np.full_like(x, m_mean))
        spend = valuation.expected_average_spend(1, m_mean)
    if p_alive is not None and not (np.isfinite(p_alive).all() and (p_alive >= 0).all() and (p_alive <= 1).all()):
        return False
    if clv is not None and not (np.isfinite(clv).all() and (clv >= -1e-9).all()):
        return False
    return spend is None or (math.isfinite(spend) and spend >= 0)


def pinned_valuation(config: ValueConfig) -> Valuation:
    """The valuation before any fit: pinned parameters if configured, else none."""
    bg = BetaGeoParams(**config.beta_geo.model_dump()) if config.beta_geo else None
    gg = GammaGammaParams(**config.gamma_gamma.model_dump()) if config.gamma_gamma else None
    return Valuation(bg, gg, config.horizon_days, config.monthly_discount_rate)


def fit_valuation(
    population: BtydPopulation, as_of_day: int, config: ValueConfig, previous: Valuation | None = None
) -> Valuation:
    """Refit what is not pinned; keep the previous parameters when a fit is impossible or fails."""
    base = previous or pinned_valuation(config)
    bg, gg = base.beta_geo, base.gamma_gamma
    if len(population) < config.min_customers_for_fit:
        return base
    started = time.perf_counter()
    if config.beta_geo is None:
        x, t_x, T, w = population.histogram(as_of_day)
        try:
            bg = fit_beta_geo(x, t_x, T, weights=w, initial=base.beta_geo)
        except (ValueError, RuntimeError, FloatingPointError) as exc:
            log.warning("BG/NBD refit failed, keeping previous parameters: %s", exc)
    if config.gamma_gamma is None:
        x, m = population.repeat_spenders()
        if len(x) > GG_FIT_SAMPLE:
            # Spend is continuous (no histogram to compress): a seeded subsample bounds the cost.
            keep = np.random.default_rng(0).choice(len(x), GG_FIT_SAMPLE, replace=False)
            x, m = x[keep], m[keep]
        if len(x) >= 10:
            try:
                gg = fit_gamma_gamma(x, m)
            except (ValueError, RuntimeError, FloatingPointError) as exc:
                log.warning("Gamma-Gamma refit failed, keeping previous parameters: %s", exc)
    candidate = Valuation(bg, gg, config.horizon_days, config.monthly_discount_rate)
    if not _predicts_finite(candidate, population, as_of_day):
        log.warning("BTYD refit gave non-finite predictions (%s); keeping the previous parameters", bg)
        return base
    log.info("BTYD refit on %d customers in %.2fs: %s %s", len(population),
             time.perf_counter() - started, bg, gg)
    return Valuation(bg, gg, config.horizon_days, config.monthly_discount_rate,
                     customers=len(population), version=base.version + 1)
