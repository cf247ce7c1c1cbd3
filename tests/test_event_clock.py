"""Only accepted data moves the event clock or creates a customer: an event the engine rejects (too
far in the future, a currency without a rate), a duplicate or an erased one touches no state and
leaves the clock where it was. The processor in process, as in test_erasure.py."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import orjson

from models.pipeline import Pipeline
from models.rules import RuleSet
from monitoring.metrics import WorkerMetrics
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings
from tests.test_repartition import ENGINE, PartitionOutputs

TOPICS = Settings().topics
PURCHASES, ERASURES, REEVALUATE = TOPICS.input_topics["purchase"], TOPICS.name("erasures"), "reevaluate-test"
START = datetime(2026, 1, 5, tzinfo=timezone.utc)
LAPSED = RuleSet.from_toml("""
[[segment]]
id = "lapsed_60"
label = "No purchase for 60 days"
all = [ { field = "days_since_last_purchase", op = ">", value = 60 } ]
""")


class DeadLetters(PartitionOutputs):
    def __init__(self) -> None:
        super().__init__()
        self.dead: list[tuple[int, list]] = []

    async def dead_letter(self, message: InMessage, source_type: str, problems: list) -> None:
        self.dead.append((message.offset, problems))


class Worker:
    def __init__(self, rules: RuleSet | None = None) -> None:
        routes = {name: etype for etype, name in TOPICS.input_topics.items()}
        routes |= {ERASURES: "erasure", REEVALUATE: "reevaluate"}
        self.table: dict[bytes, bytes] = {}
        self.outputs = DeadLetters()
        self.clock = WorkerClock("event")
        self.processor = CustomerProcessor(Pipeline(ENGINE, train_locally=True, rules=rules), self.table,
                                           self.outputs, self.clock, SampleForwarder(), WorkerMetrics(), routes)
        self.offset = 0

    def purchase(self, customer: str, at: datetime, event_id: str | None = None, **fields) -> InMessage:
        self.offset += 1
        event = {"type": "purchase", "event_id": event_id or f"p-{self.offset}", "customer_id": customer,
                 "timestamp": at.isoformat(), "amount": 10.0} | fields
        return InMessage(PURCHASES, 0, self.offset, customer.encode(), orjson.dumps(event))

    def sweep(self, *customers: str) -> InMessage:
        self.offset += 1
        return InMessage(REEVALUATE, 0, self.offset, None, orjson.dumps({"customers": list(customers)}))

    def feed(self, *msgs: InMessage) -> None:
        asyncio.run(self.processor.handle_batch(list(msgs)))

    def changes(self) -> list[dict]:
        return [orjson.loads(c) for c in self.outputs.published]


def test_an_event_rejected_as_too_far_in_the_future_does_not_move_the_event_clock() -> None:
    """The field report: one purchase stamped 2031 moved the demo's clock there, and every customer
    was re-valued 33 years later at the next sweep."""
    worker = Worker(rules=LAPSED)
    worker.feed(worker.purchase("ann", START))
    assert worker.clock.now() == START.timestamp()
    future = datetime.now(timezone.utc) + timedelta(days=5 * 365)
    worker.feed(worker.purchase("ann", future))
    assert [offset for offset, _ in worker.outputs.dead] == [2]
    assert worker.clock.now() == START.timestamp()
    worker.feed(worker.sweep("ann"))
    assert worker.changes() == []  # not lapsed: nothing moved ann's clock past her purchase


def test_a_rejected_event_of_an_unknown_customer_creates_no_profile() -> None:
    worker = Worker()
    worker.feed(worker.purchase("eur-only", START, currency="EUR"))  # no EUR rate configured
    worker.feed(worker.purchase("far", datetime.now(timezone.utc) + timedelta(days=2)))
    assert len(worker.outputs.dead) == 2
    assert worker.table == {}
    assert worker.clock.now() is None  # the clock has seen no accepted event


def test_a_rejected_event_leaves_a_known_customer_exactly_as_it_was() -> None:
    """Her first purchase, rejected: not even the bookkeeping of purchase ids is started."""
    worker = Worker()
    worker.offset += 1
    visit = {"type": "engagement", "event_id": "v-1", "customer_id": "ann", "timestamp": START.isoformat(),
             "action": "page_view"}
    worker.feed(InMessage(TOPICS.input_topics["engagement"], 0, worker.offset, b"ann", orjson.dumps(visit)))
    saved = worker.table[b"ann"]
    worker.feed(worker.purchase("ann", START + timedelta(days=1), currency="EUR"))
    assert len(worker.outputs.dead) == 1
    assert worker.table[b"ann"] == saved


def test_a_duplicate_does_not_move_the_event_clock() -> None:
    """A repeated event_id stamped later (a producer's retry with a new timestamp) is recognised as
    the same event: ignored, and its later time does not become the clock's."""
    worker = Worker()
    worker.feed(worker.purchase("ann", START, event_id="order-1"))
    worker.feed(worker.purchase("ann", START + timedelta(days=3), event_id="order-1"))
    assert worker.clock.now() == START.timestamp()


def test_an_erased_event_does_not_move_the_event_clock() -> None:
    from schemas.erasure import erasure_now

    worker = Worker()
    worker.feed(worker.purchase("bob", START))
    cutoff = {topic: [0] for topic in TOPICS.input_topics.values()} | {PURCHASES: [worker.offset + 2]}
    worker.feed(InMessage(ERASURES, 0, 0, b"ann", erasure_now("ann", "r-1", cutoff).to_json()))
    worker.feed(worker.purchase("ann", START + timedelta(days=30)))  # produced before the request
    assert worker.clock.now() == START.timestamp()


def test_a_time_from_another_worker_too_far_ahead_of_wall_time_is_ignored() -> None:
    """Samples and model snapshots carry other workers' clocks; one written before this fix (or by
    a worker with another skew setting) could be years ahead. The trainer's clock, like every
    worker's, stays within the engine's skew of wall time."""
    from streams.sampling import encode_samples
    from streams.training import TrainerHost

    host = TrainerHost(ENGINE, "event", train_interval_s=1, refill_wait_s=1, listener=None)  # type: ignore[arg-type]
    host.on_samples(encode_samples([], ["x"], clock=START.timestamp()))
    host.on_samples(encode_samples([], ["x"], clock=datetime(2031, 1, 1, tzinfo=timezone.utc).timestamp()))
    assert host.clock.now() == START.timestamp()
