"""Customer value state: BTYD statistics, idempotency and order independence (hypothesis)."""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import ValueConfig
from models.engine import ValueEngine
from models.profile import build_profile, nps_category
from schemas.segment_change import SegmentChange
from models.state import CustomerState, EngineRejection, source_tag
from models.valuation import pinned_valuation
from schemas.events import EngagementEvent, FeedbackEvent, PurchaseEvent

def make(cls, **fields):
    """Build an event as the worker does: from JSON (strict JSON mode accepts enum strings)."""
    return cls.model_validate_json(orjson.dumps(fields))


EPOCH = datetime(2025, 1, 1, tzinfo=timezone.utc)
CFG = ValueConfig()


def purchase(i: int, minutes: int, amount: float, currency: str = "USD") -> PurchaseEvent:
    return make(PurchaseEvent, event_id=f"p{i}", customer_id="c", timestamp=EPOCH + timedelta(minutes=minutes),
                         amount=amount, currency=currency)


events_strategy = st.lists(
    st.one_of(
        st.builds(lambda m, a: ("purchase", m, a), st.integers(0, 60 * 24 * 400),
                  st.floats(-50, 500, allow_nan=False).map(lambda x: round(x, 2))),
        st.builds(lambda m, a: ("engagement", m, a), st.integers(0, 60 * 24 * 400),
                  st.sampled_from(["page_view", "add_to_cart", "referral", "social_share"])),
        st.builds(lambda m, k, s: ("feedback", m, (k, s)), st.integers(0, 60 * 24 * 400),
                  st.sampled_from(["nps", "csat", "support_ticket", "complaint"]), st.integers(1, 5)),
    ),
    min_size=1, max_size=40,
)


def to_events(specs: list) -> list:
    out = []
    for i, (kind, minutes, payload) in enumerate(specs):
        ts = EPOCH + timedelta(minutes=minutes)
        common = {"event_id": f"e{i}", "customer_id": "c", "timestamp": ts}
        if kind == "purchase":
            out.append(make(PurchaseEvent, amount=payload, channel="web", **common))
        elif kind == "engagement":
            out.append(make(EngagementEvent, action=payload, channel="email", **common))
        else:
            k, s = payload
            out.append(make(FeedbackEvent, kind=k, score=s if k in ("nps", "csat") else None, **common))
    return out


def apply_all(events: list) -> CustomerState:
    state = CustomerState("c")
    for e in events:
        state.apply(e, CFG)
    return state


def assert_same_values(a: CustomerState, b: CustomerState) -> None:
    va, vb = a.value_fields(), b.value_fields()
    assert va.keys() == vb.keys()
    for key in va:
        if key in ("actions", "channels"):
            assert va[key].keys() == vb[key].keys()
            for k in va[key]:
                assert va[key][k] == pytest.approx(vb[key][k], rel=1e-9)
        elif isinstance(va[key], list) and va[key] and isinstance(va[key][0], float):
            assert va[key] == pytest.approx(vb[key], rel=1e-9)  # decayed sums: float rounding only
        else:
            assert va[key] == vb[key], key


@settings(max_examples=150, deadline=None)
@given(events_strategy, st.randoms(use_true_random=False))
def test_same_events_in_any_order_give_the_same_state(specs: list, rnd: random.Random) -> None:
    events = to_events(specs)
    shuffled = events[:]
    rnd.shuffle(shuffled)
    assert_same_values(apply_all(events), apply_all(shuffled))


@settings(max_examples=150, deadline=None)
@given(events_strategy, st.randoms(use_true_random=False))
def test_redelivered_events_never_count_twice(specs: list, rnd: random.Random) -> None:
    events = to_events(specs)[: CFG.dedupe_keep_last]
    # Redelivery: a suffix of what was applied comes again (what a consumer restart does).
    cut = rnd.randrange(len(events))
    redelivered = events + events[cut:]
    state = CustomerState("c")
    applied = [state.apply(e, CFG) for e in redelivered]
    assert applied == [True] * len(events) + [False] * (len(events) - cut)
    assert_same_values(state, apply_all(events))


def partitioned(events: list, partitions: int = 1) -> list[tuple[object, tuple[int, int, int]]]:
    """Each event with its position: one topic per event type, spread round-robin over
    ``partitions`` (producers with different partitioners), offsets in arrival order per partition."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for i, e in enumerate(events):
        source = (e.type, i % partitions)
        offsets[source] = offsets.get(source, -1) + 1
        out.append((e, (source_tag(f"t.{e.type}"), source[1], offsets[source])))
    return out


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["purchase", "engagement", "feedback"]), min_size=1, max_size=200),
       st.integers(1, 3), st.randoms(use_true_random=False))
def test_redelivery_from_any_offsets_never_counts_twice_however_long(types: list, partitions: int,
                                                                     rnd: random.Random) -> None:
    """Far more than the event-id window (the events here are minutes apart, all in it, so the
    window is switched off): after a crash every topic-partition resumes from its own committed
    offset, which can be hundreds of the customer's events back, on every partition a customer's
    events of one type landed on."""
    specs = [(t, i, 10.0 if t == "purchase" else ("page_view" if t == "engagement" else ("complaint", 1)))
             for i, t in enumerate(types)]
    positioned = partitioned(to_events(specs), partitions)
    config = CFG.model_copy(update={"dedupe_window_days": 0.0, "dedupe_keep_last": 1})
    state = CustomerState("c")
    for e, pos in positioned:
        assert state.apply(e, config, pos)
    # Each topic-partition resumes from some earlier offset (its last commit), interleaved at random.
    sources = {pos[:2] for _, pos in positioned}
    resumed = {src: rnd.randint(0, sum(1 for _, p in positioned if p[:2] == src)) for src in sources}
    again = [(e, pos) for e, pos in positioned if pos[2] >= resumed[pos[:2]]]
    rnd.shuffle(again)
    again.sort(key=lambda ep: ep[1])  # in order within each topic-partition, as Kafka delivers
    assert not any(state.apply(e, config, pos) for e, pos in again)
    assert_same_values(state, apply_all([e for e, _ in positioned]))
    restored = CustomerState.from_bytes(state.to_bytes())
    assert restored.positions == state.positions
    assert not any(restored.apply(e, config, pos) for e, pos in again)


def test_a_position_from_another_topic_or_partition_is_not_a_redelivery() -> None:
    state = CustomerState("c")
    assert state.apply(purchase(1, 0, 5.0), CFG, (source_tag("old.purchases"), 0, 100))
    assert not state.apply(purchase(2, 1, 5.0), CFG, (source_tag("old.purchases"), 0, 99))
    assert state.apply(purchase(3, 2, 5.0), CFG, (source_tag("new.purchases"), 0, 0))
    # Another producer's partitioner put the customer's purchases on partition 3 too: its own offsets.
    assert state.apply(purchase(4, 3, 5.0), CFG, (source_tag("old.purchases"), 3, 7))
    assert not state.apply(purchase(4, 3, 5.0), CFG, (source_tag("old.purchases"), 3, 7))
    assert state.purchase_count == 3


def engagement(i: int, at: datetime) -> EngagementEvent:
    return make(EngagementEvent, event_id=f"g{i}", customer_id="c", timestamp=at, action="page_view")


def test_a_repeated_event_id_within_the_window_is_applied_once_whatever_came_between() -> None:
    """A producer resends an event after 500 more of the same type (all within 7 days): once."""
    state = CustomerState("c")
    first = engagement(0, EPOCH)
    assert state.apply(first, CFG)
    for i in range(1, 501):
        assert state.apply(engagement(i, EPOCH + timedelta(minutes=10 * i)), CFG)  # 3.5 days
    assert not state.apply(first, CFG)
    assert not CustomerState.from_bytes(state.to_bytes()).apply(first, CFG)
    assert state.engagement_count == 501


def test_past_the_window_only_the_last_ids_of_a_type_are_remembered() -> None:
    state = CustomerState("c")
    first = engagement(0, EPOCH)
    state.apply(first, CFG)
    for i in range(1, 21):  # 20 more, the last of them 10 days after the first
        state.apply(engagement(i, EPOCH + timedelta(hours=12 * i)), CFG)
    assert state.apply(first, CFG)  # documented: past 7 days and 16 events, an id is forgotten
    recent = engagement(15, EPOCH + timedelta(hours=12 * 15))  # 2.5 days before the latest
    assert not state.apply(recent, CFG)
    sparse = CustomerState("c")  # months between events: the last 16 stay, however old
    for i in range(16):
        sparse.apply(engagement(i, EPOCH + timedelta(days=90 * i)), CFG)
    assert not sparse.apply(engagement(0, EPOCH), CFG)


def test_a_late_event_is_remembered_from_when_it_arrived_not_from_its_timestamp() -> None:
    state = CustomerState("c")
    state.apply(engagement(0, EPOCH + timedelta(days=30)), CFG)
    late = engagement(1, EPOCH)  # 30 days older than the customer's latest event
    assert state.apply(late, CFG)
    for i in range(2, 40):  # 38 more within 6 days of the customer's clock
        state.apply(engagement(i, EPOCH + timedelta(days=30, hours=3 * i)), CFG)
    assert not state.apply(late, CFG)


def test_the_ids_remembered_per_customer_and_type_are_capped() -> None:
    config = CFG.model_copy(update={"dedupe_max_ids": 100})
    state = CustomerState("c")
    for i in range(250):
        state.apply(engagement(i, EPOCH + timedelta(minutes=i)), config)
    assert len(state.seen["engagement"]) == 100
    assert len(state.to_bytes()) < 100 * 12 + 400  # 12 bytes an id
    assert state.apply(engagement(0, EPOCH), config)  # the oldest went first
    assert not state.apply(engagement(249, EPOCH + timedelta(minutes=249)), config)


def test_identity_is_customer_type_and_event_id() -> None:
    """The same event_id on a purchase and an engagement are two events (cases/09: carla)."""
    state = CustomerState("c")
    assert state.apply(make(PurchaseEvent, event_id="x", customer_id="c", timestamp=EPOCH, amount=5.0), CFG)
    assert state.apply(make(EngagementEvent, event_id="x", customer_id="c", timestamp=EPOCH, action="page_view"), CFG)


@settings(max_examples=100, deadline=None)
@given(events_strategy)
def test_state_round_trips_through_bytes(specs: list) -> None:
    state = apply_all(to_events(specs))
    assert CustomerState.from_bytes(state.to_bytes()) == state


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60 * 24 * 300), st.floats(0, 300, allow_nan=False).map(lambda x: round(x, 2))),
                min_size=1, max_size=30))
def test_btyd_statistics_follow_the_lifetimes_definitions(purchases: list) -> None:
    """frequency/recency/monetary as lifetimes.utils.summary_data_from_transaction_data(freq='D')."""
    state = apply_all([purchase(i, m, a) for i, (m, a) in enumerate(purchases)])
    per_day: dict[int, float] = {}
    for minutes, amount in purchases:
        per_day[minutes // (60 * 24)] = per_day.get(minutes // (60 * 24), 0.0) + amount
    days = sorted(per_day)
    assert state.frequency == len(days) - 1
    assert state.recency_days == days[-1] - days[0]
    repeat = [per_day[d] for d in days[1:]]
    assert state.monetary_value == pytest.approx(sum(repeat) / len(repeat) if repeat else 0.0, abs=1e-6)
    assert state.purchase_count == len(purchases)
    assert state.gross_spend == pytest.approx(sum(a for _, a in purchases), abs=1e-6)


def test_refunds_reduce_net_spend_but_are_not_purchases() -> None:
    state = apply_all([purchase(1, 0, 100.0), purchase(2, 60 * 24 * 3, 40.0), purchase(3, 60 * 24 * 5, -25.0)])
    assert (state.purchase_count, state.refund_count) == (2, 1)
    assert state.total_spend == pytest.approx(115.0) and state.refund_total == pytest.approx(25.0)
    assert state.frequency == 1 and state.monetary_value == pytest.approx(40.0)


def test_unknown_currency_is_rejected_and_a_configured_one_converted() -> None:
    with pytest.raises(EngineRejection) as info:
        CustomerState("c").apply(purchase(1, 0, 10.0, currency="EUR"), CFG)
    assert info.value.field == "currency"
    state = CustomerState("c")
    state.apply(purchase(1, 0, 10.0, currency="EUR"), ValueConfig(currency_rates={"EUR": 1.5}))
    assert state.gross_spend == pytest.approx(15.0)


def test_feedback_and_engagement_aggregates() -> None:
    events = [
        make(FeedbackEvent, event_id="f1", customer_id="c", timestamp=EPOCH, kind="nps", score=3),
        make(FeedbackEvent, event_id="f2", customer_id="c", timestamp=EPOCH + timedelta(days=1), kind="nps", score=10),
        make(FeedbackEvent, event_id="f3", customer_id="c", timestamp=EPOCH, kind="csat", score=4),
        make(FeedbackEvent, event_id="f4", customer_id="c", timestamp=EPOCH, kind="csat", score=2),
        make(FeedbackEvent, event_id="f5", customer_id="c", timestamp=EPOCH, kind="complaint"),
        make(FeedbackEvent, event_id="f6", customer_id="c", timestamp=EPOCH, kind="support_ticket"),
        make(EngagementEvent, event_id="g1", customer_id="c", timestamp=EPOCH, action="referral", channel="social"),
    ]
    state = apply_all(list(reversed(events)))
    as_of = (EPOCH + timedelta(days=1)).timestamp()
    profile = build_profile(state, as_of, pinned_valuation(CFG), CFG)
    assert profile["nps"] == 10 and profile["nps_category"] == "promoter"
    assert 3 < profile["nps_decayed"] < 10
    assert profile["csat_avg"] == 3.0
    assert (profile["support_tickets"], profile["complaints"]) == (1, 1)
    # a complaint weighs complaint_weight tickets; one day of a 90-day half-life decay
    assert profile["cost_to_serve"] == pytest.approx((1 + CFG.complaint_weight) * 2 ** (-1 / 90), abs=1e-4)
    assert profile["influence_count"] == 1
    assert profile["engagement_by_channel"]["social"] == pytest.approx(2 ** (-1 / 14), rel=1e-4)


@pytest.mark.parametrize("score,category", [(0, "detractor"), (6, "detractor"), (7, "passive"),
                                            (8, "passive"), (9, "promoter"), (10, "promoter"), (None, None)])
def test_nps_category(score, category) -> None:
    assert nps_category(score) == category


def test_profile_drifts_with_time_without_new_events() -> None:
    from models.config import BetaGeoPinned

    cfg = ValueConfig(beta_geo=BetaGeoPinned(r=0.243, alpha=4.414 * 7, a=0.793, b=2.426))
    state = apply_all([purchase(i, 60 * 24 * 7 * i, 20.0) for i in range(5)])
    valuation = pinned_valuation(cfg)
    last = state.last_purchase_ts
    soon = build_profile(state, last + 86400, valuation, cfg)
    later = build_profile(state, last + 200 * 86400, valuation, cfg)
    assert later["T"] == soon["T"] + 199
    assert later["p_alive"] < soon["p_alive"]
    assert later["expected_purchases"] < soon["expected_purchases"]
    assert later["days_since_last_purchase"] > soon["days_since_last_purchase"]


def test_engine_rejects_events_from_the_future() -> None:
    engine = ValueEngine(CFG)
    event = purchase(1, 0, 5.0)
    with pytest.raises(EngineRejection) as info:
        engine.apply(engine.new_state("c"), event, now=event.timestamp.timestamp() - 3600)
    assert info.value.field == "timestamp"


def test_serialised_state_is_compact() -> None:
    rnd = random.Random(3)
    events = []
    for i in range(60):
        m = rnd.randrange(0, 60 * 24 * 365)
        events.append(purchase(i, m, round(rnd.uniform(5, 200), 2)) if i % 3 == 0 else
                      make(EngagementEvent, event_id=f"g{i}", customer_id="c", timestamp=EPOCH + timedelta(minutes=m),
                                      action=rnd.choice(["page_view", "email_open", "add_to_cart"]), channel="web"))
    events.sort(key=lambda e: e.timestamp)  # as they arrive live
    size = len(apply_all(events).to_bytes())
    # 60 events over a year: 16 ids per type remembered (12 B each); JSON took about 1,150 B
    assert size < 850, size


def test_a_table_written_in_the_json_format_still_loads() -> None:
    """Format 1 (JSON, base64 fingerprints) was the table's format before msgpack: existing
    changelogs must still restore."""
    import base64

    state = apply_all(to_events([("purchase", 5, 20.0), ("engagement", 9, "referral"), ("feedback", 12, ("nps", 4))]))
    doc = state._to_doc()
    doc["v"] = 1
    doc["seen"] = {etype: base64.b64encode(ids.fingerprints.tobytes()).decode() for etype, ids in state.seen.items()}
    doc["pos"] = {"purchase": [source_tag("t.purchase"), 41]}
    legacy = orjson.dumps(doc)
    _assert_loads_as_before(legacy, state)


def test_a_table_written_in_format_2_still_loads() -> None:
    """Format 2 (msgpack, one position per topic, fingerprints without times)."""
    import msgpack

    state = apply_all(to_events([("purchase", 5, 20.0), ("engagement", 9, "referral"), ("feedback", 12, ("nps", 4))]))
    fields = msgpack.unpackb(state.to_bytes())
    fields[0] = 2
    fields[8] = {etype: ids.fingerprints.tobytes() for etype, ids in state.seen.items()}
    fields[9] = {"purchase": [source_tag("t.purchase"), 41]}
    _assert_loads_as_before(msgpack.packb(fields), state)


def test_a_state_written_before_profiles_and_recent_spend_loads_without_them() -> None:
    import msgpack

    state = apply_all(to_events([("purchase", 5, 20.0), ("feedback", 12, ("nps", 4))]))
    fields = msgpack.unpackb(state.to_bytes())
    assert len(fields) == 17 and fields[15] and fields[16] == []
    loaded = CustomerState.from_bytes(msgpack.packb(fields[:15]))
    assert loaded.recent_spend == {} and loaded.traits == {}
    loaded.recent_spend = state.recent_spend
    assert loaded == state


def _assert_loads_as_before(legacy: bytes, state: CustomerState) -> None:
    loaded = CustomerState.from_bytes(legacy, partition=2)
    # Older formats kept no spend per day: recent_spend fills in as purchases come (docs/contracts.md).
    assert loaded.recent_spend == {}
    assert loaded.value_fields() == {k: v for k, v in state.value_fields().items() if k != "recent_spend"}
    # The ids are remembered (as applied at the latest event), the topic's position is the partition's.
    for etype, ids in state.seen.items():
        assert loaded.seen[etype].fingerprints == ids.fingerprints
    assert loaded.positions == {(source_tag("t.purchase"), 2): 41}
    assert not loaded.apply(to_events([("purchase", 5, 20.0)])[0], CFG)
    assert not loaded.apply(purchase(99, 1, 5.0), CFG, (source_tag("t.purchase"), 2, 41))
    assert loaded.apply(purchase(99, 1, 5.0), CFG, (source_tag("t.purchase"), 2, 42))
    assert CustomerState.from_bytes(legacy).positions == {}  # no partition given: no position to trust
    assert CustomerState.from_bytes(loaded.to_bytes()) == loaded


def test_change_ids_are_deterministic_per_life_and_differ_after_an_erasure() -> None:
    from models.pipeline import next_change_id

    first_life, replayed = CustomerState("c"), CustomerState("c")
    for state in (first_life, replayed):
        state.apply(purchase(1, 0, 5.0), CFG)
    # A replay after a crash re-emits the same ids: consumers deduplicate them.
    assert next_change_id(first_life) == next_change_id(replayed)
    # Erased, then back with new events: the sequence restarts, the ids must not repeat.
    second_life = CustomerState("c")
    second_life.apply(purchase(7, 50, 9.0), CFG)
    assert second_life.incarnation != first_life.incarnation
    assert next_change_id(second_life) != SegmentChange.make_id("c", 1, first_life.incarnation)
    assert CustomerState.from_bytes(second_life.to_bytes()).incarnation == second_life.incarnation


def test_the_profile_names_rfm_and_btyd_recency_exactly() -> None:
    """RFM recency (days since the last purchase, what /segments figures call recency) and BTYD
    recency (days from the first to the last purchase day) differ; each has an exact name, and
    the profile's ``recency`` stays the BTYD one, as before (compatibility)."""
    state = apply_all([purchase(0, 0, 20.0), purchase(1, 60 * 24 * 10, 20.0)])  # purchase days 0 and 10
    profile = build_profile(state, state.last_purchase_ts + 30 * 86400, pinned_valuation(CFG), CFG)
    assert profile["days_since_last_purchase"] == 30
    assert profile["days_first_to_last_purchase"] == profile["recency"] == 10
    never = build_profile(CustomerState("n"), EPOCH.timestamp(), pinned_valuation(CFG), CFG)
    assert never["days_first_to_last_purchase"] is None and never["days_since_last_purchase"] is None
