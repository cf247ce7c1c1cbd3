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

from datetime import datetime, timezone
from typing import Any

from models.config import ValueConfig
from models.state import SECONDS_PER_DAY, CustomerState, utc_day
from models.valuation import Valuation


def nps_category(score: int | None) -> str | None:
    if score is None:
        return None
    return "promoter" if score >= 9 else "passive" if score >= 7 else "detractor"


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat()


def build_profile(state: CustomerState, as_of: float, valuation: Valuation, config: ValueConfig, *,
                  exact: bool = False) -> dict[str, Any]:
    """The public profile document (what ``replay`` writes and the web API answers).

    ``as_of`` is epoch seconds. BTYD quantities are in days on UTC calendar days, as
    ``lifetimes.utils.summary_data_from_transaction_data(freq='D')`` defines them. Figures are
    rounded for display; ``exact=True`` leaves them unrounded, for decisions: a rule
    ``days_since_last_purchase > 60`` must not hold or fail on a value rounded to 60.0, nor
    ``clv >= 100`` on 99.996 shown as 100.0 (models.pipeline evaluates rules on the exact profile).
    """
    def _round(value: float | None, digits: int = 4) -> float | None:
        return value if exact or value is None else round(value, digits)

    eng_hl = config.engagement_half_life_days * SECONDS_PER_DAY
    fb_hl = config.feedback_half_life_days * SECONDS_PER_DAY
    bought = bool(state.purchase_days)
    x, t_x = state.frequency, state.recency_days
    T = utc_day(as_of) - state.purchase_days[0] if bought else None
    m = state.monetary_value
    by_action = {k: d.value_at(as_of, eng_hl) for k, d in sorted(state.actions.items())}
    weights = state.nps_weights.value_at(as_of, fb_hl)
    nps_decayed = state.nps_weighted.value_at(as_of, fb_hl) / weights if weights > 1e-12 else None
    return {
        "customer_id": state.customer_id,
        "as_of": _iso(as_of),
        # BTYD sufficient statistics in days, under lifetimes' names: frequency = repeat purchase
        # days, recency = days from the first to the last purchase day (not RFM recency, which is
        # days_since_last_purchase; kept for compatibility, its exact name is the next field),
        # T = days from the first purchase day to as_of
        "frequency": x,
        "recency": t_x,
        "days_first_to_last_purchase": t_x if bought else None,
        "T": T,
        "monetary_value": _round(m, 6),
        # lifetime value
        "p_alive": _round(valuation.prob_alive(x, t_x, T), 6) if bought else None,
        "expected_purchases": _round(valuation.expected_purchases(x, t_x, T)) if bought else None,
        "expected_purchases_horizon_days": valuation.horizon_days,
        "expected_average_spend": _round(valuation.expected_average_spend(x, m), 2) if bought else None,
        "clv": _round(valuation.clv(x, t_x, T, m), 2) if bought else None,
        "clv_horizon_days": valuation.horizon_days,
        # purchases
        "purchase_count": state.purchase_count,
        "total_spend": _round(state.total_spend, 6),
        "gross_spend": _round(state.gross_spend, 6),
        "refund_count": state.refund_count,
        "refund_total": _round(state.refund_total, 6),
        "average_order_value": _round(state.average_order_value, 6),
        "first_purchase_at": _iso(state.first_purchase_ts),
        "last_purchase_at": _iso(state.last_purchase_ts),
        "days_since_last_purchase": _round((as_of - state.last_purchase_ts) / SECONDS_PER_DAY, 3)
        if state.last_purchase_ts is not None else None,
        # engagement
        "engagement": _round(sum(by_action.values()), 4),
        "engagement_by_action": {k: _round(v, 4) for k, v in by_action.items()},
        "engagement_by_channel": {k: _round(d.value_at(as_of, eng_hl), 4) for k, d in sorted(state.channels.items())},
        "influence_count": state.influence_count,
        "last_active_at": _iso(state.last_event_ts),
        # feedback and cost to serve
        "nps": state.nps_latest,
        "nps_category": nps_category(state.nps_latest),
        "nps_decayed": _round(nps_decayed, 3),
        "csat_avg": _round(state.csat_sum / state.csat_count, 3) if state.csat_count else None,
        "review_avg": _round(state.review_sum / state.review_count, 3) if state.review_count else None,
        "support_tickets": state.ticket_count,
        "complaints": state.complaint_count,
        "cost_to_serve": _round(state.service_load.value_at(as_of, fb_hl), 4),
        # filled by segmentation
        "segment": None,
        "rule_segments": [],
    }
