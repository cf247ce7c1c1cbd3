"""Rule percentile thresholds: exact quantiles of the training sample that move only when the
population really moved.

A rule clause such as ``clv > p80`` compares a customer with the 80th percentile of CLV over the
customer population. The trainer computes that threshold at each training from its bounded
customer sample (at most ``SegmentationConfig.sample_size`` customers) and ships it in the model
snapshot to every worker. Two properties keep rule memberships from flapping:

* **Exact and order-free.** The threshold is ``numpy.quantile`` with the ``"inverted_cdf"`` method
  (Hyndman & Fan 1996, definition 1: the smallest sample value ``x`` with ``F_n(x) >= q``). It is a
  value some customer of the sample actually has, and any order of the same sample gives the same
  threshold (a streaming estimate such as P² depends on the order).
* **Kept unless contradicted.** At a new training the previous threshold ``t`` of quantile ``q``
  stays in force while the new sample does not contradict it, i.e. while the interval
  ``[F_n(t-), F_n(t)]`` (the share of the new sample below ``t``, and at or below ``t``) meets
  ``[q - e, q + e]`` with ``e = z * sqrt(q (1 - q) / n)``: the binomial standard error of a
  sample share, ``z`` of them (``SegmentationConfig.threshold_z``, 3 by default). With no ties
  this is the brief's test "the share of the sample at or above ``t`` is within ``e`` of ``1 - q``";
  the interval form also holds for fields with ties (``purchase_count``). Only then is the threshold
  re-estimated, to the new sample's exact quantile.
* **Carried over a revaluation.** A BTYD refit changes every customer's CLV and P(alive) while
  their data stays the same, so a threshold on such a figure, kept in the old valuation's units,
  would let customers cross it for no reason of their own (the stability bench saw 8 customers
  enter "VIP at risk" in an hour without input). When the valuation changes, such a threshold is
  first re-expressed in the new valuation at the same rank of the same sample
  (:func:`carry_over`): the customers of the sample below it stay below it, as far as the refit
  keeps their order.

>>> import numpy as np
>>> values = np.arange(1.0, 101.0)                       # CLVs 1..100
>>> exact_percentile(values, 80.0)
80.0
>>> exact_percentile(np.random.default_rng(0).permutation(values), 80.0)   # any order
80.0
>>> still_quantile(np.sort(values + 0.5), 80.0, 80.0, z=3.0)   # a slightly different sample
True
>>> still_quantile(np.sort(values * 2), 80.0, 80.0, z=3.0)     # everyone's CLV doubled
False
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from models.rules import percentile_key
from schemas.errors import ConfigurationError, ContractError

__all__ = [
    "QUANTILE_METHOD",
    "ThresholdUpdate",
    "carry_over",
    "exact_percentile",
    "field_values",
    "still_quantile",
    "update_thresholds",
]

#: numpy's name of Hyndman & Fan's definition 1 (the inverse of the empirical CDF).
QUANTILE_METHOD: Final = "inverted_cdf"


def field_values(profiles: Iterable[Mapping[str, Any]], field: str) -> np.ndarray:
    """The finite numeric values of ``field`` over ``profiles``, sorted (shape ``(n,)``).

    None, booleans, strings and non-finite numbers are left out: they have no rank.

    >>> field_values([{"clv": 3.0}, {"clv": None}, {"clv": 1}, {"clv": float("nan")}, {}], "clv")
    array([1., 3.])
    """
    xs = [float(x) for p in profiles
          if isinstance(x := p.get(field), (int, float)) and not isinstance(x, bool) and math.isfinite(x)]
    return np.sort(np.asarray(xs, dtype=float))


def exact_percentile(values: np.ndarray, pct: float) -> float:
    """The ``pct``-th percentile (0..100) of ``values`` by :data:`QUANTILE_METHOD`.

    Raises ``ValueError`` for an empty sample or a percentile outside [0, 100].

    >>> exact_percentile(np.array([5.0, 1.0, 3.0, 2.0, 4.0]), 50.0)
    3.0
    """
    if len(values) == 0:
        raise ContractError("no values to take a percentile of")
    if not 0.0 <= pct <= 100.0:
        raise ConfigurationError(f"percentile {pct} is not between 0 and 100")
    return float(np.quantile(np.asarray(values, dtype=float), pct / 100.0, method=QUANTILE_METHOD))


def still_quantile(sorted_values: np.ndarray, threshold: float, pct: float, z: float) -> bool:
    """Whether ``threshold`` is still the ``pct``-th percentile of the (sorted) sample within ``z``
    binomial standard errors (the test in the module docstring).

    >>> xs = np.arange(1.0, 1001.0)
    >>> still_quantile(xs, 800.0, 80.0, z=3.0), still_quantile(xs, 790.0, 80.0, z=3.0)
    (True, True)
    >>> still_quantile(xs, 700.0, 80.0, z=3.0)   # only 70 % of the sample is at or below it
    False
    """
    n = len(sorted_values)
    if n == 0:
        return True  # nothing contradicts it
    q = pct / 100.0
    tolerance = z * math.sqrt(q * (1.0 - q) / n)
    below = np.searchsorted(sorted_values, threshold, side="left") / n
    at_or_below = np.searchsorted(sorted_values, threshold, side="right") / n
    return bool(below <= q + tolerance and at_or_below >= q - tolerance)


def carry_over(thresholds: Mapping[str, float], before: list[Mapping[str, Any]],
               after: list[Mapping[str, Any]]) -> dict[str, float]:
    """``thresholds`` (``"field:pNN"`` -> value) re-expressed for the same customers valued again:
    ``before`` and ``after`` are the same sample's profiles (same length and order) under the old
    and the new valuation. A threshold on a field whose values changed moves to the ``after`` value
    of the same rank: if ``m`` customers were at or below it before, it becomes the ``m``-th
    smallest value after. Fields whose values did not change, and thresholds below every value of
    the sample (no rank to keep), are returned as they were.

    Raises ``ValueError`` when ``before`` and ``after`` differ in length.

    >>> before = [{"clv": v} for v in (10.0, 20.0, 30.0, 40.0)]
    >>> after = [{"clv": v * 1.1} for v in (10.0, 20.0, 30.0, 40.0)]   # a refit: everyone +10 %
    >>> carry_over({"clv:p50": 25.0, "frequency:p50": 2.0}, before, after)
    {'clv:p50': 22.0, 'frequency:p50': 2.0}
    """
    if len(before) != len(after):
        raise ContractError(f"{len(before)} profiles before the revaluation, {len(after)} after")
    out = dict(thresholds)
    for key, value in thresholds.items():
        field = key.rsplit(":p", 1)[0]
        pairs = [(b.get(field), a.get(field)) for b, a in zip(before, after)]
        if all(b == a for b, a in pairs):
            continue
        old = field_values([{field: b} for b, _ in pairs], field)
        new = field_values([{field: a} for _, a in pairs], field)
        at_or_below = int(np.searchsorted(old, value, side="right"))
        if 0 < at_or_below <= len(new):
            out[key] = float(new[at_or_below - 1])
    return out


@dataclass(frozen=True)
class ThresholdUpdate:
    """The thresholds of one training and what happened to each.

    ``thresholds`` maps ``"field:pNN"`` to its value (what ``ModelSnapshot.rule_thresholds``
    holds); ``moved`` and ``kept`` list the keys re-estimated and carried over; ``samples`` is the
    number of usable values per field; ``pending`` maps a key with no threshold to why.
    """

    thresholds: dict[str, float]
    moved: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    samples: dict[str, int] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)


def update_thresholds(profiles: list[Mapping[str, Any]], needed: Iterable[tuple[str, float]],
                      previous: Mapping[str, float] | None = None, *, min_samples: int = 50,
                      z: float = 3.0) -> ThresholdUpdate:
    """This training's thresholds for the ``(field, percentile)`` pairs ``needed``.

    Parameters
    ----------
    profiles
        One profile per sampled customer (the trainer's bounded sample, valued at training time).
    needed
        ``RuleSet.percentiles_needed(band)``: the entry percentiles and their relaxed ones.
    previous
        The thresholds in force (the previous snapshot's ``rule_thresholds``); each is kept while
        the sample does not contradict it (:func:`still_quantile`).
    min_samples
        A field with fewer usable values gets no threshold (its clauses stay false).
    z
        Standard errors of tolerance; ``0`` re-estimates at every training (no memory).

    Examples
    --------
    >>> rng = np.random.default_rng(7)
    >>> first = update_thresholds([{"clv": x} for x in rng.exponential(100, 2000)], [("clv", 80.0)])
    >>> again = update_thresholds([{"clv": x} for x in rng.exponential(100, 2000)], [("clv", 80.0)],
    ...                           first.thresholds)
    >>> again.kept, again.thresholds == first.thresholds      # same population: kept as is
    (('clv:p80',), True)
    >>> richer = update_thresholds([{"clv": x} for x in rng.exponential(150, 2000)], [("clv", 80.0)],
    ...                            first.thresholds)
    >>> richer.moved                                           # the population moved: re-estimated
    ('clv:p80',)
    >>> update_thresholds([{"clv": 1.0}], [("clv", 80.0)]).pending
    {'clv:p80': 'only 1 customer(s) of the training sample have a value of clv; 50 are needed'}
    """
    if min_samples < 1:
        raise ConfigurationError("min_samples must be at least 1")
    if z < 0:
        raise ConfigurationError("z must be non-negative")
    previous = previous or {}
    by_field: dict[str, list[float]] = {}
    for f, pct in sorted(set((f, float(p)) for f, p in needed)):
        by_field.setdefault(f, []).append(pct)
    thresholds: dict[str, float] = {}
    moved: list[str] = []
    kept: list[str] = []
    samples: dict[str, int] = {}
    pending: dict[str, str] = {}
    for f, pcts in by_field.items():
        values = field_values(profiles, f)
        samples[f] = len(values)
        for pct in pcts:
            key = percentile_key(f, pct)
            if len(values) < min_samples:
                pending[key] = (f"only {len(values)} customer(s) of the training sample have a value of {f}; "
                                f"{min_samples} are needed")
                continue
            old = previous.get(key)
            if old is not None and math.isfinite(old) and still_quantile(values, old, pct, z):
                thresholds[key] = float(old)
                kept.append(key)
            else:
                thresholds[key] = exact_percentile(values, pct)
                moved.append(key)
    return ThresholdUpdate(thresholds, tuple(moved), tuple(kept), samples, pending)
