"""Key performance indicators per segment, accumulated one customer at a time.

:class:`SegmentKPIs` is fed every customer of a sweep pass once, with the segments the customer is
in (cluster and rule segments alike) and the customer's decision values (the exact profile
figures, :func:`models.profile.decision_values`, under the profile's field names). Customers in no
segment are fed too: they count in the population that shares are taken of.

It keeps **only sums and counts**, never means, so accumulators of several partitions or workers
merge exactly (:meth:`SegmentKPIs.merge`): money and service load are summed in integer micro-units,
as :mod:`models.state` keeps money, so the merged sums do not depend on how customers were split or
in which order they came. Only the moments of the standardised features are float sums (equal up
to rounding).

What a segment's figures are, each over the members for whom its inputs are known (a missing key
or a None value is unknown, never 0):

==========================  ===================================================================
``size``, ``share``         members; members / customers fed (the population)
``recent_revenue``          sum of ``recent_spend`` (base currency) over ``recent_revenue_days``
``clv_total``, ``clv_mean`` sum and mean of ``clv`` over the ``clv_known`` members with a CLV
``retention``, ``churn``    members who bought in the previous period and again in this one /
                            members who bought in the previous period (``retention_base``);
                            churn = 1 - retention. None when no member bought in the previous
                            period. The customer-retention rate of Reichheld & Sasser (1990),
                            "Zero defections", on the ``recent_spend_days`` periods.
``nps``                     Net Promoter Score (Reichheld 2003, "The one number you need to
                            grow"): 100 x (promoters - detractors) / answered, promoters scoring
                            9-10, detractors 0-6, on each member's latest 0-10 answer; None when
                            nobody answered. ``nps_answered_share``: answered / size
``cost_to_serve_mean``      mean service load (decayed tickets + weighted complaints, in ticket
                            units: :attr:`models.state.CustomerState.service_load`)
``cac_mean``                mean ``acquisition_cost`` over the members where it is known;
                            ``cac_known_share``: those members / size
``clv_to_cac``              the CLV:CAC ratio over the ``clv_to_cac_over`` members with **both** a
                            CLV and a known acquisition cost: their mean CLV / their mean CAC
                            (= their CLV sum / their CAC sum). Taking both means over the same
                            customers keeps the ratio a per-customer one, as the convention reads
                            it (3:1 the usual target: Skok, "SaaS metrics 2.0"). None when no
                            member has both, or their acquisition costs sum to 0
``reachable_share``         members with at least one consent channel True (unknown consent is
                            not consent) / size; ``consent_known_share``: members with at least
                            one channel known / size
``measurable_share``        members whose defining fields are all known / size (None when the
                            segment's defining fields were not given)
``composition``             per low-cardinality trait, member counts per value (top N, the rest
                            summed in ``other``, missing in ``unknown``)
``features``                members with standardised features, their mean vector and mean
                            within-segment variance (sum over features): the scorecard's
                            separation (:mod:`models.scorecard`)
==========================  ===================================================================

>>> kpis = SegmentKPIs(window_days=90)
>>> kpis.add([("rule", "vip")], {"clv": 500.0, "nps": 10, "consent_email": True, "country": "DE"}, [1.0, 0.0])
>>> kpis.add([("rule", "vip")], {"clv": 300.0, "nps": 3, "acquisition_cost": 50.0}, [0.0, 1.0])
>>> kpis.add([], {"clv": 20.0}, None)            # in no segment: counts in the population
>>> vip = kpis.figures()[0]
>>> vip["size"], round(vip["share"], 3), vip["clv_mean"], vip["nps"], vip["reachable_share"]
(2, 0.667, 400.0, 0.0, 0.5)
>>> vip["cac_mean"], vip["cac_known_share"], vip["clv_to_cac"], vip["clv_to_cac_over"]
(50.0, 0.5, 6.0, 1)
>>> vip["composition"]["country"]
{'values': {'DE': 1}, 'other': 0, 'other_values': 0, 'unknown': 1}
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from schemas.errors import ConfigurationError, ContractError

__all__ = ["AGE_BANDS", "COMPOSITION_TRAITS", "CONSENT_FIELDS", "FEATURE_FIELDS", "KINDS", "SegmentKPIs",
           "age_band", "cluster_defining_fields"]

#: Kinds of segment: a cluster of the model in force, or a rule segment.
KINDS = ("cluster", "rule")
#: Consent traits, one per channel (True / False / None = unknown).
CONSENT_FIELDS = ("consent_email", "consent_sms", "consent_push")
#: Age bands of the composition (years, as ``age`` reads: the age reached in the evaluation's year).
AGE_BANDS = ("<18", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_EDGES = (18, 25, 35, 45, 55, 65)
#: Traits a composition is kept of by default: all low-cardinality (``age_band`` derives from ``age``).
COMPOSITION_TRAITS = ("country", "age_band", "income_band", "company_size", "household_size")
#: Orders the composition shows ordinal traits in (values outside them come after, by count).
_ORDERS: dict[str, tuple[str, ...]] = {
    "age_band": AGE_BANDS,
    "income_band": ("low", "lower_middle", "middle", "upper_middle", "high"),
    "company_size": ("micro", "small", "medium", "large", "enterprise"),
    "household_size": tuple(str(n) for n in range(1, 21)),
}
#: The profile field each clustering feature (:data:`models.features.FEATURES`) is computed from,
#: None in the profile exactly when the feature holds a placeholder (never bought: CLV, days since
#: the last purchase, P(alive) and T are None; never answered: the decayed NPS is None, where the
#: feature holds a neutral 7). See :func:`cluster_defining_fields`.
FEATURE_FIELDS: dict[str, str] = {
    "value": "clv", "frequency": "frequency", "recency": "days_since_last_purchase", "p_alive": "p_alive",
    "order_value": "average_order_value", "engagement": "engagement", "satisfaction": "nps_decayed",
    "cost_to_serve": "cost_to_serve", "tenure": "T",
}
_MICROS = 1_000_000  # money and service load are summed in integer micro-units: exact in any order
_Z_BATCH = 1024  # feature vectors buffered per segment before they are summed
_SegmentKey = tuple[str, str]


def age_band(age: float | None) -> str | None:
    """The band of ``age`` in years (:data:`AGE_BANDS`), None when unknown.

    >>> age_band(17), age_band(18), age_band(64), age_band(65), age_band(None)
    ('<18', '18-24', '55-64', '65+', None)
    """
    if age is None:
        return None
    for band, edge in zip(AGE_BANDS, _AGE_EDGES):
        if age < edge:
            return band
    return AGE_BANDS[-1]


def cluster_defining_fields(features: Iterable[str]) -> tuple[str, ...]:
    """The profile fields a cluster segment on ``features`` is defined by (for measurability): each
    feature's :data:`FEATURE_FIELDS` entry, or the feature's own name for a feature outside it (a
    trait feature is named after its trait).

    >>> cluster_defining_fields(["value", "recency", "satisfaction", "country"])
    ('clv', 'days_since_last_purchase', 'nps_decayed', 'country')
    """
    return tuple(dict.fromkeys(FEATURE_FIELDS.get(f, f) for f in features))


def _micros(value: Any) -> int | None:
    """A figure in integer micro-units, None when unknown (missing, None or not finite)."""
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return round(value * _MICROS) if math.isfinite(value) else None


#: The integer sums and counts kept per segment, in the order of :attr:`_Customer.counts` (money and
#: service load in micro-units). All of them merge by addition.
_COUNTS = ("size", "recent", "recent_n", "clv", "clv_n", "prev_buyers", "retained", "answered", "nps_net",
           "promoters", "cost", "cost_n", "cac", "cac_n", "both_clv", "both_cac", "both_n", "reachable",
           "consent_known")


class _Customer:
    """What one customer adds to each of its segments, worked out once whatever their number: a
    segment adds ``counts`` to its own element-wise, in one C-level call (this runs for every
    customer of every sweep pass)."""

    __slots__ = ("counts", "composition", "z", "values", "known")

    def __init__(self, values: Mapping[str, Any], traits: tuple[str, ...], z: Sequence[float] | np.ndarray | None):
        recent, clv = _micros(values.get("recent_spend")), _micros(values.get("clv"))
        cost, cac = _micros(values.get("cost_to_serve")), _micros(values.get("acquisition_cost"))
        prev_buyer = values.get("bought_in_previous_period") is True
        nps = _nps(values.get("nps"))
        consents = [values.get(c) for c in CONSENT_FIELDS]
        both = clv is not None and cac is not None
        self.counts = [
            1, recent or 0, recent is not None, clv or 0, clv is not None,
            prev_buyer, prev_buyer and values.get("bought_in_period") is True,
            nps is not None, nps or 0, nps == 1,
            cost or 0, cost is not None, cac or 0, cac is not None,
            clv if both else 0, cac if both else 0, both,
            True in consents or values.get("reachable") is True, any(c is not None for c in consents),
        ]
        self.composition = [_trait_value(values, t) for t in traits]
        self.z = z
        self.values = values
        self.known: dict[frozenset[str], bool] = {}  # defining fields -> all known

    def defined(self, fields: frozenset[str]) -> bool:
        known = self.known.get(fields)
        if known is None:
            known = self.known[fields] = all(self.values.get(f) is not None for f in fields)
        return known


def _nps(score: Any) -> int | None:
    """+1 for a promoter (9-10), -1 for a detractor (0-6), 0 for a passive, None when unanswered."""
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0 <= score <= 10:
        raise ContractError(f"nps: {score!r} is not a 0-10 score")
    return 1 if score >= 9 else -1 if score <= 6 else 0


def _trait_value(values: Mapping[str, Any], trait: str) -> str | None:
    value = age_band(values.get("age")) if trait == "age_band" else values.get(trait)
    return None if value is None else str(value)


class _Sums:
    """The sums and counts of one segment (or of the population)."""

    __slots__ = ("fields", "counts", "defined", "composition", "z_n", "z_buffer", "z_sum", "z_sq")

    def __init__(self, fields: frozenset[str] | None, traits: int):
        self.fields = fields
        self.counts = [0] * len(_COUNTS)
        self.defined = 0  # members whose defining fields are all known
        self.composition: list[dict[str | None, int]] = [{} for _ in range(traits)]
        self.z_n = 0
        self.z_buffer: list[Sequence[float] | np.ndarray] = []
        self.z_sum: np.ndarray | None = None
        self.z_sq: np.ndarray | None = None

    def add(self, c: _Customer) -> None:
        self.counts = list(map(operator.add, self.counts, c.counts))
        if self.fields is not None:
            self.defined += c.defined(self.fields)
        for counts, value in zip(self.composition, c.composition):
            counts[value] = counts.get(value, 0) + 1
        if c.z is not None:
            self.z_buffer.append(c.z)
            if len(self.z_buffer) >= _Z_BATCH:
                self.flush()

    def flush(self) -> None:
        """Adds the buffered feature vectors to the moments, many at a time (one numpy call for a
        thousand customers instead of a few per customer)."""
        if self.z_buffer:
            z = np.asarray(self.z_buffer, dtype=float)
            self._add_moments(len(z), z.sum(axis=0), np.einsum("ij,ij->j", z, z))
            self.z_buffer = []

    def _add_moments(self, n: int, z_sum: np.ndarray, z_sq: np.ndarray) -> None:
        self.z_n += n
        if self.z_sum is None or self.z_sq is None:
            self.z_sum, self.z_sq = z_sum.copy(), z_sq.copy()
        else:
            self.z_sum += z_sum
            self.z_sq += z_sq

    def merge(self, other: "_Sums") -> None:
        self.counts = list(map(operator.add, self.counts, other.counts))
        self.defined += other.defined
        for mine, theirs in zip(self.composition, other.composition):
            for value, n in theirs.items():
                mine[value] = mine.get(value, 0) + n
        other.flush()
        self.flush()
        if other.z_sum is not None and other.z_sq is not None:
            self._add_moments(other.z_n, other.z_sum, other.z_sq)


class SegmentKPIs:
    """A mergeable accumulator of per-segment KPIs (see the module docstring for every figure).

    Parameters
    ----------
    window_days
        The window of ``recent_spend`` and of the retention periods, in days (reported with the
        revenue; the values fed must have been computed over it).
    defining_fields
        The profile fields that define each segment, for measurability: keys ``(kind, segment_id)``,
        or a kind alone for every segment of that kind (a rule segment: the fields its clauses
        read; cluster segments: :func:`cluster_defining_fields` of the model's features). A
        segment with none has ``measurable_share`` None.
    top_n
        Values of each composition trait shown per segment; the rest are summed in ``other``
        (a composition is shown to a reader, not used as a label). Counts are kept exactly for
        every value (the traits are low-cardinality), so the cut does not depend on the merge.
    traits
        The composition traits (``age_band`` is banded from ``age``).

    Raises :class:`~schemas.errors.ConfigurationError` for a window or ``top_n`` under 1, and
    :class:`~schemas.errors.ContractError` for an unknown kind, an NPS outside 0-10 or feature
    vectors of different lengths.
    """

    def __init__(self, window_days: float, defining_fields: Mapping[str | _SegmentKey, Collection[str]] | None = None,
                 top_n: int = 10, traits: Sequence[str] = COMPOSITION_TRAITS):
        if not window_days > 0 or top_n < 1:
            raise ConfigurationError(f"window_days must be positive and top_n at least 1 ({window_days}, {top_n})")
        self.window_days = window_days
        self.top_n = top_n
        self.traits = tuple(traits)
        self._defining = {key: frozenset(fields) for key, fields in (defining_fields or {}).items()}
        # public for merge (another accumulator's), not part of the API
        self.by_segment: dict[_SegmentKey, _Sums] = {}
        self.everyone = _Sums(None, len(self.traits))
        self.dim: int | None = None  # length of the feature vectors fed (None before the first)

    @property
    def population(self) -> int:
        """Customers fed (in a segment or not)."""
        return self.everyone.counts[0]

    def add(self, memberships: Iterable[tuple[str, str]], values: Mapping[str, Any],
            features_z: Sequence[float] | np.ndarray | None = None) -> None:
        """Count one customer: in each segment of ``memberships`` (distinct ``(kind, segment_id)``
        pairs, kind in :data:`KINDS`) and in the population. ``values``: the customer's decision values by
        profile field name; ``features_z``: the customer's standardised feature vector, or None
        when there is none yet (no model in force)."""
        z = None
        if features_z is not None:
            self._check_dim(len(features_z))
            # a copy: the vector is summed later (buffered), and a caller may reuse its buffer
            z = features_z.copy() if isinstance(features_z, np.ndarray) else tuple(features_z)
        customer = _Customer(values, self.traits, z)
        self.everyone.add(customer)
        for key in memberships:
            sums = self.by_segment.get(key)
            if sums is None:
                sums = self.by_segment[key] = self._new(key)
            sums.add(customer)

    def merge(self, other: "SegmentKPIs") -> "SegmentKPIs":
        """Add ``other``'s customers to this accumulator (exact: sums and counts); returns self.
        Raises :class:`~schemas.errors.ConfigurationError` when the two disagree on the window, the
        traits or a segment's defining fields."""
        if (other.window_days, other.traits) != (self.window_days, self.traits):
            raise ConfigurationError("KPIs over different windows or traits cannot be merged")
        for key, theirs in other.by_segment.items():  # checked first: a failed merge changes nothing
            mine = self.by_segment.get(key) or self._new(key)
            if mine.fields != theirs.fields:
                raise ConfigurationError(f"segment {key[0]} {key[1]} is defined by different fields in the two KPIs")
        if other.dim is not None:
            self._check_dim(other.dim)
        self.everyone.merge(other.everyone)
        for key, theirs in other.by_segment.items():
            self.by_segment.setdefault(key, self._new(key)).merge(theirs)
        return self

    def declare(self, segments: Iterable[tuple[str, str]]) -> "SegmentKPIs":
        """Make sure ``segments`` (``(kind, segment_id)``) are in :meth:`figures`, with size 0 when no
        customer fed is in one (an empty segment is a finding: a rule no one meets, a cluster left
        without members), not a segment missing from the report. Returns self."""
        for key in segments:
            if key[0] not in KINDS:
                raise ContractError(f"unknown kind of segment {key[0]!r} (expected one of {', '.join(KINDS)})")
            if key not in self.by_segment:
                self.by_segment[key] = self._new(key)
        return self

    def drop_features(self) -> "SegmentKPIs":
        """Forget the feature moments (separation becomes unknown); returns self. For accumulators
        fed under models with different features (a model with other trait features installed
        during a sweep pass), whose vectors cannot be summed together."""
        self.dim = None
        for sums in (self.everyone, *self.by_segment.values()):
            sums.z_n, sums.z_buffer, sums.z_sum, sums.z_sq = 0, [], None, None
        return self

    def figures(self) -> list[dict[str, Any]]:
        """The figures of every segment fed (a plain JSON-able dict each, with its ``kind`` and
        ``segment_id``), clusters first, each kind in natural order of ids (c2 before c10)."""
        keys = sorted(self.by_segment, key=lambda k: (k[0] != "cluster", k[0], _natural(k[1])))
        return [{"kind": kind, "segment_id": sid, **self._figures_of(self.by_segment[kind, sid])}
                for kind, sid in keys]

    def population_figures(self) -> dict[str, Any]:
        """The same figures over every customer fed (a baseline to read segments against)."""
        return self._figures_of(self.everyone)

    # ---- serialisation (to ship a partition's or a worker's accumulator) -------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; sums of micro-units are decimal strings (any size: orjson stops at 64 bits).

        >>> k = SegmentKPIs(30)
        >>> k.add([("cluster", "c1")], {"clv": 1e15, "country": "FR"}, [0.5])
        >>> SegmentKPIs.from_dict(k.to_dict()).figures() == k.figures()
        True
        """
        return {"window_days": self.window_days, "top_n": self.top_n, "traits": list(self.traits),
                "defining": [[key, sorted(fields)] for key, fields in self._defining.items()], "dim": self.dim,
                "population": _sums_to_dict(self.everyone),
                "segments": [[kind, sid, _sums_to_dict(s)] for (kind, sid), s in self.by_segment.items()]}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> "SegmentKPIs":
        defining = {key if isinstance(key, str) else (key[0], key[1]): fields for key, fields in doc["defining"]}
        kpis = cls(doc["window_days"], defining, top_n=doc["top_n"], traits=doc["traits"])
        kpis.dim = doc["dim"]
        kpis.everyone = _sums_from_dict(doc["population"])
        for kind, sid, sums in doc["segments"]:
            kpis.by_segment[kind, sid] = _sums_from_dict(sums)
        return kpis

    # ---- internals -------------------------------------------------------------------------------

    def _new(self, key: _SegmentKey) -> _Sums:
        if key[0] not in KINDS:
            raise ContractError(f"segment kind {key[0]!r} is none of {', '.join(KINDS)}")
        return _Sums(self._defining.get(key, self._defining.get(key[0])), len(self.traits))

    def _check_dim(self, dim: int) -> None:
        if self.dim is None:
            self.dim = dim
        elif dim != self.dim:
            raise ContractError(f"features_z has {dim} features, earlier customers had {self.dim}")

    def _figures_of(self, s: _Sums) -> dict[str, Any]:
        c = dict(zip(_COUNTS, s.counts))
        size, population = c["size"], self.everyone.counts[0]
        return {
            "size": size,
            "share": _ratio(size, population),
            **_money(c), **_loyalty(c),
            "recent_revenue_days": self.window_days,
            "reachable_share": _ratio(c["reachable"], size),
            "consent_known_share": _ratio(c["consent_known"], size),
            "measurable_share": _ratio(s.defined, size) if s.fields is not None else None,
            "defining_fields": sorted(s.fields) if s.fields is not None else None,
            "composition": {t: _composition(t, counts, self.top_n) for t, counts in zip(self.traits, s.composition)},
            "features": _features(s),
        }


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


def _money(c: Mapping[str, int]) -> dict[str, Any]:
    """Revenue, CLV, cost to serve and CAC (micro-units back to the base currency / ticket units)."""
    return {
        "recent_revenue": c["recent"] / _MICROS, "recent_revenue_known": c["recent_n"],
        "clv_total": c["clv"] / _MICROS if c["clv_n"] else None, "clv_mean": _ratio(c["clv"] / _MICROS, c["clv_n"]), "clv_known": c["clv_n"],
        "cost_to_serve_mean": _ratio(c["cost"] / _MICROS, c["cost_n"]), "cost_to_serve_known": c["cost_n"],
        "cac_mean": _ratio(c["cac"] / _MICROS, c["cac_n"]), "cac_known": c["cac_n"],
        "cac_known_share": _ratio(c["cac_n"], c["size"]),
        "clv_to_cac": _ratio(c["both_clv"], c["both_cac"]), "clv_to_cac_over": c["both_n"],
    }


def _loyalty(c: Mapping[str, int]) -> dict[str, Any]:
    """Retention, churn and NPS."""
    retention = _ratio(c["retained"], c["prev_buyers"])
    return {
        "retention": retention, "churn": None if retention is None else 1.0 - retention,
        "retention_base": c["prev_buyers"],
        "nps": _ratio(100.0 * c["nps_net"], c["answered"]), "nps_answered": c["answered"],
        "nps_promoters": c["promoters"], "nps_detractors": c["promoters"] - c["nps_net"],
        "nps_answered_share": _ratio(c["answered"], c["size"]),
    }


def _composition(trait: str, counts: Mapping[str | None, int], top_n: int) -> dict[str, Any]:
    """The top ``top_n`` values by count (ties by value), in the trait's order when it has one."""
    known = sorted(((v, n) for v, n in counts.items() if v is not None), key=lambda vn: (-vn[1], vn[0]))
    top, rest = known[:top_n], known[top_n:]
    order = _ORDERS.get(trait)
    if order is not None:
        rank = {v: i for i, v in enumerate(order)}
        top.sort(key=lambda vn: rank.get(vn[0], len(order)))  # stable: values outside the order stay by count
    return {"values": dict(top), "other": sum(n for _, n in rest), "other_values": len(rest),
            "unknown": counts.get(None, 0)}


def _features(s: _Sums) -> dict[str, Any] | None:
    """Members with features, their mean vector and mean within-segment variance: the mean squared
    distance of a member to the segment's mean = the sum over features of each one's variance
    (divided by n, not n - 1; clipped at 0 against rounding)."""
    s.flush()
    if not s.z_n or s.z_sum is None or s.z_sq is None:
        return None
    mean = s.z_sum / s.z_n
    variance = np.maximum(s.z_sq / s.z_n - mean * mean, 0.0)
    return {"n": s.z_n, "mean": mean.tolist(), "within_variance": float(variance.sum())}


def _natural(text: str) -> list[Any]:
    """A sort key that orders the numbers inside ids by value (c2 before c10)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def _sums_to_dict(s: _Sums) -> dict[str, Any]:
    s.flush()
    return {"fields": sorted(s.fields) if s.fields is not None else None,
            "counts": [str(n) for n in s.counts], "defined": s.defined,
            "composition": [[[v, n] for v, n in counts.items()] for counts in s.composition],
            "z_n": s.z_n, "z_sum": None if s.z_sum is None else s.z_sum.tolist(),
            "z_sq": None if s.z_sq is None else s.z_sq.tolist()}


def _sums_from_dict(doc: Mapping[str, Any]) -> _Sums:
    s = _Sums(frozenset(doc["fields"]) if doc["fields"] is not None else None, len(doc["composition"]))
    s.counts = [int(n) for n in doc["counts"]]
    s.defined = doc["defined"]
    s.composition = [{v: n for v, n in pairs} for pairs in doc["composition"]]
    s.z_n = doc["z_n"]
    if doc["z_sum"] is not None:
        s.z_sum, s.z_sq = np.array(doc["z_sum"], dtype=float), np.array(doc["z_sq"], dtype=float)
    return s
