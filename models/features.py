"""Segmentation features of a customer, as of a given time.

Each feature is a plain float, mostly log-scaled so that a few whales do not stretch the space.
They are standardised online (``models.clustering.OnlineScaler``) before clustering, so centroid
coordinates read as "standard deviations above or below the population".

| feature | definition | why |
|---|---|---|
| value | log1p(CLV over the horizon) | what the customer is worth from now on |
| frequency | log1p(BTYD repeat purchase days) | how habitual |
| recency | log1p(days since last purchase), 1000 if never bought | lapsing shows here first |
| p_alive | BG/NBD P(alive), 0 if never bought | churn risk the model sees |
| order_value | log1p(average order value) | basket size |
| engagement | log1p(time-decayed engagement actions) | attention outside purchases |
| satisfaction | time-decayed NPS, 7 (passive) when unknown | promoter vs detractor |
| cost_to_serve | log1p(decayed tickets + weighted complaints) | service load |
| tenure | log1p(days since first purchase) | new vs long-standing |

>>> from models.config import ValueConfig
>>> from models.state import CustomerState
>>> from models.valuation import pinned_valuation
>>> v = feature_vector(CustomerState("c"), 0.0, pinned_valuation(ValueConfig()), ValueConfig())
>>> dict(zip(FEATURES, v))["recency"] == math.log1p(NEVER_BOUGHT_DAYS)
True

**Trait features** (``SegmentationConfig.trait_features``, none by default) are appended after
these nine, in the configured order, from the closed set :data:`TRAIT_FEATURES`:

| feature | encoding |
|---|---|
| age | years as of the evaluation time: its calendar year (UTC) minus ``birth_year`` (as the profile's ``age``) |
| household_size | as is |
| income_band, education, company_size | rank 0..k-1 in the enum's order in schemas.events (lowest first) |

An unknown (or cleared) trait is NaN here: :meth:`models.clustering.Scaler.fit` ignores it
(nan-aware mean and standard deviation) and the standardisation imputes 0, the sample's mean, so
a customer whose trait is unknown is pulled toward no segment by it.

>>> b = FeatureBasis(traits=(1990, None, "high", None, None))
>>> v = vector_at(b, 1767225600.0, pinned_valuation(ValueConfig()), ValueConfig(), ("age", "income_band", "education"))
>>> v[len(FEATURES):]
[36.0, 4.0, nan]
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np

from models.config import ValueConfig
from models.decay import decay_factor
from models.state import SECONDS_PER_DAY, CustomerState, utc_day
from models.traits import CLUSTERING_TRAITS
from models.valuation import Valuation
from schemas.events import CompanySize, Education, IncomeBand

FEATURES: tuple[str, ...] = (
    "value", "frequency", "recency", "p_alive", "order_value", "engagement", "satisfaction",
    "cost_to_serve", "tenure",
)
NEVER_BOUGHT_DAYS = 1000.0
NEUTRAL_NPS = 7.0
_NEVER = math.log1p(NEVER_BOUGHT_DAYS)

#: Traits that can be clustering features (``SegmentationConfig.trait_features``), appended after
#: :data:`FEATURES` in the configured order (see the module's docstring for their encodings).
TRAIT_FEATURES: tuple[str, ...] = CLUSTERING_TRAITS
#: The rank of each value of an ordinal trait feature: 0..k-1 in the contract's order, lowest first.
ORDINAL_RANKS: dict[str, dict[str, int]] = {
    "income_band": {m.value: rank for rank, m in enumerate(IncomeBand)},
    "education": {m.value: rank for rank, m in enumerate(Education)},
    "company_size": {m.value: rank for rank, m in enumerate(CompanySize)},
}
#: The traits a basis carries (``FeatureBasis.traits``), one per :data:`TRAIT_FEATURES` entry.
BASIS_TRAITS: tuple[str, ...] = ("birth_year", "household_size", "income_band", "education", "company_size")


def features_with(trait_features: Sequence[str] = ()) -> tuple[str, ...]:
    """The clustering features with ``trait_features`` appended (:data:`FEATURES` without any).

    >>> features_with(("income_band",))[len(FEATURES):]
    ('income_band',)
    """
    return FEATURES + tuple(trait_features)



@dataclass(frozen=True, slots=True)
class FeatureBasis:
    """The time-free inputs of the features: a customer's features at *any* time derive from it.

    The training sample keeps bases, not vectors, so every sampled customer is valued as of the
    training time: a customer who went quiet looks lapsed to the trainer too, not as they were at
    their last event. Compact (a tuple on the wire) so workers can ship it to a trainer.
    """

    x: int = 0  # BTYD repeat purchase days
    t_x: int = 0  # BTYD recency (days)
    first_day: int | None = None  # UTC day of the first purchase; None = never bought
    last_purchase_ts: float = 0.0
    monetary: float = 0.0
    order_value: float = 0.0
    engagement: float = 0.0  # decayed engagement at engagement_ref
    engagement_ref: float = 0.0
    satisfaction: float = NEUTRAL_NPS  # decayed NPS (a ratio of two equally decayed sums: time-free)
    service_load: float = 0.0  # decayed at service_ref
    service_ref: float = 0.0
    purchase_count: int = 0
    total_spend: float = 0.0
    # Whether the customer ever answered an NPS survey: ``satisfaction`` is NEUTRAL_NPS for both a
    # passive and a customer never asked, and statistics must tell them apart. None = a basis from
    # an older worker (the field came later): known when its satisfaction is not the neutral value.
    nps_known: bool | None = None
    # Not an input of the features: the customer's cluster segment right after the evaluation that
    # produced this basis (None: none yet, or a basis from an older worker). The trainer describes
    # a segment by its members, not by the customers its centre happens to be nearest to: with
    # margin and dwell the two differ (docs/segmentation.md, "What a segment's figures are over").
    segment: str | None = None
    # The raw values of BASIS_TRAITS (None each when unknown), carried only when trait features are
    # configured or in force: None otherwise, and then absent from the wire (to_list) as before
    # the field existed. A basis from an older worker has none: its trait features are missing.
    traits: tuple[Any, ...] | None = None

    @property
    def answered_nps(self) -> bool:
        return self.nps_known if self.nps_known is not None else self.satisfaction != NEUTRAL_NPS

    def to_list(self) -> list:
        # every evaluated sampled customer is sent to the trainer
        values = _core_fields(self)
        return list(values) if self.traits is None else [*values, list(self.traits)]

    @classmethod
    def from_list(cls, values: list) -> "FeatureBasis":
        """The basis :meth:`to_list` wrote; fields this version does not know (a newer worker's,
        appended at the end) are ignored, and missing ones (an older worker's) take their defaults."""
        basis = cls(*values[:_N_FIELDS])
        if basis.traits is not None:
            object.__setattr__(basis, "traits", tuple(basis.traits) if isinstance(basis.traits, list | tuple) else None)
        return basis


_N_FIELDS = len(FeatureBasis.__slots__)
# every field but traits, in order: one C call instead of a getattr per field
_core_fields = operator.attrgetter(*FeatureBasis.__slots__[:-1])


def _held_traits(state: CustomerState) -> tuple[Any, ...]:
    held = state.traits
    return tuple(held[n][1] if n in held else None for n in BASIS_TRAITS)


def basis_of(state: CustomerState, config: ValueConfig, traits: bool = False) -> FeatureBasis:
    """The customer's basis now; ``traits``: carry the traits trait features are computed from."""
    fb_hl = config.feedback_half_life_days * SECONDS_PER_DAY
    eng_hl = config.engagement_half_life_days * SECONDS_PER_DAY
    ref = state.last_event_ts or 0.0
    engagement = sum(d.value_at(ref, eng_hl) for d in state.actions.values())
    weights = state.nps_weights.value
    satisfaction = (state.nps_weighted.value_at(state.nps_weights.ref, fb_hl) / weights
                    if weights > 1e-9 else NEUTRAL_NPS)
    return FeatureBasis(
        x=state.frequency, t_x=state.recency_days,
        first_day=state.purchase_days[0] if state.purchase_days else None,
        last_purchase_ts=state.last_purchase_ts or 0.0, monetary=state.monetary_value,
        order_value=state.average_order_value, engagement=engagement, engagement_ref=ref,
        satisfaction=satisfaction, service_load=state.service_load.value, service_ref=state.service_load.ref,
        purchase_count=state.purchase_count, total_spend=state.total_spend, nps_known=weights > 1e-9,
        traits=_held_traits(state) if traits else None,
    )


def _year(ts: float) -> int:
    return datetime.fromtimestamp(ts, timezone.utc).year


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return math.nan
    return float(value)


def trait_value(name: str, raw: Any, year: int) -> float:
    """Trait feature ``name`` of the basis trait value ``raw`` in calendar year ``year``: NaN when
    unknown (or not a value the contract allows).

    >>> trait_value("age", 1990, 2026), trait_value("income_band", "low", 2026), trait_value("education", "?", 2026)
    (36.0, 0.0, nan)
    """
    if raw is None:
        return math.nan
    if name == "age":
        age = year - _number(raw)
        return age if age >= 0 else math.nan
    if name == "household_size":
        return _number(raw)
    rank = ORDINAL_RANKS[name].get(raw) if isinstance(raw, str) else None
    return math.nan if rank is None else float(rank)


def trait_row(b: FeatureBasis, now: float, traits: Sequence[str]) -> list[float]:
    """The trait features ``traits`` of basis ``b`` as of ``now``; NaN each when unknown."""
    held = b.traits
    if held is None:
        return [math.nan] * len(traits)
    year = _year(now) if "age" in traits else 0
    out = []
    for name in traits:
        k = TRAIT_FEATURES.index(name)
        out.append(trait_value(name, held[k] if k < len(held) else None, year))
    return out


def vector_at(b: FeatureBasis, now: float, valuation: Valuation, config: ValueConfig,
              traits: Sequence[str] = ()) -> list[float]:
    """The features of basis ``b`` as of ``now`` (epoch seconds), in :data:`FEATURES` order, then
    the trait features ``traits`` (NaN where unknown)."""
    row = _behaviour_at(b, now, valuation, config)
    if traits:
        row += trait_row(b, now, traits)
    return row


def _behaviour_at(b: FeatureBasis, now: float, valuation: Valuation, config: ValueConfig) -> list[float]:
    eng_hl = config.engagement_half_life_days * SECONDS_PER_DAY
    fb_hl = config.feedback_half_life_days * SECONDS_PER_DAY
    engagement = b.engagement * decay_factor(now - b.engagement_ref, eng_hl)
    cost = b.service_load * decay_factor(now - b.service_ref, fb_hl)
    if b.first_day is None:
        return [0.0, 0.0, _NEVER, 0.0, 0.0, math.log1p(engagement), b.satisfaction, math.log1p(cost), 0.0]
    T = max(utc_day(now) - b.first_day, b.t_x)
    clv = valuation.clv(b.x, b.t_x, T, b.monetary)
    p_alive = valuation.prob_alive(b.x, b.t_x, T)
    return [
        math.log1p(max(clv, 0.0)) if clv is not None and math.isfinite(clv) else 0.0,
        math.log1p(b.x),
        math.log1p(max(now - b.last_purchase_ts, 0.0) / SECONDS_PER_DAY),
        p_alive if p_alive is not None and math.isfinite(p_alive) else 1.0,
        math.log1p(max(b.order_value, 0.0)),
        math.log1p(engagement),
        b.satisfaction,
        math.log1p(cost),
        math.log1p(T),
    ]


def matrix_at(bases: list[FeatureBasis], now: float | np.ndarray, valuation: Valuation,
              config: ValueConfig, traits: Sequence[str] = ()) -> np.ndarray:
    """Features of many bases as of ``now`` (one row each, in :data:`FEATURES` order, then the trait
    features ``traits``, NaN where unknown); vectorised for training rounds and batch evaluation.
    ``now``: epoch seconds, one time for every row or an array of one time per row (a batch
    evaluates each customer as of its own time). Row for row the same as :func:`vector_at`."""
    behaviour = _behaviour_matrix(bases, now, valuation, config)
    if not traits:
        return behaviour
    times = now if isinstance(now, np.ndarray) else np.full(len(bases), now, dtype=float)
    extra = np.array([trait_row(b, float(t), traits) for b, t in zip(bases, times)], dtype=float)
    return np.hstack([behaviour, extra.reshape(len(bases), len(traits))])


def _behaviour_matrix(bases: list[FeatureBasis], now: float | np.ndarray, valuation: Valuation,
                      config: ValueConfig) -> np.ndarray:
    if not bases:
        return np.empty((0, len(FEATURES)))
    cols = np.array([_core_fields(b) for b in bases], dtype=object)
    bought = np.array([b.first_day is not None for b in bases])
    x = cols[:, 0].astype(float)
    t_x = cols[:, 1].astype(float)
    first = np.where(bought, np.array([b.first_day or 0 for b in bases], dtype=float), 0.0)
    last_ts, monetary, aov = (cols[:, i].astype(float) for i in (3, 4, 5))
    eng, eng_ref, sat, load, load_ref = (cols[:, i].astype(float) for i in (6, 7, 8, 9, 10))
    eng_hl = config.engagement_half_life_days * SECONDS_PER_DAY
    fb_hl = config.feedback_half_life_days * SECONDS_PER_DAY
    engagement = eng * np.exp2(-np.maximum(now - eng_ref, 0.0) / eng_hl)
    cost = load * np.exp2(-np.maximum(now - load_ref, 0.0) / fb_hl)
    today = np.floor_divide(now, SECONDS_PER_DAY) if isinstance(now, np.ndarray) else utc_day(now)
    T = np.maximum(today - first, t_x)
    out = np.zeros((len(bases), len(FEATURES)))
    out[:, 5] = np.log1p(engagement)
    out[:, 6] = sat
    out[:, 7] = np.log1p(cost)
    out[:, 2] = _NEVER
    if bought.any():
        xb, txb, Tb = x[bought], t_x[bought], T[bought]
        clv = valuation.clv_many(xb, txb, Tb, monetary[bought])
        p_alive = valuation.prob_alive_many(xb, txb, Tb)
        out[bought, 0] = np.log1p(np.maximum(np.nan_to_num(clv, nan=0.0), 0.0)) if clv is not None else 0.0
        out[bought, 1] = np.log1p(xb)
        now_b = now[bought] if isinstance(now, np.ndarray) else now
        out[bought, 2] = np.log1p(np.maximum(now_b - last_ts[bought], 0.0) / SECONDS_PER_DAY)
        out[bought, 3] = np.nan_to_num(p_alive, nan=1.0) if p_alive is not None else 1.0
        out[bought, 4] = np.log1p(np.maximum(aov[bought], 0.0))
        out[bought, 8] = np.log1p(Tb)
    return out


#: Profile fields that a sampled customer's basis can provide (for population percentiles).
BASIS_PROFILE_FIELDS = ("clv", "p_alive", "frequency", "recency", "days_first_to_last_purchase", "T", "monetary_value",
                        "days_since_last_purchase", "average_order_value", "engagement", "nps_decayed", "cost_to_serve",
                        "purchase_count", "total_spend")


def profiles_at(bases: list[FeatureBasis], matrix: np.ndarray) -> list[dict[str, float | None]]:
    """Profile fields of sampled customers, from their bases and their feature rows at one time."""
    out = []
    for b, row in zip(bases, matrix):
        bought = b.first_day is not None
        out.append({
            "clv": float(np.expm1(row[0])) if bought else None,
            "p_alive": float(row[3]) if bought else None,
            "frequency": b.x, "recency": b.t_x if bought else 0,
            "days_first_to_last_purchase": b.t_x if bought else None,
            "T": float(np.expm1(row[8])) if bought else None,
            "monetary_value": b.monetary,
            "days_since_last_purchase": float(np.expm1(row[2])) if bought else None,
            "average_order_value": b.order_value,
            "engagement": float(np.expm1(row[5])),
            # None for a customer who never answered, as in the profile (models.profile): a
            # percentile of NPS must not count the neutral placeholder as answers.
            "nps_decayed": b.satisfaction if b.answered_nps else None,
            "cost_to_serve": float(np.expm1(row[7])),
            "purchase_count": b.purchase_count, "total_spend": b.total_spend,
        })
    return out


def feature_vector(state: CustomerState, now: float, valuation: Valuation, config: ValueConfig,
                   traits: Sequence[str] = ()) -> list[float]:
    """The customer's features as of ``now`` (epoch seconds), in :data:`FEATURES` order, then the
    trait features ``traits``."""
    return vector_at(basis_of(state, config, traits=bool(traits)), now, valuation, config, traits)


#: Features that exist only for a customer who bought (a never-buyer's recency of 1000 days or
#: P(alive) of 0 is a placeholder, not a figure to average or to quote).
PURCHASE_FEATURES = frozenset({"value", "frequency", "recency", "p_alive", "order_value", "tenure"})
_UNSCALED = ("p_alive", "satisfaction")


def raw_feature_value(name: str, value: float) -> float:
    """Undo the log scaling for explanations (e.g. 'recency 42 days'); a trait feature is as is
    (age in years, household size, an ordinal's rank)."""
    return value if name in _UNSCALED or name in TRAIT_FEATURES else math.expm1(value)


def raw_matrix(matrix: np.ndarray) -> np.ndarray:
    """:func:`raw_feature_value` for a whole feature matrix (n x len(FEATURES), then any trait
    features), in feature units: CLV and order value in the base currency, recency and tenure in
    days, P(alive) and NPS as is, trait features as is.

    >>> raw_matrix(np.array([[math.log1p(99.0)] + [0.5] * 8]))[0, :4].round(3).tolist()
    [99.0, 0.649, 0.649, 0.5]
    """
    out = np.expm1(matrix)
    for name in _UNSCALED:
        i = FEATURES.index(name)
        out[:, i] = matrix[:, i]
    if matrix.shape[1] > len(FEATURES):
        out[:, len(FEATURES):] = matrix[:, len(FEATURES):]
    return out


def known_features(bought: bool, answered_nps: bool) -> frozenset[str]:
    """The behaviour features that carry a figure of this customer (placeholders left out). Trait
    features are never among them: they explain no change (``drivers``; see docs/segmentation.md).

    >>> sorted(known_features(bought=False, answered_nps=False))
    ['cost_to_serve', 'engagement']
    """
    return frozenset(f for f in FEATURES if (bought or f not in PURCHASE_FEATURES)
                     and (answered_nps or f != "satisfaction"))
