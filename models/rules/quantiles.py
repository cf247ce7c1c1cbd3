"""Population percentiles of profile fields (river's streaming quantiles), for the
percentile clauses of a rule set evaluated without a model's exact thresholds."""

from __future__ import annotations

import base64
import io
import math
import pickle
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import river
from river import stats

from schemas.errors import ConfigurationError, ContractError
from models.rules.definitions import parse_percentile, percentile_key

if TYPE_CHECKING:  # a rule set asks for its percentiles; quantiles need not know rule sets
    from models.rules.ruleset import RuleSet


class _QuantileUnpickler(pickle.Unpickler):
    """Loads pickled river quantiles and nothing else.

    The state travels between workers, and plain ``pickle.loads`` on a message would run whatever
    it names; this allow-list admits only the two classes a pickled ``stats.Quantile`` contains.
    """

    _ALLOWED = {("river.stats.quantile", "Quantile"), ("river._river_rust.stats", "RsQuantile")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a river quantile")
        return super().find_class(module, name)


class PopulationQuantiles:
    """Streaming percentiles of profile fields over the customer population.

    The trainer does not use these: its thresholds are exact quantiles of its bounded sample, kept
    until the population moved (:mod:`models.thresholds`), because P² estimates depend on the
    order of the values and made members flap at every training. This class remains for callers
    that must follow an unbounded stream in O(1) memory.

    One ``river.stats.Quantile`` (the P² algorithm: five markers, O(1) memory and time per value)
    per (field, percentile) pair the rule set references. Values that are None, non-numeric or
    not finite are skipped.

    Feed it **one profile per customer sample, not one per event**: the population is customers,
    and learning on every event would weigh each customer by their activity (frequent buyers would
    dominate) and would always see profiles as of an event (``days_since_last_purchase`` near 0).
    A periodic sweep over the customer table, or each customer's profile at most once per period,
    gives the intended distribution.

    Parameters
    ----------
    needed
        ``(field, percentile)`` pairs, e.g. ``RuleSet.percentiles_needed()``.
    min_samples
        ``value`` is None until a field has seen this many values: early P² estimates are noise.

    Examples
    --------
    >>> population = PopulationQuantiles([("clv", 50.0)], min_samples=5)
    >>> for x in [1.0, None, 2.0, 3.0, 4.0]:
    ...     population.learn({"clv": x})
    >>> population.value("clv", 50) is None  # 4 values so far
    True
    >>> population.learn({"clv": 5.0})
    >>> population.value("clv", 50), population.thresholds()
    (3.0, {'clv:p50': 3.0})
    """

    def __init__(self, needed: Iterable[tuple[str, float]], min_samples: int = 50):
        if min_samples < 1:
            raise ConfigurationError("min_samples must be at least 1")
        self.min_samples = min_samples
        self._quantiles: dict[str, stats.Quantile] = {}
        self._by_field: dict[str, list[stats.Quantile]] = {}
        self.counts: dict[str, int] = {}
        for field, pct in sorted(set((f, float(p)) for f, p in needed)):
            if not 0.0 < pct < 100.0:
                raise ConfigurationError(f"percentile {pct} of {field!r} is not between 0 and 100")
            q = stats.Quantile(pct / 100.0)
            self._quantiles[percentile_key(field, pct)] = q
            self._by_field.setdefault(field, []).append(q)
            self.counts[field] = 0

    @classmethod
    def for_rules(cls, rules: RuleSet, min_samples: int = 50) -> PopulationQuantiles:
        return cls(rules.percentiles_needed(), min_samples)

    def learn(self, profile: Mapping[str, Any]) -> None:
        """Update with one customer's profile (see the class note on sampling)."""
        for field, quantiles in self._by_field.items():
            x = profile.get(field)
            # bool is an int in Python, but True is not a useful sample of a numeric field
            if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                continue
            self.counts[field] += 1
            for q in quantiles:
                q.update(float(x))

    def value(self, field: str, pct: float) -> float | None:
        """The current estimate, or None while fewer than ``min_samples`` values were seen."""
        q = self._quantiles.get(percentile_key(field, float(pct)))
        if q is None or self.counts[field] < self.min_samples:
            return None
        return q.get()

    def thresholds(self) -> dict[str, float]:
        """A frozen snapshot of the known thresholds, keyed like ``"clv:p80"``.

        This small dict is what to broadcast to the workers: ``RuleSet.evaluate`` takes it as is.
        """
        ready = {f for f, n in self.counts.items() if n >= self.min_samples}
        return {key: q.get() for key, q in self._quantiles.items() if key.rpartition(":")[0] in ready}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: the thresholds snapshot plus the estimators' state to resume learning.

        ``estimators`` is river's own pickle of each ``stats.Quantile`` (base64): river gives no
        other way to read or set the P² markers. It is tied to the river version.
        """
        return {
            "min_samples": self.min_samples,
            "counts": dict(self.counts),
            "thresholds": self.thresholds(),
            "river": river.__version__,
            "estimators": {k: base64.b64encode(pickle.dumps(q, protocol=4)).decode("ascii")
                           for k, q in self._quantiles.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PopulationQuantiles:
        """The inverse of ``to_dict``; only river quantiles are unpickled."""
        needed = []
        for key in data["estimators"]:
            field, _, ref = key.rpartition(":")
            pct = parse_percentile(ref) if field else None
            if pct is None:
                raise ContractError(f"bad estimator key {key!r}")
            needed.append((field, pct))
        out = cls(needed, int(data["min_samples"]))
        for key, blob in data["estimators"].items():
            try:
                q = _QuantileUnpickler(io.BytesIO(base64.b64decode(blob, validate=True))).load()
            except Exception as exc:  # a corrupt blob or another river version's layout
                raise ContractError(f"cannot restore estimator {key!r} (saved with river "
                                 f"{data.get('river')}, running {river.__version__}): {exc}") from exc
            if not isinstance(q, stats.Quantile):
                raise ContractError(f"estimator {key!r} is not a river Quantile")
            field = key.rpartition(":")[0]
            out._by_field[field] = [q if x is out._quantiles[key] else x for x in out._by_field[field]]
            out._quantiles[key] = q
        for field, n in data["counts"].items():
            if field in out.counts:
                out.counts[field] = int(n)
        return out
