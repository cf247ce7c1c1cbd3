"""Unit tests: hysteresis, identity matching and lifecycle, snapshots, the customer sample."""

from __future__ import annotations

import numpy as np

from models.clustering import CustomerSample
from models.membership import decide
from models.segments import SegmentRegistry
from models.snapshot import ModelSnapshot
from models.state import CustomerState

DAY = 86400.0


def test_hysteresis_needs_the_margin_and_the_dwell_time() -> None:
    s = CustomerState("c")
    assert decide(s, {"a": 1.0, "b": 2.0}, 0.0, 0.2, 7 * DAY).reason == "first_assignment"
    assert decide(s, {"a": 1.0, "b": 0.9}, DAY, 0.2, 7 * DAY) is None          # closer, not by 20 %
    assert s.candidate is None
    assert decide(s, {"a": 1.0, "b": 0.9}, 30 * DAY, 0.2, 7 * DAY) is None     # ...however long
    assert decide(s, {"a": 1.0, "b": 0.7}, 31 * DAY, 0.2, 7 * DAY) is None     # 30 % closer: candidate
    assert (s.candidate, s.candidate_since) == ("b", 31 * DAY)
    assert decide(s, {"a": 1.0, "b": 0.7}, 37 * DAY, 0.2, 7 * DAY) is None     # not for 7 days yet
    assert decide(s, {"a": 1.0, "b": 0.95}, 37.5 * DAY, 0.2, 7 * DAY) is None  # the margin lapsed...
    assert s.candidate is None
    assert decide(s, {"a": 1.0, "b": 0.7}, 39 * DAY, 0.2, 7 * DAY) is None     # ...so the dwell starts again
    assert decide(s, {"a": 1.0, "b": 0.7}, 45 * DAY, 0.2, 7 * DAY) is None
    move = decide(s, {"a": 1.0, "b": 0.7}, 46 * DAY, 0.2, 7 * DAY)
    assert (move.previous, move.new, move.reason, move.flap) == ("a", "b", "better_fit", False)


def test_going_straight_back_needs_twice_the_margin() -> None:
    s = CustomerState("c")
    decide(s, {"a": 1.0, "b": 2.0}, 0.0, 0.2, 0.0)
    decide(s, {"a": 1.0, "b": 0.7}, DAY, 0.2, 0.0)                              # no dwell: margin alone
    assert s.cluster == "b"
    s_dwell = 7 * DAY
    assert decide(s, {"a": 0.7, "b": 1.0}, 2 * DAY, 0.2, s_dwell) is None       # 30 % < 2 x 20 %
    assert s.candidate is None
    assert decide(s, {"a": 0.5, "b": 1.0}, 2 * DAY, 0.2, s_dwell) is None       # 50 %: a candidate
    assert s.candidate == "a"
    move = decide(s, {"a": 0.5, "b": 1.0}, 9 * DAY, 0.2, s_dwell)
    assert move.new == "a" and move.reason == "better_fit"


def test_retired_segment_moves_the_customer() -> None:
    s = CustomerState("c")
    decide(s, {"a": 1.0, "b": 2.0}, 0.0, 0.2, 7 * DAY)
    assert decide(s, {"b": 2.0, "c": 3.0}, DAY, 0.2, 7 * DAY).reason == "segment_retired"


def test_registry_keeps_ids_records_birth_merge_and_retirement() -> None:
    reg = SegmentRegistry(match_threshold=1.0)
    first = reg.update(np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]]), 1, 0.0)
    assert first.ids == ["c1", "c2", "c3"]
    # c3 jumps far away (retired, c4 born); order shuffled for the others.
    second = reg.update(np.array([[5.1, 5.0], [0.0, 0.2], [-9.0, -9.0]]), 2, 1.0)
    assert second.ids == ["c2", "c1", "c4"]
    assert {(e.kind, e.segment_id) for e in second.lifecycle} == {("born", "c4"), ("retired", "c3")}
    # two segments collapse into one: one keeps its id, the other is merged into it
    third = reg.update(np.array([[2.6, 2.6], [-9.0, -9.0]]), 3, 2.0)
    kinds = {e.kind for e in third.lifecycle}
    assert "merged" in kinds or "retired" in kinds
    assert len(set(third.ids)) == 2


def test_going_back_within_the_return_window_needs_twice_the_margin() -> None:
    """A regular buyer's recency rises and falls: past the dwell, a return to the segment left is
    still held to twice the margin until the return window has passed."""
    s = CustomerState("c")
    decide(s, {"a": 1.0, "b": 2.0}, 0.0, 0.2, 7 * DAY, 90 * DAY)
    decide(s, {"a": 1.0, "b": 0.7}, DAY, 0.2, 7 * DAY, 90 * DAY)
    assert decide(s, {"a": 1.0, "b": 0.7}, 9 * DAY, 0.2, 7 * DAY, 90 * DAY).new == "b"
    # 30 days later "a" is 30 % closer again: enough for a move, not for a return.
    assert decide(s, {"a": 0.7, "b": 1.0}, 39 * DAY, 0.2, 7 * DAY, 90 * DAY) is None
    assert decide(s, {"a": 0.7, "b": 1.0}, 60 * DAY, 0.2, 7 * DAY, 90 * DAY) is None
    assert s.cluster == "b"
    # Clearly back (twice the margin), or a return after the window: the customer goes back.
    assert decide(s, {"a": 0.5, "b": 1.0}, 61 * DAY, 0.2, 7 * DAY, 90 * DAY) is None  # a candidate now
    assert decide(s, {"a": 0.5, "b": 1.0}, 69 * DAY, 0.2, 7 * DAY, 90 * DAY).new == "a"
    t = CustomerState("t")
    decide(t, {"a": 1.0, "b": 2.0}, 0.0, 0.2, 7 * DAY, 90 * DAY)
    decide(t, {"a": 1.0, "b": 0.7}, DAY, 0.2, 7 * DAY, 90 * DAY)
    decide(t, {"a": 1.0, "b": 0.7}, 9 * DAY, 0.2, 7 * DAY, 90 * DAY)
    decide(t, {"a": 0.7, "b": 1.0}, 100 * DAY, 0.2, 7 * DAY, 90 * DAY)
    assert decide(t, {"a": 0.7, "b": 1.0}, 108 * DAY, 0.2, 7 * DAY, 90 * DAY).new == "a"


def test_a_lineage_keeps_its_ids_except_for_a_centre_moved_onto_other_customers() -> None:
    """A re-seeded centre (an emptied segment's centre moved onto the worst-served customers) is
    not the old segment trained further: it gets a new id and the old one is retired."""
    reg = SegmentRegistry(match_threshold=1.0)
    first = reg.match(np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]]), 1, 0.0)
    reg.commit(first, np.array([[0.0, 0.0], [5.0, 5.0], [10.0, 0.0]]))
    far = np.array([[0.5, 0.0], [9.0, 9.0], [10.0, 0.5]])  # every row moved, row 1 far
    trained = reg.match(far, 2, 1.0, lineage=True)
    assert trained.ids == ["c1", "c2", "c3"] and trained.lifecycle == []
    reseeded = reg.match(far, 2, 1.0, lineage=True, reseeded=[1])
    assert reseeded.ids == ["c1", "c4", "c3"]
    assert [(e.kind, e.segment_id) for e in reseeded.lifecycle] == [("retired", "c2"), ("born", "c4")]
    assert set(reseeded.moved) == {"c1", "c3"}
    reg.commit(reseeded, far)
    assert reg.next_number == 5


def test_snapshot_round_trip_and_assignment_agree() -> None:
    rng = np.random.default_rng(0)
    snap = ModelSnapshot(version=3, created_at=1.0, algorithm="kmeans", features=("a", "b", "c"),
                         mean=rng.normal(size=3), std=rng.uniform(0.5, 2, 3), centroids=rng.normal(size=(4, 3)),
                         segment_ids=("c1", "c2", "c5", "c9"), labels=("w", "x", "y", "z"), descriptions=("",) * 4,
                         stats={"c1": {"size": 3}}, rule_thresholds={"clv:p80": 12.5}, definition_version="abc")
    back = ModelSnapshot.from_bytes(snap.to_bytes())
    points = rng.normal(size=(50, 3))
    assert [back.nearest(p)[0] for p in points] == [snap.segment_ids[i] for i in snap.assign_many(points)]
    assert back.rule_thresholds == {"clv:p80": 12.5} and back.stats["c1"]["size"] == 3
    assert len(snap.to_bytes()) < 2000


def test_customer_sample_is_bounded_and_weighs_customers_not_events() -> None:
    sample: CustomerSample[int] = CustomerSample(capacity=100)
    for event in range(20_000):
        customer = f"busy-{event % 5}" if event % 2 else f"c{event}"  # 5 customers send half the events
        sample.observe(customer, event)
    assert len(sample) == 100
    busy = sum(1 for c in sample.ids() if c.startswith("busy"))
    assert busy <= 2  # 5 of ~10,000 customers: they get no more room than anyone else
