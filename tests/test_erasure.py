"""An erasure covers exactly the customer's events produced before the request was accepted,
whenever they are consumed, and none produced after; applying the same request again deletes
nothing new. The processor in process (the real broker: test_erasure_kafka.py and
test_uncommitted_partitions.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson

from models.pipeline import Pipeline
from models.state import CustomerState, source_tag
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


def test_events_produced_after_the_request_but_consumed_before_it_are_read_again_and_kept() -> None:
    """The request's topic is read independently of the inputs: offsets 2 and 3, produced after
    the request was accepted, were applied before it reached the worker. They go with the state,
    and the processor asks for the partition to be read again from the cutoff."""
    worker = Worker()
    worker.feed(purchase(0), purchase(1), purchase(2, 5.0), purchase(3, 7.0))
    worker.feed(erase("r-1", purchases_end=2, offset=0))
    assert not worker.ann.holds_data
    assert worker.processor.rewinds == {(PURCHASES, 0): 2}
    worker.feed(purchase(2, 5.0), purchase(3, 7.0), purchase(4, 11.0))  # the re-read, then on
    assert (worker.ann.purchase_count, worker.ann.total_spend) == (3, 23.0)
    assert worker.processor.rewinds == {} and not worker.ann.replay_to  # read again once
    worker.feed(purchase(0), purchase(3, 7.0))  # redelivered again: erased, applied
    assert (worker.ann.purchase_count, worker.ann.total_spend) == (3, 23.0)


def test_messages_after_the_erasure_in_its_batch_wait_for_the_re_read() -> None:
    worker = Worker()
    worker.feed(purchase(0), purchase(1, 5.0))
    other = InMessage(PURCHASES, 1, 0, b"bob", purchase(0).value.replace(b'"ann"', b'"bob"'))  # type: ignore[union-attr]
    worker.feed(erase("r-1", purchases_end=1, offset=0), purchase(2, 7.0), other)
    assert worker.processor.held == [1]  # offset 2 of the re-read partition comes again; bob's partition goes on
    assert b"bob" in worker.table and not worker.ann.holds_data
    worker.feed(purchase(1, 5.0), purchase(2, 7.0))
    assert (worker.ann.purchase_count, worker.ann.total_spend) == (2, 12.0)


def test_a_re_read_cut_short_by_a_crash_is_asked_for_again() -> None:
    """The worker died after saving the erasure, before reading the partition again, and the
    commit had passed those events: the next event of that partition shows it; it waits."""
    worker = Worker()
    worker.feed(purchase(0), purchase(1, 5.0), erase("r-1", purchases_end=1, offset=0))
    worker.processor.rewinds.clear()  # "crash": the rewind never happened
    worker.feed(purchase(2, 7.0))
    assert worker.processor.held == [0] and worker.processor.rewinds == {(PURCHASES, 0): 1}
    assert not worker.ann.holds_data
    worker.feed(purchase(1, 5.0), purchase(2, 7.0))
    assert (worker.ann.purchase_count, worker.ann.total_spend) == (2, 12.0)


def test_the_marker_keeps_what_the_re_read_needs_across_a_restart() -> None:
    worker = Worker()
    worker.feed(purchase(0), purchase(1, 5.0), erase("r-1", purchases_end=1, offset=0))
    restored = CustomerState.from_bytes(worker.ann.to_bytes())
    assert restored.replay_to == worker.ann.replay_to == {(source_tag(PURCHASES), 0): 1}
    assert restored.erased_ids == worker.ann.erased_ids and len(restored.erased_ids["purchase"]) == 2
