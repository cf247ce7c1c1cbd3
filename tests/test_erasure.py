"""An erasure covers exactly the customer's events produced before the request was accepted,
whenever they are consumed, and none produced after; applying the same request again deletes
nothing new. The processor in process (the real broker: test_erasure_kafka.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson

from models.pipeline import Pipeline
from models.state import CustomerState
from monitoring.metrics import WorkerMetrics
from schemas.erasure import erasure_now
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings
from tests.test_repartition import ENGINE, PartitionOutputs

TOPICS = Settings().topics
PURCHASES, ERASURES = TOPICS.input_topics["purchase"], TOPICS.name("erasures")
START = datetime(2026, 1, 5, tzinfo=timezone.utc)


def purchase(offset: int, amount: float = 10.0) -> InMessage:
    event = {"type": "purchase", "event_id": f"p-{offset}", "customer_id": "ann",
             "timestamp": (START + timedelta(hours=offset)).isoformat(), "amount": amount}
    return InMessage(PURCHASES, 0, offset, b"ann", orjson.dumps(event))


def erase(request_id: str, purchases_end: int, offset: int) -> InMessage:
    """A request accepted when the purchases topic's partition 0 ended at ``purchases_end``."""
    cutoff = {topic: [0] for topic in TOPICS.input_topics.values()} | {PURCHASES: [purchases_end]}
    return InMessage(ERASURES, 0, offset, b"ann", erasure_now("ann", request_id, cutoff).to_json())


class Worker:
    def __init__(self) -> None:
        routes = {name: etype for etype, name in TOPICS.input_topics.items()} | {ERASURES: "erasure"}
        self.table: dict[bytes, bytes] = {}
        self.outputs = PartitionOutputs()
        self.metrics = WorkerMetrics()
        self.processor = CustomerProcessor(Pipeline(ENGINE, train_locally=True), self.table, self.outputs,
                                           WorkerClock("event"), SampleForwarder(), self.metrics, routes)

    def feed(self, *msgs: InMessage) -> None:
        asyncio.run(self.processor.handle_batch(list(msgs)))

    @property
    def ann(self) -> CustomerState:
        return CustomerState.from_bytes(self.table[b"ann"])

    def outcome(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value(
            "segstream_events_total", {"event_type": "purchase", "outcome": outcome}) or 0.0


def test_earlier_events_consumed_after_the_erasure_are_erased_later_ones_kept() -> None:
    worker = Worker()
    worker.feed(purchase(0), purchase(1))
    # Accepted when purchases ended at offset 3: offset 2 was produced before, 3 and 4 after; the
    # request is consumed before offset 2 (its topic is read independently of the inputs).
    worker.feed(erase("r-1", purchases_end=3, offset=0))
    assert not worker.ann.holds_data
    worker.feed(purchase(2, 99.0), purchase(3, 5.0), purchase(4, 7.0))
    assert (worker.ann.purchase_count, worker.ann.total_spend) == (2, 12.0)  # a new life: 3 and 4 only
    assert worker.outcome("erased") == 1


def test_an_erased_event_sent_again_by_its_producer_stays_erased() -> None:
    """A producer's retry of an old event arrives at a new offset, after the cutoff: recognised by
    its id (the duplicate window survives the erasure), not a new life."""
    worker = Worker()
    worker.feed(purchase(0), purchase(1), erase("r-1", purchases_end=2, offset=0))
    resent = purchase(1)
    worker.feed(InMessage(resent.topic, 0, 7, resent.key, resent.value))  # same event, new offset
    assert not worker.ann.holds_data
    assert worker.outcome("duplicate") == 1


def test_the_same_request_again_deletes_nothing_new() -> None:
    worker = Worker()
    worker.feed(purchase(0), erase("r-1", purchases_end=1, offset=0), purchase(1, 5.0))
    worker.feed(erase("r-1", purchases_end=1, offset=0))  # redelivered after a crash
    assert (worker.ann.purchase_count, worker.ann.total_spend) == (1, 5.0)
    worker.feed(purchase(0))  # the erased event redelivered too
    assert worker.ann.purchase_count == 1


def test_a_request_for_a_customer_not_seen_yet_still_covers_their_earlier_events() -> None:
    worker = Worker()
    worker.feed(erase("r-1", purchases_end=2, offset=0))  # the inputs are behind the erasures topic
    worker.feed(purchase(0), purchase(1), purchase(2, 3.0))
    assert (worker.ann.purchase_count, worker.ann.total_spend) == (1, 3.0)
    assert worker.ann.erasure_applied("r-1") and not worker.ann.erasure_applied("r-2")


def test_an_erased_customer_leaves_its_segments_with_reason_erased_once() -> None:
    worker = Worker()
    worker.feed(*[purchase(i) for i in range(3)])
    held = worker.ann
    before = len(worker.outputs.published)
    worker.feed(erase("r-1", purchases_end=3, offset=0))
    worker.feed(erase("r-1", purchases_end=3, offset=0))
    exits = [orjson.loads(c) for c in worker.outputs.published[before:]]
    assert all(c["reason"]["code"] == "erased" for c in exits)
    assert len(exits) == (held.cluster is not None) + len(held.rules)
