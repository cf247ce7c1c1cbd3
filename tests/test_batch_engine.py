"""The batch engine gives exactly the answers of the per-customer path it replaces (issue #20).

``Pipeline.evaluate_many`` evaluates a batch of customers together (features, BTYD P(alive) and
CLV, distances to the centroids as numpy arrays); ``Pipeline.evaluate`` one by one stays the
reference. Both are driven here over the same inputs through the offline replay (sweeps of every
customer) and must emit the same segment changes, byte for byte, and leave the same profiles.

The worker's ``CustomerProcessor`` in batches of 500 (the batch engine) is held to the same
messages one at a time through the per-customer path: every event is evaluated, as of the clock
when it came, even when its customer has several events in one batch (as the replay does).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Sequence

import orjson
import pytest

from models.cdnow import read_transactions
from models.config import EngineConfig, SegmentationConfig
from models.pipeline import Pipeline
from models.state import CustomerState
from models.state_cache import StateCache
from models.synthetic import generate_population
from monitoring.metrics import WorkerMetrics
from schemas.segment_change import SegmentChange
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.replay import Replay
from streams.demo import RULES as EXAMPLE_RULES
from streams.sampling import SampleForwarder
from streams.settings import Settings

END = 1_767_225_600.0  # 2026-01-01


class ReferencePipeline(Pipeline):
    """Today's per-customer path: a batch is evaluated one customer after the other."""

    def evaluate_many(self, states: Sequence[CustomerState], nows: Sequence[float]) -> list[list[SegmentChange]]:
        return [self.evaluate(state, now) for state, now in zip(states, nows)]


def config(train_every: int) -> EngineConfig:
    return EngineConfig(segmentation=SegmentationConfig(train_every_events=train_every, rules_file=str(EXAMPLE_RULES)))


def persona_events() -> list[dict[str, Any]]:
    return generate_population(300, seed=5, end=END).events


def cdnow_events() -> list[dict[str, Any]]:
    return list(read_transactions())


def replayed(pipeline_class: type[Pipeline], events: list[dict[str, Any]], as_of: float,
             train_every: int) -> tuple[list[bytes], list[bytes]]:
    """(changes, profiles) of a replay with a sweep every week of event time."""
    changes: list[bytes] = []
    cfg = config(train_every)
    replay = Replay(cfg, as_of, on_change=lambda c: changes.append(c.model_dump_json().encode()),
                    sweep_every_s=7 * 86_400.0, pipeline=pipeline_class(cfg, auto_refit=False))
    for i, event in enumerate(sorted(events, key=lambda e: e["timestamp"])):
        replay.feed(i, orjson.dumps(event))
    replay.finish()
    return changes, [orjson.dumps(p) for p in replay.profiles()]


@pytest.mark.parametrize("events, as_of, train_every", [
    (persona_events, END, 2000),
    (cdnow_events, 899_251_200.0, 1000),  # CDNOW as of 1998-07-01, a training every 1,000 events
], ids=["personas", "cdnow"])
def test_the_replay_emits_the_same_changes_through_the_batch_engine(events, as_of, train_every) -> None:
    data = events()
    batch_changes, batch_profiles = replayed(Pipeline, data, as_of, train_every)
    reference_changes, reference_profiles = replayed(ReferencePipeline, data, as_of, train_every)
    assert len(batch_changes) > 100  # clusters and rules both changed along the way
    assert {orjson.loads(c)["kind"] for c in batch_changes} == {"cluster", "rule"}
    assert batch_changes == reference_changes
    assert batch_profiles == reference_profiles


class _RecordingOutputs:
    """The processor's outputs without Kafka: acknowledged at once, recorded."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def changes(self, changes: list[SegmentChange]) -> None:
        self.sent.extend(c.model_dump_json().encode() for c in changes)

    async def flush(self) -> None:
        pass

    async def dead_letter(self, message: Any, source_type: str, problems: list) -> None:
        raise AssertionError(f"no dead letter expected: {problems}")

    async def forward(self, message: Any, partition: int) -> None:
        raise AssertionError("one partition: nothing is forwarded")

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}


def trained_snapshot() -> Any:
    """A model trained on the personas (a worker gets its model from the trainer the same way)."""
    cfg = config(2000)
    replay = Replay(cfg, END, pipeline=Pipeline(cfg, auto_refit=False))
    for i, event in enumerate(persona_events()):
        replay.feed(i, orjson.dumps(event))
    replay.finish()
    assert replay.pipeline.snapshot is not None
    return replay.pipeline.snapshot


def processed(pipeline_class: type[Pipeline], batch: int, snapshot: Any) -> tuple[list[bytes], dict[bytes, bytes]]:
    """(changes, table) of the worker's processor over the personas' messages, in batches, with
    the model ``snapshot`` installed and a sweep batch of 40 customers every 700 messages."""
    settings = Settings()
    topics = settings.topics.input_topics
    reevaluate = settings.topics.name("reevaluate")
    table: dict[bytes, bytes] = {}
    outputs = _RecordingOutputs()
    pipeline = pipeline_class(config(2000), train_locally=False)
    pipeline.install(snapshot)
    routes: dict[str, str] = {name: etype for etype, name in topics.items()}
    routes[reevaluate] = "reevaluate"
    processor = CustomerProcessor(pipeline, table, outputs, WorkerClock("event"), SampleForwarder(),
                                  WorkerMetrics(), routes, cache=StateCache(100))
    events = persona_events()
    # Producers resend late: every 40th event arrives 3,000 messages later (its customer's time
    # never goes back: the evaluation's floor, state.evaluated_at, is exercised too).
    late = {i: e for i, e in enumerate(events) if i % 40 == 0}
    order = [e for i, e in enumerate(events) if i not in late]
    for i, e in sorted(late.items(), reverse=True):
        order.insert(min(i + 3000 - len([j for j in late if j < i]), len(order)), e)
    inbox: list[InMessage] = []
    for i, e in enumerate(order):
        inbox.append(InMessage(topics[e["type"]], 0, i, e["customer_id"].encode(), orjson.dumps(e)))
        if i % 700 == 699:  # the sweep reaches customers whose events are in the same batch
            recent = sorted({m.key.decode() for m in inbox[-60:] if m.key is not None})[:40]
            inbox.append(InMessage(reevaluate, 0, i, None, orjson.dumps({"customers": recent, "pass": 1})))

    async def drive() -> None:
        for start in range(0, len(inbox), batch):
            await processor.handle_batch(inbox[start:start + batch])

    asyncio.run(drive())
    return outputs.sent, table


class PerMessagePipeline(ReferencePipeline):
    """The reference for the worker: every message a batch of its own, so every event is
    evaluated right after it is applied (what the replay does), one customer at a time."""


def test_a_workers_batch_emits_exactly_what_its_messages_would_one_at_a_time() -> None:
    """A customer with several events in one batch is evaluated after each of them (a segment it
    holds between two events of the batch is entered and left), as of the clock when each came."""
    snapshot = trained_snapshot()
    batch_changes, batch_table = processed(Pipeline, 500, snapshot)
    reference_changes, reference_table = processed(PerMessagePipeline, 1, snapshot)
    assert len(batch_changes) > 100
    assert {orjson.loads(c)["kind"] for c in batch_changes} == {"cluster", "rule"}
    # Ordered per customer, as the changes topic is (keyed by customer); a batch sends one
    # customer's changes after another's, the messages one at a time interleave them.
    assert by_customer(batch_changes) == by_customer(reference_changes)
    assert batch_table == reference_table  # every customer's state, byte for byte


def by_customer(changes: list[bytes]) -> dict[str, list[bytes]]:
    grouped: dict[str, list[bytes]] = {}
    for change in changes:
        grouped.setdefault(orjson.loads(change)["customer_id"], []).append(change)
    return grouped


def test_a_batch_never_evaluates_a_customer_before_its_last_decision() -> None:
    """A late event or a worker behind its input asks for a time before the customer's last
    membership decision (``evaluated_at``): both paths take that time instead."""
    cfg = config(2000)
    replay = Replay(cfg, END, sweep_every_s=7 * 86_400.0, pipeline=Pipeline(cfg, auto_refit=False))
    for i, event in enumerate(persona_events()):
        replay.feed(i, orjson.dumps(event))
    replay.finish()
    states = [replay.states[cid] for cid in sorted(replay.states)]
    decided = [s for s in states if s.evaluated_at is not None]
    assert len(decided) > 100
    earlier = [s.evaluated_at - 200 * 86_400.0 for s in decided]  # lapses the time would take back

    def run(pipeline: Pipeline) -> tuple[list[list[bytes]], list[bytes]]:
        copies = [CustomerState.from_bytes(s.to_bytes()) for s in decided]
        changes = pipeline.evaluate_many(copies, earlier)
        return [[c.model_dump_json().encode() for c in cs] for cs in changes], [s.to_bytes() for s in copies]

    batch, reference = Pipeline(cfg, train_locally=False), ReferencePipeline(cfg, train_locally=False)
    for p in (batch, reference):
        p.install(replay.pipeline.snapshot)
    assert run(batch) == run(reference)


def test_field_case_14_live_enters_new_customers_at_the_first_purchase_as_the_replay_does() -> None:
    """Field case 14's three purchases of one customer in one batch: the worker stamped the
    ``new_customers`` entry at the last of them (it evaluated once per batch); the replay, at the
    first. Both now say 2026-05-01T10:00:00Z."""
    lines = (Path(__file__).resolve().parent / "data" / "14-huge-amount-serialisation.jsonl").read_bytes().splitlines()
    cfg = EngineConfig.model_validate({"value": {"base_currency": "VND", "currency_rates": {"USD": 25000}},
                                       "segmentation": {"rules_file": str(EXAMPLE_RULES)}})
    offline: list[bytes] = []
    replay = Replay(cfg, 1_780_272_000.0, on_change=lambda c: offline.append(c.model_dump_json().encode()))  # 2026-06-01
    for i, line in enumerate(lines):
        replay.feed(i, line)
    replay.finish()

    topics = Settings().topics.input_topics
    outputs = _RecordingOutputs()
    processor = CustomerProcessor(Pipeline(cfg, train_locally=False), {}, outputs, WorkerClock("event"),
                                  SampleForwarder(), WorkerMetrics(), {name: t for t, name in topics.items()})
    inbox = [InMessage(topics["purchase"], 0, i, orjson.loads(line)["customer_id"].encode(), line)
             for i, line in enumerate(lines)]
    asyncio.run(processor.handle_batch(inbox))  # one batch, as a live worker catching up reads them

    entries = [orjson.loads(c) for c in outputs.sent if orjson.loads(c)["customer_id"] == "wholesale-1"]
    assert [(c["segment"]["id"], c["changed_at"]) for c in entries] == [("new_customers", "2026-05-01T10:00:00Z")]
    assert by_customer(outputs.sent) == by_customer([c for c in offline if orjson.loads(c)["changed_at"] < "2026-05-04"])
