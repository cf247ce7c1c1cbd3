"""A viability scorecard per segment, from its KPI figures (:mod:`models.kpis`).

A segment is worth acting on when it is measurable, substantial, accessible, differentiable and
actionable (the criteria of effective segmentation of Kotler & Keller, *Marketing Management*), and
profitable. Each criterion here is one computation on the segment's figures, judged against a
threshold of :class:`models.config.ScorecardConfig`:

==============  ========================================================================  =========
criterion       value                                                                      verdict
==============  ========================================================================  =========
substantial     ``share``: members / all customers                                         >= 0.02
measurable      ``measurable_share``: members with every defining field known / members    >= 0.8
accessible      ``reachable_share``: members with a channel consented to / members        >= 0.5
differentiable  separation from the nearest other segment of the same kind (below)         >= 1.0
stable          (entered + left) / size, per 7 days                                        <= 0.2
profitable      clv_mean / (cac_mean + cost_to_serve_mean x service_unit_cost)             >= 1.0
==============  ========================================================================  =========

**Separation** (differentiable) of segments *a* and *b*, on the members' standardised feature
vectors: the distance between the two member means over the root mean of the two segments' mean
within-segment variances (each the sum over features of that feature's variance, i.e. the mean
squared distance of a member to its segment's mean)::

    separation(a, b) = || mean_a - mean_b || / sqrt((W_a + W_b) / 2)

A Fisher-like separation: Fisher's (1936, "The use of multiple measurements in taxonomic
problems") criterion weighs the distance between class means against the within-class scatter;
with the scatter pooled over features it reads as here. It is akin to the inverse of the
pairwise term of the Davies-Bouldin index (Davies & Bouldin 1979, "A cluster separation measure"),
which adds the two root mean square spreads where this takes their quadratic mean. 1 means the
means are one typical member-to-mean distance apart; the nearest segment is the one with the
smallest separation.

**Stability** needs the members who entered and left the segment and the time span those counts
cover (:class:`MembershipFlow`); normalised to a week. Under a day of changes it is "not measured
yet".

**Profitability** weighs what a member is worth (mean CLV over the CLV horizon) against what a
member costs: the mean acquisition cost where known plus the mean service load priced at
``service_unit_cost``. When no member's acquisition cost is known the verdict is judged on the cost
to serve alone, and says so in its ``note`` (likewise for an unpriced cost to serve).

Actionable judges the marketer's own programmes and is not computed; stability stands in its
place (a segment whose members change every week cannot be acted on for long).

Each verdict is "pass", "fail" or "unknown" (the data to judge is missing), with the value, the
threshold and a one-line reason a marketer reads.

>>> small = {"kind": "rule", "segment_id": "vip", "size": 31, "share": 0.031, "measurable_share": 1.0,
...          "reachable_share": 0.7, "consent_known_share": 0.9, "clv_mean": 500.0, "cac_mean": None,
...          "cost_to_serve_mean": 2.0, "features": None}
>>> card = score(
...     [small], ScorecardConfig(min_share=0.05, service_unit_cost=10.0), currency="EUR")
>>> card.failing()
{('rule', 'vip'): ['substantial']}
>>> card.segments[0].criteria["substantial"].reason
'3.1 % of customers, under the 5 % minimum'
>>> profit = card.segments[0].criteria["profitable"]
>>> profit.verdict, profit.value, profit.note
('pass', 25.0, 'judged on cost to serve alone: no member has a known acquisition cost')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from models.config import ScorecardConfig

__all__ = ["CRITERIA", "Criterion", "MembershipFlow", "Scorecard", "SegmentScore", "Verdict", "score", "separation"]

Verdict = Literal["pass", "fail", "unknown"]
#: The criteria, in the order they are shown.
CRITERIA = ("substantial", "measurable", "accessible", "differentiable", "stable", "profitable")
_MIN_SPAN_DAYS = 1.0  # stability over less than a day of membership changes is noise
_MIN_SPREAD_MEMBERS = 2  # a spread needs two members with features
_SegmentKey = tuple[str, str]


@dataclass(frozen=True)
class Criterion:
    """One criterion's verdict on one segment. ``value`` is None when unknown (and may be infinite
    where nothing is set against it: no spread, no cost); ``note`` marks a verdict judged on part
    of its inputs."""

    name: str
    verdict: Verdict
    value: float | None
    threshold: float
    reason: str
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        finite = self.value is None or math.isfinite(self.value)
        return {"verdict": self.verdict, "value": self.value if finite else None, "threshold": self.threshold,
                "reason": self.reason, "note": self.note}


@dataclass(frozen=True)
class MembershipFlow:
    """Customers who entered and who left a segment over the last ``span_days`` days (at most 7 are
    wanted; a longer or shorter span is normalised to a week)."""

    entered: int
    left: int
    span_days: float


@dataclass(frozen=True)
class SegmentScore:
    kind: str
    segment_id: str
    criteria: dict[str, Criterion]

    @property
    def failed(self) -> list[str]:
        """The criteria the segment fails, in :data:`CRITERIA` order."""
        return [name for name, c in self.criteria.items() if c.verdict == "fail"]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "segment_id": self.segment_id, "failed": self.failed,
                "criteria": {name: c.to_dict() for name, c in self.criteria.items()}}


@dataclass(frozen=True)
class Scorecard:
    segments: list[SegmentScore]
    config: ScorecardConfig = field(default_factory=ScorecardConfig)

    def failing(self) -> dict[_SegmentKey, list[str]]:
        """Which segments fail which criteria: ``(kind, segment_id)`` -> failed criteria, for the
        segments failing at least one."""
        return {(s.kind, s.segment_id): s.failed for s in self.segments if s.failed}

    def get(self, kind: str, segment_id: str) -> SegmentScore | None:
        return next((s for s in self.segments if (s.kind, s.segment_id) == (kind, segment_id)), None)

    def to_dict(self) -> dict[str, Any]:
        return {"thresholds": self.config.model_dump(), "segments": [s.to_dict() for s in self.segments]}


def score(figures: Sequence[Mapping[str, Any]], config: ScorecardConfig | None = None,
          flows: Mapping[_SegmentKey, MembershipFlow] | None = None, currency: str = "USD") -> Scorecard:
    """The scorecard of every segment of ``figures`` (:meth:`models.kpis.SegmentKPIs.figures`: a
    figure missing from a segment's dict is unknown). ``flows``: each segment's membership changes
    (a segment without one is not measured yet for stability); ``currency``: the base currency,
    for the reasons."""
    config = config or ScorecardConfig()
    flows = flows or {}
    return Scorecard([SegmentScore(f["kind"], f["segment_id"], {
        "substantial": substantial(f, config),
        "measurable": measurable(f, config),
        "accessible": accessible(f, config),
        "differentiable": differentiable(f, figures, config),
        "stable": stable(f, flows.get((f["kind"], f["segment_id"])), config),
        "profitable": profitable(f, config, currency),
    }) for f in figures], config)


# ---- the criteria --------------------------------------------------------------------------------

def substantial(f: Mapping[str, Any], config: ScorecardConfig) -> Criterion:
    """Share of all customers >= ``min_share``.

    >>> substantial({"share": 0.02}, ScorecardConfig()).verdict, substantial({"share": 0.0199}, ScorecardConfig()).reason
    ('pass', '1.99 % of customers, under the 2 % minimum')
    """
    return _at_least("substantial", f.get("share"), config.min_share, "of customers", "no customer was counted")


def measurable(f: Mapping[str, Any], config: ScorecardConfig) -> Criterion:
    """Share of members whose defining fields are all known >= ``min_measurable_share``."""
    fields = f.get("defining_fields") or []
    shown = ", ".join(fields[:3]) + (f" and {len(fields) - 3} more" if len(fields) > 3 else "")
    what = f"of members with every defining field known ({shown})" if fields else "of members with the defining data"
    return _at_least("measurable", f.get("measurable_share"), config.min_measurable_share, what,
                     "the fields that define this segment were not given")


def accessible(f: Mapping[str, Any], config: ScorecardConfig) -> Criterion:
    """Share of members who consented to at least one channel >= ``min_reachable_share``; unknown
    when no member has any consent recorded (no profile data to judge on, rather than a segment
    nobody may be contacted in)."""
    if not f.get("consent_known_share"):
        return Criterion("accessible", "unknown", None, config.min_reachable_share,
                         "no member has a consent recorded (email, sms or push)")
    return _at_least("accessible", f.get("reachable_share"), config.min_reachable_share,
                     "of members reachable on a channel they consented to", "")


def differentiable(f: Mapping[str, Any], figures: Sequence[Mapping[str, Any]], config: ScorecardConfig) -> Criterion:
    """:func:`separation` from the nearest other segment of the same kind >= ``min_separation``."""
    name, threshold = "differentiable", config.min_separation
    if not _spread_known(f):
        return Criterion(name, "unknown", None, threshold, "too few members with features to measure a spread")
    others = [(separation(f["features"], o["features"]), o["segment_id"]) for o in figures
              if o["kind"] == f["kind"] and o["segment_id"] != f["segment_id"] and _spread_known(o)]
    if not others:
        return Criterion(name, "unknown", None, threshold, f"no other {f['kind']} segment to compare with")
    value, nearest = min(others)
    verdict: Verdict = "pass" if value >= threshold else "fail"
    side = "at least" if verdict == "pass" else "under"
    return Criterion(name, verdict, value, threshold,
                     f"the nearest segment ({nearest}) is {_number(value, threshold)} x the members' spread away, "
                     f"{side} the {threshold:g} x minimum")


def stable(f: Mapping[str, Any], flow: MembershipFlow | None, config: ScorecardConfig) -> Criterion:
    """(entered + left) / size per week <= ``max_weekly_churn``; "not measured yet" under a day."""
    name, threshold, size = "stable", config.max_weekly_churn, f.get("size") or 0
    if flow is None or flow.span_days < _MIN_SPAN_DAYS:
        return Criterion(name, "unknown", None, threshold, "not measured yet (under a day of membership changes)")
    if not size:
        return Criterion(name, "unknown", None, threshold, "the segment has no members to compare changes with")
    value = (flow.entered + flow.left) / size * 7.0 / flow.span_days
    verdict: Verdict = "pass" if value <= threshold else "fail"
    side = "within" if verdict == "pass" else "over"
    return Criterion(name, verdict, value, threshold,
                     f"{_percent(value, threshold)} of members changing a week, {side} the "
                     f"{_percent(threshold)} maximum")


def profitable(f: Mapping[str, Any], config: ScorecardConfig, currency: str = "USD") -> Criterion:
    """clv_mean / (cac_mean + cost_to_serve_mean x service_unit_cost) >= ``min_profit_ratio``,
    each mean over the members where it is known. Judged on the known part of the cost, with a
    note, when CAC is known for no member or the cost to serve is not priced."""
    name, threshold = "profitable", config.min_profit_ratio
    clv, cac, load = f.get("clv_mean"), f.get("cac_mean"), f.get("cost_to_serve_mean")
    service = load * config.service_unit_cost if load is not None and config.service_unit_cost is not None else None
    if clv is None:
        return Criterion(name, "unknown", None, threshold, "no member has a CLV yet")
    size, clv_known = f.get("size") or 0, f.get("clv_known")
    if clv_known is not None and 2 * clv_known < size:
        # a mean over a few buyers held in a segment of prospects would stand for all of them
        return Criterion(name, "unknown", None, threshold, f"CLV known for {clv_known} of {size} members (those who "
                         "bought): too few for the segment's mean CLV")
    if cac is None and service is None:
        return Criterion(name, "unknown", None, threshold, "nothing to weigh CLV against: no acquisition cost "
                         "known and the cost to serve is not priced (scorecard.service_unit_cost)")
    note = ("judged on cost to serve alone: no member has a known acquisition cost" if cac is None else
            "judged on acquisition cost alone: the cost to serve is not priced" if service is None else None)
    cost = (cac or 0.0) + (service or 0.0)
    value = clv / cost if cost > 0 else (math.inf if clv > 0 else 0.0)
    verdict: Verdict = "pass" if value >= threshold else "fail"
    what = "acquire and serve" if note is None else "serve" if cac is None else "acquire"
    ratio = f"{_number(value, threshold)} x" if math.isfinite(value) else "more than any multiple of"
    return Criterion(name, verdict, value, threshold,
                     f"mean CLV {_money(clv, currency)} is {ratio} the cost to {what} ({_money(cost, currency)}), "
                     f"{'at least' if verdict == 'pass' else 'under'} the {threshold:g} x minimum", note)


def separation(a: Mapping[str, Any], b: Mapping[str, Any]) -> float:
    """Fisher-like separation of two segments from their ``features`` figures (``mean``: the member
    mean vector, ``within_variance``: the mean squared distance of a member to it): the distance
    between the means over the root mean of the two within-segment variances. Infinite for distinct
    means with no spread, 0 for equal means.

    >>> separation({"mean": [0.0, 0.0], "within_variance": 1.0}, {"mean": [3.0, 4.0], "within_variance": 3.0})
    3.5355...
    """
    distance = math.dist(a["mean"], b["mean"])
    spread = math.sqrt((a["within_variance"] + b["within_variance"]) / 2.0)
    if spread == 0.0:
        return math.inf if distance > 0 else 0.0
    return distance / spread


# ---- helpers -------------------------------------------------------------------------------------

def _spread_known(f: Mapping[str, Any]) -> bool:
    features = f.get("features")
    return features is not None and features.get("n", 0) >= _MIN_SPREAD_MEMBERS


def _at_least(name: str, value: float | None, threshold: float, what: str, missing: str) -> Criterion:
    """A share judged against a minimum share."""
    if value is None:
        return Criterion(name, "unknown", None, threshold, missing)
    verdict: Verdict = "pass" if value >= threshold else "fail"
    side = "at least" if verdict == "pass" else "under"
    return Criterion(name, verdict, value, threshold,
                     f"{_percent(value, threshold)} {what}, {side} the {_percent(threshold)} minimum")


def _decimals(value: float, threshold: float | None, decimals: int) -> int:
    """Enough decimals (up to 4 more) that the shown value is not the shown threshold unless they are
    equal: 1.99 % against a 2 % minimum must not read "2.0 %, under the 2 % minimum"."""
    if threshold is None or value == threshold:
        return decimals
    for extra in range(5):
        if round(value, decimals + extra) != round(threshold, decimals + extra):
            return decimals + extra
    return decimals + 4


def _percent(share: float, threshold: float | None = None) -> str:
    """A share as a percentage: one decimal (more near the threshold), thresholds without trailing zeros.

    >>> _percent(0.031, 0.05), _percent(0.05), _percent(0.0125), _percent(0.0199, 0.02)
    ('3.1 %', '5 %', '1.25 %', '1.99 %')
    """
    if threshold is None:
        return f"{share * 100:.4g} %"
    return f"{share * 100:.{_decimals(share * 100, threshold * 100, 1)}f} %"


def _number(value: float, threshold: float) -> str:
    return f"{value:.{_decimals(value, threshold, 2)}f}"


def _money(value: float, currency: str) -> str:
    return f"{value:,.0f} {currency}" if abs(value) >= 100 else f"{value:,.2f} {currency}"
