"""The sweep waits for the slowest input partition (streams.watermark), and a customer's time never
goes back (Pipeline.evaluate). The processor in process, as in test_event_clock.py; the partitions'
read positions and end offsets are given as the worker's timer measures them.

The field report (#17, ``segstream run --events`` on shared/cases 12b): a customer whose partition
lagged was swept at the event time another partition had reached, entered ``lapsed_60`` and left
it again when its own April purchase was read.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timedelta, timezone

import orjson

from models.pipeline import Pipeline
from monitoring.metrics import WorkerMetrics
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.watermark import InputWatermark
from tests.test_event_clock import ENGINE, LAPSED, PURCHASES, REEVALUATE, TOPICS, DeadLetters

JAN = datetime(2026, 1, 10, 10, tzinfo=timezone.utc)
APR = datetime(2026, 4, 10, 10, tzinfo=timezone.utc)


class TwoPartitionWorker:
    """Purchases on two partitions, each processed where it arrives; ``measure`` plays the timer."""

    def __init__(self, watermark: bool = True) -> None:
        routes = {name: etype for etype, name in TOPICS.input_topics.items()} | {REEVALUATE: "reevaluate"}
        self.outputs = DeadLetters()
        self.clock = WorkerClock("event", held_by_input=watermark)
        self.watermark = InputWatermark() if watermark else None
        self.processor = CustomerProcessor(Pipeline(ENGINE, train_locally=True, rules=LAPSED), {}, self.outputs,
                                           self.clock, SampleForwarder(), WorkerMetrics(), routes,
                                           watermark=self.watermark)
        self.produced: dict[int, list[InMessage]] = {0: [], 1: []}
        self.read = {0: 0, 1: 0}

    def produce(self, partition: int, customer: str, at: datetime) -> None:
        offset = len(self.produced[partition])
        event = {"type": "purchase", "event_id": f"{customer}-{offset}", "customer_id": customer,
                 "timestamp": at.isoformat(), "amount": 40.0}
        self.produced[partition].append(InMessage(PURCHASES, partition, offset, customer.encode(), orjson.dumps(event)))

    def consume(self, partition: int, count: int = 1) -> None:
        start = self.read[partition]
        msgs = self.produced[partition][start:start + count]
        self.read[partition] += len(msgs)
        asyncio.run(self.processor.handle_batch(msgs))
        self.measure()

    def measure(self) -> None:
        if self.watermark is not None:
            self.clock.hold(self.watermark.low({(PURCHASES, p): (self.read[p], len(self.produced[p])) for p in (0, 1)}))

    def sweep(self, *customers: str) -> None:
        msg = InMessage(REEVALUATE, 0, 0, None, orjson.dumps({"customers": list(customers)}))
        asyncio.run(self.processor.handle_batch([msg]))

    def changes(self, customer: str) -> list[tuple[str, str]]:
        docs = [orjson.loads(c) for c in self.outputs.published]
        return [((d["segment"] or d["previous_segment"])["id"], d["kind"] if d["segment"] else "left")
                for d in docs if d["customer_id"] == customer and d["reason"]["code"].startswith("rule")]


def lagging_partition(worker: TwoPartitionWorker) -> TwoPartitionWorker:
    """returner (partition 0) buys in January and April; busy (partition 1) reaches April 20
    while partition 0 has read only the January purchase; a sweep runs then; partition 0 catches up."""
    worker.produce(0, "returner", JAN)
    worker.produce(0, "returner", APR)
    for day in range(0, 101, 10):
        worker.produce(1, "busy", JAN + timedelta(days=day))
    worker.consume(0)
    worker.consume(1, 11)
    worker.sweep("returner", "busy")
    worker.consume(0)
    worker.sweep("returner", "busy")
    return worker


def test_a_customer_of_a_lagging_partition_is_not_swept_ahead_of_its_own_events() -> None:
    worker = lagging_partition(TwoPartitionWorker())
    assert worker.changes("returner") == []  # bought again within 60 days of every time it was evaluated at
    assert worker.clock.sweep_time() == (JAN + timedelta(days=100)).timestamp()  # caught up: the clock


def test_without_the_watermark_the_same_input_makes_the_false_lapse() -> None:
    """What the watermark prevents (the test above would pass vacuously if this did not happen)."""
    worker = lagging_partition(TwoPartitionWorker(watermark=False))
    assert worker.changes("returner") == [("lapsed_60", "rule"), ("lapsed_60", "left")]


def test_a_real_lapse_still_comes_once_the_slow_partition_has_read_past_it() -> None:
    worker = TwoPartitionWorker()
    worker.produce(0, "lapser", JAN)
    worker.produce(0, "filler", APR)  # partition 0 moves on; lapser bought nothing more
    worker.produce(1, "busy", APR)
    worker.consume(1)
    worker.consume(0)
    worker.sweep("lapser")
    assert worker.clock.sweep_time() is not None
    assert worker.changes("lapser") == []  # partition 0 still behind, at January: not yet
    worker.consume(0)
    worker.sweep("lapser")
    assert worker.changes("lapser") == [("lapsed_60", "rule")]


def test_an_event_forwarded_to_its_home_partition_holds_its_origin_until_applied() -> None:
    watermark = InputWatermark()
    watermark.applied((PURCHASES, 0), None, 100.0)
    watermark.applied((PURCHASES, 1), None, 500.0)
    watermark.forwarded((PURCHASES, 0), 7, home=1)
    caught_up = {(PURCHASES, 0): (8, 8), (PURCHASES, 1): (9, 9)}
    assert watermark.low(caught_up) == 100.0
    watermark.forget([("repartition", 1)], repartition_topic="repartition")  # home moved to another worker
    assert watermark.low(caught_up) == math.inf


def test_nothing_is_swept_before_the_watermark_is_first_measured() -> None:
    clock = WorkerClock("wall", held_by_input=True)
    assert clock.sweep_time() is None
    clock.hold(math.inf)
    assert clock.sweep_time() is not None


def test_the_sweep_time_never_goes_back_when_a_partition_falls_behind_again() -> None:
    clock = WorkerClock("event")
    clock.observe(2_000.0)
    clock.hold(math.inf)
    assert clock.sweep_time() == 2_000.0
    clock.hold(1_500.0)  # new messages on a partition whose latest applied event is older
    assert clock.sweep_time() == 2_000.0


def test_a_late_event_evaluated_behind_the_last_decision_does_not_undo_a_lapse() -> None:
    """A worker restarted behind its input evaluates a customer's late event as of that event; the
    customer's time is its last decision's (``evaluated_at``), so the lapse stands."""
    pipeline = Pipeline(ENGINE, train_locally=True, rules=LAPSED)
    state = pipeline.new_state("ann")
    pipeline.apply(state, parse({"customer_id": "ann", "timestamp": JAN.isoformat(), "amount": 40.0}), now=APR.timestamp())
    entered = pipeline.evaluate(state, APR.timestamp())
    assert [c.segment.id for c in entered if c.segment] == ["lapsed_60"]
    late = JAN + timedelta(days=1)  # an engagement, a day after the purchase, read months later
    pipeline.apply(state, parse({"type": "engagement", "customer_id": "ann", "timestamp": late.isoformat(),
                                 "action": "page_view"}), now=APR.timestamp())
    assert pipeline.evaluate(state, late.timestamp()) == []
    assert state.rules == ["lapsed_60"]


def parse(fields: dict):
    from schemas.events import parse_event

    doc = {"type": "purchase", "event_id": f"e-{fields['timestamp']}"} | fields
    return parse_event(orjson.dumps(doc))
