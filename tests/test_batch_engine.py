"""The batch engine gives exactly the answers of the per-customer path it replaces (issue #20).

``Pipeline.evaluate_many`` evaluates a batch of customers together (features, BTYD P(alive) and
CLV, distances to the centroids as numpy arrays); ``Pipeline.evaluate`` one by one stays the
reference. Both are driven here over the same inputs, through the offline replay (sweeps of every
customer) and through the worker's ``CustomerProcessor`` (its batches, on an event clock), and
must emit the same segment changes, byte for byte, and leave the same profiles.
"""

from __future__ import annotations

import asyncio
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


def processed(pipeline_class: type[Pipeline], batch: int) -> tuple[list[bytes], dict[bytes, bytes]]:
    """(changes, table) of the worker's processor over the personas' messages, in batches."""
    settings = Settings()
    topics = settings.topics.input_topics
    table: dict[bytes, bytes] = {}
    outputs = _RecordingOutputs()
    processor = CustomerProcessor(pipeline_class(config(2000), train_locally=True), table, outputs,
                                  WorkerClock("event"), SampleForwarder(), WorkerMetrics(),
                                  {name: etype for etype, name in topics.items()}, cache=StateCache(100))
    events = persona_events()
    # Producers resend late: every 40th event arrives 3,000 messages later (its customer's time
    # never goes back: the evaluation's floor, state.evaluated_at, is exercised too).
    late = {i: e for i, e in enumerate(events) if i % 40 == 0}
    order = [e for i, e in enumerate(events) if i not in late]
    for i, e in sorted(late.items(), reverse=True):
        order.insert(min(i + 3000 - len([j for j in late if j < i]), len(order)), e)
    inbox = [InMessage(topics[e["type"]], 0, i, e["customer_id"].encode(), orjson.dumps(e))
             for i, e in enumerate(order)]

    async def drive() -> None:
        for start in range(0, len(inbox), batch):
            await processor.handle_batch(inbox[start:start + batch])

    asyncio.run(drive())
    return outputs.sent, table


def test_the_workers_batches_emit_the_same_changes_through_the_batch_engine() -> None:
    batch_changes, batch_table = processed(Pipeline, batch=500)
    reference_changes, reference_table = processed(ReferencePipeline, batch=500)
    assert len(batch_changes) > 100
    assert batch_changes == reference_changes
    assert batch_table == reference_table  # every customer's state, byte for byte


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
