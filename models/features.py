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
"""

from __future__ import annotations

import math

from models.config import ValueConfig
from models.state import SECONDS_PER_DAY, CustomerState, utc_day
from models.valuation import Valuation

FEATURES: tuple[str, ...] = (
    "value", "frequency", "recency", "p_alive", "order_value", "engagement", "satisfaction",
    "cost_to_serve", "tenure",
)
NEVER_BOUGHT_DAYS = 1000.0
NEUTRAL_NPS = 7.0

#: (when high, when low) words for segment descriptions; None = not worth saying.
DESCRIPTORS: dict[str, tuple[str | None, str | None]] = {
    "value": ("high value", "low value"),
    "frequency": ("frequent", "infrequent"),
    "recency": ("lapsed", "recent"),
    "p_alive": ("likely active", "churn risk"),
    "order_value": ("big baskets", "small baskets"),
    "engagement": ("engaged", "disengaged"),
    "satisfaction": ("promoter", "detractor"),
    "cost_to_serve": ("costly to serve", None),
    "tenure": ("long-standing", "new"),
}


def feature_vector(state: CustomerState, now: float, valuation: Valuation, config: ValueConfig) -> list[float]:
    """The customer's features as of ``now`` (epoch seconds), in :data:`FEATURES` order."""
    eng_hl = config.engagement_half_life_days * SECONDS_PER_DAY
    fb_hl = config.feedback_half_life_days * SECONDS_PER_DAY
    engagement = sum(d.value_at(now, eng_hl) for d in state.actions.values())
    weights = state.nps_weights.value_at(now, fb_hl)
    satisfaction = state.nps_weighted.value_at(now, fb_hl) / weights if weights > 1e-9 else NEUTRAL_NPS
    cost = state.service_load.value_at(now, fb_hl)
    if not state.purchase_days:
        return [0.0, 0.0, math.log1p(NEVER_BOUGHT_DAYS), 0.0, 0.0, math.log1p(engagement),
                satisfaction, math.log1p(cost), 0.0]
    x, t_x = state.frequency, state.recency_days
    T = max(utc_day(now) - state.purchase_days[0], 0)
    clv = valuation.clv(x, t_x, T, state.monetary_value)
    p_alive = valuation.prob_alive(x, t_x, T)
    since_last = max(now - (state.last_purchase_ts or now), 0.0) / SECONDS_PER_DAY
    return [
        math.log1p(max(clv, 0.0)) if clv is not None and math.isfinite(clv) else 0.0,
        math.log1p(x),
        math.log1p(since_last),
        p_alive if p_alive is not None and math.isfinite(p_alive) else 1.0,
        math.log1p(max(state.average_order_value, 0.0)),
        math.log1p(engagement),
        satisfaction,
        math.log1p(cost),
        math.log1p(T),
    ]


def raw_feature_value(name: str, value: float) -> float:
    """Undo the log scaling for explanations (e.g. 'recency 42 days')."""
    return value if name in ("p_alive", "satisfaction") else math.expm1(value)
