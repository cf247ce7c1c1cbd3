"""A customer's profile as of a given time: the value state plus everything that depends on "now".

Days since the last purchase, T, P(alive), expected purchases, CLV and the decayed engagement and
satisfaction all move with time, so a customer who stops buying drifts without any new event of
their own.

"Recency" has two meanings in customer analytics, and the profile names each exactly:

* ``days_since_last_purchase``: RFM recency, the days from the last purchase to ``as_of``; it
  grows while a customer does not buy. The ``recency`` of ``/segments`` figures and of the
  clustering feature, and ``value.recency_days`` in segment-change events, are this one.
* ``days_first_to_last_purchase``: BTYD recency (t_x of the BG/NBD model), the days from the
  first to the last purchase day; it only changes with a purchase. The profile's ``recency`` field
  is this one, under its BTYD (``lifetimes``) name, kept for compatibility: new code and rules
  should use the exact names.
"""

from __future__ import annotations

import bisect
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from models.config import ValueConfig
from models.state import MICROS, SECONDS_PER_DAY, CustomerState, utc_day
from models.traits import CONSENT_CHANNELS, TRAIT_NAMES
from models.valuation import Valuation


def nps_category(score: int | None) -> str | None:
    if score is None:
        return None
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


class _At:
    """What every field of a profile derives from: the state, the time and the models (cached
    per profile: most fields read ``bought``, ``x``, ``t_x``, ``T`` or ``m``)."""

    __slots__ = ("state", "as_of", "valuation", "config", "bought", "x", "t_x", "T", "m", "eng_hl", "fb_hl",
                 "_by_action")

    def __init__(self, state: CustomerState, as_of: float, valuation: Valuation, config: ValueConfig):
        self.state, self.as_of, self.valuation, self.config = state, as_of, valuation, config
        self.eng_hl = config.engagement_half_life_days * SECONDS_PER_DAY
        self.fb_hl = config.feedback_half_life_days * SECONDS_PER_DAY
        self.bought = bool(state.purchase_days)
        self.x, self.t_x = state.frequency, state.recency_days
        self.T = utc_day(as_of) - state.purchase_days[0] if self.bought else None
        self.m = state.monetary_value
        self._by_action: dict[str, float] | None = None

    def by_action(self) -> dict[str, float]:
        if self._by_action is None:
            self._by_action = {k: d.value_at(self.as_of, self.eng_hl) for k, d in sorted(self.state.actions.items())}
        return self._by_action

    @property
    def day(self) -> int:
        return utc_day(self.as_of)

    @property
    def window(self) -> int:
        return self.config.recent_spend_days

    def recent_spend(self) -> float:
        """Net spend on the ``window`` UTC days ending with ``as_of``'s day (exact from the latest
        purchase day on: the state keeps that many days back from it)."""
        first = self.day - self.window
        return sum(m for d, m in self.state.recent_spend.items() if first < d <= self.day) / MICROS

    def bought_between(self, after: int, upto: int) -> bool:
        """Whether the customer bought on a UTC day in ``(after, upto]``."""
        days = self.state.purchase_days
        i = bisect.bisect_right(days, after)
        return i < len(days) and days[i] <= upto

    def trait(self, name: str) -> Any:
        held = self.state.traits.get(name)
        value = None if held is None else held[1]
        return list(value) if isinstance(value, list) else value  # the document's own copy

    def age(self) -> int | None:
        """Years reached in ``as_of``'s calendar year (UTC): only the birth year is known."""
        birth = self.trait("birth_year")
        if birth is None:
            return None
        age = datetime.fromtimestamp(self.as_of, timezone.utc).year - birth
        return age if age >= 0 else None

    def nps_decayed(self) -> float | None:
        weights = self.state.nps_weights.value_at(self.as_of, self.fb_hl)
        return self.state.nps_weighted.value_at(self.as_of, self.fb_hl) / weights if weights > 1e-12 else None


def _money(micros: int | None) -> float | None:
    return None if micros is None else micros / MICROS


def _if_bought(value: Callable[[_At], Any]) -> Callable[[_At], Any]:
    return lambda a: value(a) if a.bought else None


#: Every profile field, in the document's order, as a function of :class:`_At` (unrounded).
#: BTYD sufficient statistics in days, under lifetimes' names: frequency = repeat purchase days,
#: recency = days from the first to the last purchase day (not RFM recency, which is
#: days_since_last_purchase; kept for compatibility, its exact name is the next field), T = days
#: from the first purchase day to as_of.
_FIELDS: dict[str, Callable[[_At], Any]] = {
    "customer_id": lambda a: a.state.customer_id,
    "as_of": lambda a: _iso(a.as_of),
    "frequency": lambda a: a.x,
    "recency": lambda a: a.t_x,
    "days_first_to_last_purchase": _if_bought(lambda a: a.t_x),
    "T": lambda a: a.T,
    "monetary_value": lambda a: a.m,
    # lifetime value
    "p_alive": _if_bought(lambda a: a.valuation.prob_alive(a.x, a.t_x, a.T)),
    "expected_purchases": _if_bought(lambda a: a.valuation.expected_purchases(a.x, a.t_x, a.T)),
    "expected_purchases_horizon_days": lambda a: a.valuation.horizon_days,
    "expected_average_spend": _if_bought(lambda a: a.valuation.expected_average_spend(a.x, a.m)),
    "clv": _if_bought(lambda a: a.valuation.clv(a.x, a.t_x, a.T, a.m)),
    "clv_horizon_days": lambda a: a.valuation.horizon_days,
    # purchases
    "purchase_count": lambda a: a.state.purchase_count,
    "total_spend": lambda a: a.state.total_spend,
    "gross_spend": lambda a: a.state.gross_spend,
    "refund_count": lambda a: a.state.refund_count,
    "refund_total": lambda a: a.state.refund_total,
    "average_order_value": lambda a: a.state.average_order_value,
    "first_purchase_at": lambda a: _iso(a.state.first_purchase_ts),
    "last_purchase_at": lambda a: _iso(a.state.last_purchase_ts),
    "days_since_last_purchase": lambda a: ((a.as_of - a.state.last_purchase_ts) / SECONDS_PER_DAY
                                           if a.state.last_purchase_ts is not None else None),
    # engagement
    "engagement": lambda a: sum(a.by_action().values()),
    "engagement_by_action": lambda a: dict(a.by_action()),
    "engagement_by_channel": lambda a: {k: d.value_at(a.as_of, a.eng_hl) for k, d in sorted(a.state.channels.items())},
    "influence_count": lambda a: a.state.influence_count,
    "last_active_at": lambda a: _iso(a.state.last_event_ts),
    # feedback and cost to serve
    "nps": lambda a: a.state.nps_latest,
    "nps_category": lambda a: nps_category(a.state.nps_latest),
    "nps_decayed": lambda a: a.nps_decayed(),
    "csat_avg": lambda a: a.state.csat_sum / a.state.csat_count if a.state.csat_count else None,
    "review_avg": lambda a: a.state.review_sum / a.state.review_count if a.state.review_count else None,
    "support_tickets": lambda a: a.state.ticket_count,
    "complaints": lambda a: a.state.complaint_count,
    "cost_to_serve": lambda a: a.state.service_load.value_at(a.as_of, a.fb_hl),
    # recent spend and retention (ValueConfig.recent_spend_days, UTC days)
    "recent_spend": lambda a: a.recent_spend(),
    "recent_spend_days": lambda a: a.window,
    "bought_in_period": lambda a: a.bought_between(a.day - a.window, a.day),
    "bought_in_previous_period": lambda a: a.bought_between(a.day - 2 * a.window, a.day - a.window),
    # traits (models.traits), as the latest profile update set them; None when unknown
    **{name: (lambda a, name=name: a.trait(name)) for name in TRAIT_NAMES if name != "acquisition_cost"},
    "acquisition_cost": lambda a: _money(a.trait("acquisition_cost")),
    "age": lambda a: a.age(),
    "reachable": lambda a: any(a.trait(f"consent_{c}") is True for c in CONSENT_CHANNELS),
    # filled by segmentation
    "cluster": lambda a: a.state.cluster,
    "segment": lambda a: None,
    "rule_segments": lambda a: [],
}

#: Decimals each figure is shown with in the document (``exact=False``); the others are shown as is.
_SHOWN_DIGITS: dict[str, int] = {
    "monetary_value": 6, "p_alive": 6, "expected_purchases": 4, "expected_average_spend": 2, "clv": 2,
    "total_spend": 6, "gross_spend": 6, "refund_total": 6, "average_order_value": 6, "days_since_last_purchase": 3,
    "engagement": 4, "nps_decayed": 3, "csat_avg": 3, "review_avg": 3, "cost_to_serve": 4,
    "recent_spend": 6, "acquisition_cost": 6,
}
#: Fields whose values are maps of figures, shown each with these decimals.
_SHOWN_MAP_DIGITS: dict[str, int] = {"engagement_by_action": 4, "engagement_by_channel": 4}

PROFILE_FIELDS: tuple[str, ...] = tuple(_FIELDS)


def build_profile(state: CustomerState, as_of: float, valuation: Valuation, config: ValueConfig, *,
                  exact: bool = False) -> dict[str, Any]:
    """The public profile document (what ``replay`` writes and the web API answers).

    ``as_of`` is epoch seconds. BTYD quantities are in days on UTC calendar days, as
    ``lifetimes.utils.summary_data_from_transaction_data(freq='D')`` defines them. Figures are
    rounded for display; ``exact=True`` leaves them unrounded, for decisions: a rule
    ``days_since_last_purchase > 60`` must not hold or fail on a value rounded to 60.0, nor
    ``clv >= 100`` on 99.996 shown as 100.0 (models.pipeline evaluates rules on
    :func:`decision_values`, the same figures, only those the rules read).
    """
    at = _At(state, as_of, valuation, config)
    doc = {name: value(at) for name, value in _FIELDS.items()}
    if not exact:
        for name, digits in _SHOWN_DIGITS.items():
            if doc[name] is not None:
                doc[name] = round(doc[name], digits)
        for name, digits in _SHOWN_MAP_DIGITS.items():
            doc[name] = {k: round(v, digits) for k, v in doc[name].items()}
    return doc


def decision_values(state: CustomerState, as_of: float, valuation: Valuation, config: ValueConfig,
                    fields: Iterable[str]) -> dict[str, Any]:
    """The exact (unrounded) values of ``fields`` of the customer's profile as of ``as_of``: what
    :func:`build_profile` with ``exact=True`` holds under those keys, computed for those keys only
    (rule segments read a few fields per evaluation; the whole document was a fifth of the
    engine's time). An unknown field is left out (a rule clause reads it as None).

    >>> from models.valuation import pinned_valuation
    >>> config = ValueConfig()
    >>> decision_values(CustomerState("c"), 0.0, pinned_valuation(config), config, ["purchase_count", "clv"])
    {'purchase_count': 0, 'clv': None}
    """
    at = _At(state, as_of, valuation, config)
    return {name: _FIELDS[name](at) for name in fields if name in _FIELDS}
