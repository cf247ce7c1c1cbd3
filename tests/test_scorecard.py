"""The viability scorecard (models/scorecard.py): each criterion's verdict at its threshold's edge,
the unknowns, the separation against a direct computation, and the failing summary."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from models.config import EngineConfig, ScorecardConfig
from models.kpis import SegmentKPIs
from models.scorecard import CRITERIA, MembershipFlow, score, separation

CONFIG = ScorecardConfig(service_unit_cost=100.0)


def segment(sid: str = "s", kind: str = "rule", **figures: Any) -> dict[str, Any]:
    """A segment's figures that pass every criterion but the ones overridden."""
    base = {"kind": kind, "segment_id": sid, "size": 100, "share": 0.5, "measurable_share": 1.0,
            "defining_fields": ["clv"], "reachable_share": 1.0, "consent_known_share": 1.0, "clv_mean": 1000.0,
            "cac_mean": 100.0, "cost_to_serve_mean": 1.0, "features": None}
    return {**base, **figures}


def verdict(criterion: str, config: ScorecardConfig = CONFIG, flows: Any = None, **figures: Any) -> Any:
    return score([segment(**figures)], config, flows).segments[0].criteria[criterion]


@pytest.mark.parametrize(("criterion", "field", "edge", "below"), [
    ("substantial", "share", 0.02, 0.0199),
    ("measurable", "measurable_share", 0.8, 0.7999),
    ("accessible", "reachable_share", 0.5, 0.4999),
])
def test_a_share_at_its_minimum_passes_and_just_under_fails(criterion: str, field: str, edge: float,
                                                            below: float) -> None:
    at, under = verdict(criterion, **{field: edge}), verdict(criterion, **{field: below})
    assert (at.verdict, at.value, at.threshold) == ("pass", edge, edge)
    assert (under.verdict, under.value) == ("fail", below)
    assert "under the" in under.reason and "at least the" in at.reason


def test_reasons_read_as_a_marketer_reads_them() -> None:
    config = ScorecardConfig(min_share=0.05)
    assert verdict("substantial", config, share=0.031).reason == "3.1 % of customers, under the 5 % minimum"
    # the shown value never rounds onto the threshold it fails
    assert verdict("substantial", share=0.01996).reason == "1.996 % of customers, under the 2 % minimum"
    assert verdict("measurable", measurable_share=0.5, defining_fields=["a", "b", "c", "d", "e"]).reason == (
        "50.0 % of members with every defining field known (a, b, c and 2 more), under the 80 % minimum")


def test_thresholds_are_configurable() -> None:
    assert verdict("substantial", ScorecardConfig(min_share=0.6), share=0.5).verdict == "fail"
    assert verdict("substantial", ScorecardConfig(min_share=0.4), share=0.5).verdict == "pass"
    assert EngineConfig().scorecard == ScorecardConfig()
    assert EngineConfig.model_validate({"scorecard": {"min_share": 0.1}}).scorecard.min_share == 0.1
    assert all(f.description for f in ScorecardConfig.model_fields.values())


def test_unknown_inputs_give_unknown_verdicts() -> None:
    assert verdict("measurable", measurable_share=None).verdict == "unknown"
    assert verdict("substantial", share=None).verdict == "unknown"
    no_consent = verdict("accessible", reachable_share=0.0, consent_known_share=0.0)
    assert no_consent.verdict == "unknown" and "consent" in no_consent.reason
    assert verdict("accessible", reachable_share=0.0, consent_known_share=0.1).verdict == "fail"


def features(mean: list[float], within: float, n: int = 50) -> dict[str, Any]:
    return {"n": n, "mean": mean, "within_variance": within}


@pytest.mark.parametrize(("x", "expected"), [(1.0, "pass"), (0.999, "fail")])
def test_differentiable_at_the_edge_against_the_nearest_segment_of_the_same_kind(x: float, expected: str) -> None:
    figures = [segment("a", features=features([0.0, 0.0], 1.0)),
               segment("b", features=features([x, 0.0], 1.0)),
               segment("far", features=features([10.0, 0.0], 1.0)),
               segment("c1", kind="cluster", features=features([0.0, 0.0], 1.0))]  # another kind: not compared
    a = score(figures, CONFIG).get("rule", "a").criteria["differentiable"]
    assert (a.verdict, a.value) == (expected, pytest.approx(x))
    assert "(b)" in a.reason
    alone = score(figures, CONFIG).get("cluster", "c1").criteria["differentiable"]
    assert alone.verdict == "unknown" and "no other cluster segment" in alone.reason


def test_differentiable_needs_a_spread() -> None:
    figures = [segment("a", features=features([0.0], 1.0, n=1)), segment("b", features=features([5.0], 1.0))]
    assert score(figures, CONFIG).get("rule", "a").criteria["differentiable"].verdict == "unknown"
    assert score(figures, CONFIG).get("rule", "b").criteria["differentiable"].verdict == "unknown"  # nothing to compare
    assert separation(features([0.0], 0.0), features([1.0], 0.0)) == math.inf
    assert separation(features([1.0], 0.0), features([1.0], 0.0)) == 0.0


def test_separation_from_the_kpis_equals_a_direct_computation_on_the_members() -> None:
    rng = np.random.default_rng(3)
    a = rng.normal([0.0, 0.0, 0.0], [1.0, 2.0, 0.5], size=(700, 3))
    b = rng.normal([1.5, -1.0, 0.5], [0.5, 1.0, 1.0], size=(1300, 3))
    kpis = SegmentKPIs(30)
    for kind, sid, rows in (("cluster", "c1", a), ("cluster", "c2", b)):
        for row in rows:
            kpis.add([(kind, sid)], {}, row)
    spread = lambda x: ((x - x.mean(axis=0)) ** 2).sum(axis=1).mean()  # noqa: E731
    want = np.linalg.norm(a.mean(axis=0) - b.mean(axis=0)) / math.sqrt((spread(a) + spread(b)) / 2)
    card = score(kpis.figures(), ScorecardConfig())
    assert card.get("cluster", "c1").criteria["differentiable"].value == pytest.approx(want, rel=1e-9)
    assert card.get("cluster", "c2").criteria["differentiable"].value == pytest.approx(want, rel=1e-9)


def test_stable_is_normalised_to_a_week() -> None:
    key = ("rule", "s")
    two_weeks = verdict("stable", flows={key: MembershipFlow(entered=25, left=15, span_days=14.0)})
    assert (two_weeks.verdict, two_weeks.value) == ("pass", pytest.approx(0.2))  # 40 / 100 over two weeks
    one_week = verdict("stable", flows={key: MembershipFlow(entered=25, left=16, span_days=7.0)})
    assert (one_week.verdict, one_week.value) == ("fail", pytest.approx(0.41))
    assert "over the 20 % maximum" in one_week.reason
    half_day = verdict("stable", flows={key: MembershipFlow(entered=1, left=0, span_days=0.5)})
    assert half_day.verdict == "unknown" and "not measured yet" in half_day.reason
    assert verdict("stable").verdict == "unknown"  # no flow at all
    assert verdict("stable", flows={key: MembershipFlow(1, 0, 1.0)}, size=0).verdict == "unknown"


def test_profitable_at_the_edge() -> None:
    at = verdict("profitable", clv_mean=300.0, cac_mean=200.0, cost_to_serve_mean=1.0)  # 300 / (200 + 1 x 100)
    assert (at.verdict, at.value, at.note) == ("pass", 1.0, None)
    under = verdict("profitable", clv_mean=299.0, cac_mean=200.0, cost_to_serve_mean=1.0)
    assert under.verdict == "fail"
    assert under.reason == "mean CLV 299 USD is 0.997 x the cost to acquire and serve (300 USD), under the 1 x minimum"


def test_profitable_without_cac_is_judged_on_cost_to_serve_and_marked() -> None:
    v = verdict("profitable", clv_mean=300.0, cac_mean=None, cost_to_serve_mean=2.0)
    assert (v.verdict, v.value) == ("pass", 1.5) and "cost to serve alone" in v.note
    unpriced = verdict("profitable", ScorecardConfig(), clv_mean=300.0, cac_mean=400.0)
    assert (unpriced.verdict, unpriced.value) == ("fail", 0.75) and "acquisition cost alone" in unpriced.note
    nothing = verdict("profitable", ScorecardConfig(), clv_mean=300.0, cac_mean=None)
    assert nothing.verdict == "unknown" and nothing.value is None
    assert verdict("profitable", clv_mean=None).verdict == "unknown"
    free = verdict("profitable", clv_mean=10.0, cac_mean=0.0, cost_to_serve_mean=0.0)
    assert (free.verdict, free.value, free.to_dict()["value"]) == ("pass", math.inf, None)


def test_failing_names_each_segment_and_its_failed_criteria_in_order() -> None:
    figures = [segment("ok"), segment("tiny", share=0.001),
               segment("bad", share=0.001, reachable_share=0.1, clv_mean=1.0, measurable_share=None)]
    card = score(figures, CONFIG)
    assert card.failing() == {("rule", "tiny"): ["substantial"],
                              ("rule", "bad"): ["substantial", "accessible", "profitable"]}
    doc = card.to_dict()
    assert [s["segment_id"] for s in doc["segments"]] == ["ok", "tiny", "bad"]
    assert list(doc["segments"][2]["criteria"]) == list(CRITERIA)
    assert doc["segments"][2]["criteria"]["measurable"]["verdict"] == "unknown"
    assert doc["thresholds"]["min_share"] == 0.02


def test_profitability_is_not_judged_on_a_few_buyers_of_a_segment_of_prospects() -> None:
    """214 members, 5 of whom bought (a CLV): their mean CLV does not stand for the segment."""
    config = ScorecardConfig(service_unit_cost=1.0)
    few = score([segment(size=214, clv_known=5, clv_mean=1388.0, cac_mean=20.0, cost_to_serve_mean=1.0)], config)
    verdict = few.segments[0].criteria["profitable"]
    assert verdict.verdict == "unknown" and "5 of 214" in verdict.reason
    most = score([segment(size=214, clv_known=200, clv_mean=1388.0, cac_mean=20.0, cost_to_serve_mean=1.0)], config)
    assert most.segments[0].criteria["profitable"].verdict == "pass"
