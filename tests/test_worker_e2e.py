"""The worker end to end on the real broker: events in, profiles and segment changes out.

One worker processes a synthetic population (with malformed messages mixed in and one customer
who stops buying early) on an event-time clock, so the replayed two years of history play out in
seconds. The tests then check the worker's answers against ground truth computed with the pure
engine from the same events.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from models.config import EngineConfig, ValueConfig
from models.state import CustomerState
from models.synthetic import generate_population
from schemas.dead_letter import DeadLetter
from schemas.events import parse_event
from schemas.segment_change import SegmentChange
from streams.replay import Replay
from tests.kafka_helpers import WorkerProcess, consume, produce, run, wait_settled, wait_until

pytestmark = pytest.mark.kafka

CUSTOMERS = 150
LAPSER = "lapser-0001"
LAPSED_RULES = """
[[segment]]
id = "lapsed"
label = "Lapsed"
description = "No purchase for 30 days"
all = [{ field = "days_since_last_purchase", op = ">", value = 30 }]
"""


def worker_env(bootstrap: str, prefix: str, data_dir: Path, **extra: str) -> dict[str, str]:
    """A worker tuned for tests: event-time clock, small model, fast training and sweeps."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "SEGSTREAM_TOPICS__PREFIX": prefix,
        "SEGSTREAM_TOPICS__PARTITIONS": "4",
        "SEGSTREAM_WORKER__APP_ID": f"{prefix}app",
        "SEGSTREAM_WORKER__DATA_DIR": str(data_dir),
        "SEGSTREAM_WORKER__CLOCK": "event",
        "SEGSTREAM_WORKER__TRAIN_INTERVAL_S": "1",
        "SEGSTREAM_WORKER__SWEEP_INTERVAL_S": "0.5",
        "SEGSTREAM_WORKER__SWEEP_PERIOD_S": "1",
        "SEGSTREAM_ENGINE__SEGMENTATION__N_SEGMENTS": "4",
        "SEGSTREAM_ENGINE__SEGMENTATION__MIN_CUSTOMERS_TO_TRAIN": "40",
        "SEGSTREAM_ENGINE__VALUE__MIN_CUSTOMERS_FOR_FIT": "30",
        **extra,
    }


def lapser_events(start: datetime) -> list[dict]:
    ts = start.timestamp()
    return [{"type": "purchase", "event_id": f"{LAPSER}-p{i}", "customer_id": LAPSER,
             "timestamp": datetime.fromtimestamp(ts + i * 2 * 86400, timezone.utc).isoformat(),
             "amount": 40.0 + i} for i in range(3)]


def ground_truth(events: list[dict]) -> dict[str, CustomerState]:
    config = ValueConfig()
    states: dict[str, CustomerState] = {}
    for raw in events:
        event = parse_event(orjson.dumps(raw))
        states.setdefault(event.customer_id, CustomerState(event.customer_id)).apply(event, config)
    return states


def matches_truth(profile: dict, state: CustomerState) -> bool:
    return (profile["purchase_count"] == state.purchase_count
            and abs(profile["total_spend"] - state.total_spend) < 0.006
            and profile["frequency"] == state.frequency
            and profile["refund_count"] == state.refund_count
            and profile["support_tickets"] == state.ticket_count
            and profile["complaints"] == state.complaint_count)


def to_messages(prefix: str, events: list[dict]) -> list[tuple[str, bytes, bytes]]:
    topic = {"purchase": "purchases", "engagement": "engagements", "feedback": "feedback", "profile": "profile"}
    return [(f"{prefix}{topic[e['type']]}", e["customer_id"].encode(), orjson.dumps(e)) for e in events]


def bad_messages(prefix: str, sample: dict) -> list[tuple[str, bytes | None, bytes]]:
    purchase = {"type": "purchase", "event_id": "bad-1", "customer_id": "cust-0000001",
                "timestamp": sample["timestamp"], "amount": 10.0}
    return [
        (f"{prefix}purchases", b"cust-0000001", b"{not json"),
        (f"{prefix}purchases", b"someone-else", orjson.dumps(purchase)),                 # key != customer_id
        (f"{prefix}engagements", b"cust-0000001", orjson.dumps(purchase)),               # wrong topic
        (f"{prefix}purchases", b"cust-0000001", orjson.dumps({**purchase, "amount": "NaN"})),
        (f"{prefix}erasures", b"cust-0000001", b'{"customer_id": 1}'),                   # malformed erase request
    ]


@pytest.fixture(scope="module")
def processed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """A worker that has processed the whole population, and what went in."""
    tmp = tmp_path_factory.mktemp("e2e")
    prefix = f"e2e{datetime.now().strftime('%H%M%S%f')}."
    rules = tmp / "rules.toml"
    rules.write_text(LAPSED_RULES)
    pop = generate_population(CUSTOMERS, seed=5)
    first = datetime.fromisoformat(pop.events[0]["timestamp"])
    events = sorted(pop.events + lapser_events(first), key=lambda e: e["timestamp"])
    worker = WorkerProcess(worker_env(kafka_bootstrap, prefix, tmp / "data",
                                      SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE=str(rules)), tmp / "worker.log")
    try:
        worker.wait_ready()
        good = to_messages(prefix, events)
        bad = bad_messages(prefix, events[0])
        half = len(good) // 2
        run(produce(kafka_bootstrap, good[:half] + bad + good[half:]))
        wait_until(lambda: worker.metric("segstream_events_total", outcome="applied") >= len(good), 180,
                   "every valid event applied")
        # Quiet: no more changes from sweeps and retraining before the tests look.
        wait_settled(worker, "segstream_segment_changes_total", "segment changes to settle")
        yield {"worker": worker, "prefix": prefix, "events": events, "bad": bad,
               "truth": ground_truth(events), "bootstrap": kafka_bootstrap, "rules": rules}
    finally:
        assert worker.stop() == 0, worker.log_tail()


def all_changes(ctx: dict) -> list[SegmentChange]:
    count = int(ctx["worker"].metric("segstream_segment_changes_total"))
    records = run(consume(ctx["bootstrap"], f"{ctx['prefix']}segment-changes", count, timeout_s=60))
    assert len(records) == count
    return [SegmentChange.model_validate_json(r.value) for r in records]


def test_profiles_equal_ground_truth(processed: dict) -> None:
    worker, truth = processed["worker"], processed["truth"]
    for customer_id, state in truth.items():
        profile = worker.get(f"/customers/{customer_id}")
        assert matches_truth(profile, state), (customer_id, profile)
    status, doc = worker.request("/customers/nobody-here")
    assert status == 404 and doc["error"] == "unknown customer"
    applied = worker.metric("segstream_events_total", outcome="applied")
    assert applied == len(processed["events"])  # nothing lost, nothing applied twice


def test_malformed_messages_are_dead_lettered_with_reasons(processed: dict) -> None:
    bad = processed["bad"]
    letters = run(consume(processed["bootstrap"], f"{processed['prefix']}dead-letter", len(bad)))
    parsed = [DeadLetter.model_validate_json(r.value) for r in letters]
    assert len(parsed) == len(bad)
    assert all(d.error and d.problems for d in parsed)
    by_topic = defaultdict(list)
    for d in parsed:
        by_topic[d.source.topic.removeprefix(processed["prefix"])].extend(p.field for p in d.problems)
    assert sorted(by_topic) == ["engagements", "erasures", "purchases"]
    assert "key" in by_topic["purchases"] and "amount" in by_topic["purchases"]
    # Judged as an engagement (the topic's contract): the wrong type, and what an engagement lacks or forbids.
    assert by_topic["engagements"] == ["type", "action", "amount"]
    # ...and everything after them was processed (test_profiles_equal_ground_truth).


def test_segment_changes_are_explained_and_agree_with_profiles(processed: dict) -> None:
    worker = processed["worker"]
    changes = all_changes(processed)
    assert len({c.change_id for c in changes}) == len(changes)
    latest_cluster: dict[str, SegmentChange] = {}
    for c in changes:  # one partition per customer: a customer's changes arrive in order
        assert c.reason.code
        # A rule segment works before any model (its change then has no model version); a
        # cluster change always comes from one.
        assert c.model_version is None or c.model_version >= 1
        if c.kind.value == "cluster":
            assert c.model_version is not None
            assert c.segment is not None and c.reason.details["distances"]
            latest_cluster[c.customer_id] = c
    assert len(latest_cluster) >= 0.9 * len(processed["truth"])
    segments = worker.get("/segments")
    assert segments["model_version"] >= 1 and len(segments["segments"]) == 4
    assert {s["id"] for s in segments["rule_segments"]} == {"lapsed"}
    # Every figure says what it is: /segments' recency is RFM recency, not the profile's BTYD one.
    assert set(segments["figures_read_as"]) == set(segments["segments"][0]["stats"]["figures"]["median"])
    assert segments["figures_read_as"]["recency"] == "days since last purchase (RFM recency)"
    for customer_id, change in latest_cluster.items():
        profile = worker.get(f"/customers/{customer_id}")
        assert profile["segment"]["id"] == change.segment.id, customer_id


def test_lapsing_customer_gets_a_change_without_an_event_of_its_own(processed: dict) -> None:
    mine = [c for c in all_changes(processed) if c.customer_id == LAPSER]
    lapsed = [c for c in mine if c.kind.value == "rule" and c.segment and c.segment.id == "lapsed"]
    assert lapsed, [c.model_dump(mode="json") for c in mine]
    last_purchase = max(datetime.fromisoformat(e["timestamp"]) for e in processed["events"] if e["customer_id"] == LAPSER)
    # The change happened on the clock, long after the customer's last event: a sweep found it.
    assert (lapsed[0].changed_at - last_purchase).days >= 30
    assert lapsed[0].value.recency_days is not None and lapsed[0].value.recency_days > 30


def test_the_offline_replay_finds_the_same_time_driven_change(processed: dict) -> None:
    """Replay = worker: replayed offline, the same events give the lapser the same entry without
    an event of its own, from the replay's event-time sweep: at the first midnight after the
    crossing, where the worker's sweep found it at some clock after the crossing."""
    config = EngineConfig.model_validate({
        "segmentation": {"n_segments": 4, "min_customers_to_train": 40, "rules_file": str(processed["rules"])},
        "value": {"min_customers_for_fit": 30}})
    events = processed["events"]
    replayed: list[SegmentChange] = []
    replay = Replay(config, as_of=datetime.fromisoformat(events[-1]["timestamp"]).timestamp(),
                    on_change=replayed.append)
    replay.feed_all(enumerate(map(orjson.dumps, events), 1))
    replay.finish()

    def lapse(changes: list[SegmentChange]) -> datetime:
        return next(c.changed_at for c in changes if c.customer_id == LAPSER and c.kind.value == "rule"
                    and c.segment and c.segment.id == "lapsed")

    last_purchase = max(datetime.fromisoformat(e["timestamp"]) for e in events if e["customer_id"] == LAPSER)
    crossing = last_purchase + timedelta(days=30)
    assert crossing < lapse(replayed) <= crossing + timedelta(days=1)
    assert lapse(all_changes(processed)) > crossing


def test_erasure_deletes_state_and_emits_erased_exits(processed: dict) -> None:
    worker = processed["worker"]
    victim = next(cid for cid in sorted(processed["truth"]) if cid.startswith("cust-")
                  and worker.get(f"/customers/{cid}").get("segment"))
    in_segments = worker.get(f"/customers/{victim}")
    expected_exits = 1 + len(in_segments["rule_segments"])
    status, doc = worker.request(f"/customers/{victim}", method="DELETE")
    assert status == 202 and doc["request_id"]
    wait_until(lambda: worker.request(f"/customers/{victim}")[0] == 404, 30, "the state to be deleted")
    erased = wait_until(lambda: [c for c in all_changes(processed) if c.customer_id == victim
                                 and c.reason.code.value == "erased"], 30, "erased exits")
    assert len(erased) == expected_exits
    assert all(c.segment is None and c.previous_segment is not None and c.value is None for c in erased)
    assert erased[0].previous_segment.id == in_segments["segment"]["id"]
