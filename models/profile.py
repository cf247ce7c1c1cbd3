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
import os
import re
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from models.config import ValueConfig
from models.state import MICROS, SECONDS_PER_DAY, CustomerState, utc_day
from models.rules import ClauseDef, RuleSet
from models.traits import CONSENT_CHANNELS, TRAIT_NAMES
from schemas import codes
from schemas.events import CompanySize, Education, IncomeBand
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


# ---- what each field holds, for rule clauses -------------------------------------------------------

#: Fields that hold a number (or None). Every other field is listed in one of the maps below.
_NUMBERS = frozenset({
    "frequency", "recency", "days_first_to_last_purchase", "T", "monetary_value", "p_alive", "expected_purchases",
    "expected_purchases_horizon_days", "expected_average_spend", "clv", "clv_horizon_days", "purchase_count",
    "total_spend", "gross_spend", "refund_count", "refund_total", "average_order_value", "days_since_last_purchase",
    "engagement", "influence_count", "nps", "nps_decayed", "csat_avg", "review_avg", "support_tickets", "complaints",
    "cost_to_serve", "recent_spend", "recent_spend_days", "birth_year", "household_size", "acquisition_cost", "age",
})
_BOOLS = frozenset({"bought_in_period", "bought_in_previous_period", "consent_email", "consent_sms", "consent_push",
                    "reachable"})
_TAG_LISTS = frozenset({"interests", "lifestyle"})
_TIMES = frozenset({"as_of", "first_purchase_at", "last_purchase_at", "last_active_at"})  # ISO 8601 text, UTC
#: Text fields with a closed set of values, and how a marketer would recognise a right one.
_CLOSED: dict[str, tuple[frozenset[str], str]] = {
    "country": (frozenset(codes.COUNTRIES), "an ISO 3166-1 alpha-2 code such as 'DE'"),
    "region": (frozenset(codes.REGIONS), "an ISO 3166-2 code such as 'DE-BY'"),
    "time_zone": (frozenset(codes.TIME_ZONES), "an IANA time zone such as 'Europe/Berlin'"),
    "income_band": (frozenset(b.value for b in IncomeBand), ", ".join(b.value for b in IncomeBand)),
    "education": (frozenset(e.value for e in Education), ", ".join(e.value for e in Education)),
    "company_size": (frozenset(c.value for c in CompanySize), ", ".join(c.value for c in CompanySize)),
    "nps_category": (frozenset({"promoter", "passive", "detractor"}), "promoter, passive, detractor"),
}
_ORDINAL = frozenset({"income_band", "education", "company_size"})
#: Fields a rule cannot read, and what to use instead.
_UNREADABLE: dict[str, str] = {
    "segment": "a rule reads the cluster segment as 'cluster' (its id, e.g. 'c3')",
    "rule_segments": "a rule segment cannot depend on other rule segments",
    "engagement_by_action": "a map of figures: use 'engagement' (all actions)",
    "engagement_by_channel": "a map of figures: use 'engagement' (all channels)",
}
_CLUSTER_ID = re.compile(r"^c[1-9][0-9]*$")
_TAG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")


def clause_problem(clause: ClauseDef) -> str | None:
    """Why ``clause`` could never hold on a profile (a value of another type than its field's, an
    op its field does not answer, a value outside a closed list), or None. Rules files are checked
    with it when read (:func:`load_rules`): such a clause would otherwise be silently false for
    every customer.

    >>> from models.rules import ClauseDef
    >>> clause_problem(ClauseDef(field="cluster", op="==", value="recent"))
    "cluster holds a segment's id such as 'c3' (GET /segments lists them), never its label: got 'recent'"
    >>> clause_problem(ClauseDef(field="interests", op="==", value="books"))
    "interests is a list of tags: use 'contains' / 'not contains', not '=='"
    >>> clause_problem(ClauseDef(field="country", op="in", value=["DE", "XX"])) is not None
    True
    >>> clause_problem(ClauseDef(field="consent_email", op="==", value=True)) is None
    True
    """
    field, op = clause.field, clause.op
    values = clause.value if isinstance(clause.value, list) else [clause.value]
    if field in _UNREADABLE:
        return f"{field}: {_UNREADABLE[field]}"
    if field in _TAG_LISTS:
        if op not in ("contains", "not contains"):
            return f"{field} is a list of tags: use 'contains' / 'not contains', not {op!r}"
        bad = [v for v in values if not (isinstance(v, str) and _TAG.match(v))]
        return f"{field} holds lower-case tags (a-z, 0-9, _ and -): {bad[0]!r} is none" if bad else None
    if op in ("contains", "not contains"):
        return f"{op!r} tests a list of tags (interests, lifestyle); {field} is not one"
    if field in _BOOLS:
        if op not in ("==", "!=", "in", "not in") or not all(isinstance(v, bool) for v in values):
            return f"{field} is true or false: write {field} == true (or false)"
        return None
    if field in _NUMBERS:
        if clause.percentile is not None:
            return None
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, float))]
        return f"{field} is a number: {bad[0]!r} is not one" if bad else None
    if op in (">", ">=", "<", "<=") and field not in _TIMES:
        hint = (f"; {field} is ordinal: list the bands with 'in' ({_CLOSED[field][1]})" if field in _ORDINAL else "")
        return f"{field} is text: {op!r} does not order it{hint}"
    bad = [v for v in values if not isinstance(v, str)]
    if bad:
        return f"{field} is text: {bad[0]!r} is not"
    if field == "cluster":
        wrong = [v for v in values if not _CLUSTER_ID.match(v)]
        return (f"cluster holds a segment's id such as 'c3' (GET /segments lists them), never its label: got "
                f"{wrong[0]!r}") if wrong else None
    if field in _CLOSED:
        allowed, what = _CLOSED[field]
        wrong = [v for v in values if v not in allowed]
        return f"{field}: {wrong[0]!r} is not one of its values ({what})" if wrong else None
    return None


def load_rules(path: str | os.PathLike[str]) -> RuleSet:
    """The rules file at ``path``, every clause on a profile field (:data:`PROFILE_FIELDS`) and able
    to hold (:func:`clause_problem`); else :class:`~models.rules.RuleDefinitionError` naming each
    clause and what is wrong with it."""
    return RuleSet.from_file(path, fields=PROFILE_FIELDS, check=clause_problem)
