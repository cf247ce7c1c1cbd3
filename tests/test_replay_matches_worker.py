"""The offline replay emits the change stream a live worker with its sweep would: the worker's own
processor (no Kafka, as in test_erasure.py) is fed the same events as time passes, one message a
batch, with a sweep of every customer at each UTC midnight; its changes must be the replay's, to
the change id and the second, time-driven exits included (the real broker: test_worker_e2e.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path

import orjson

from models.config import EngineConfig
from models.pipeline import Pipeline
from monitoring.metrics import WorkerMetrics
from schemas.events import parse_event
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.replay import Replay
from streams.sampling import SampleForwarder
from streams.settings import Settings
from tests.test_repartition import PartitionOutputs

CASES = Path(__file__).resolve().parent / "data"
TOPICS = Settings().topics
REEVALUATE = "reevaluate-test"
DAY = 86_400.0
AS_OF = datetime(2026, 5, 1, tzinfo=timezone.utc).timestamp()
CONFIG = EngineConfig.model_validate({"segmentation": {"rules_file": str(CASES / "12-lapse-without-events.toml")}})


class LiveWorker:
    """The processor on a clock that time moves (as a live worker's does) besides the events."""

    def __init__(self) -> None:
        routes = {name: etype for etype, name in TOPICS.input_topics.items()} | {REEVALUATE: "reevaluate"}
        self.clock = WorkerClock("event")
        self.outputs = PartitionOutputs()
        self.processor = CustomerProcessor(Pipeline(CONFIG), {}, self.outputs, self.clock, SampleForwarder(),
                                           WorkerMetrics(), routes)
        self.customers: set[str] = set()
        self.offset = 0

    def event(self, raw: bytes) -> None:
        event = parse_event(raw)
        self.customers.add(event.customer_id)
        self._send(TOPICS.input_topics[event.type], event.customer_id.encode(), raw)

    def sweep_at(self, at: float) -> None:
        self.clock.observe(at)  # time passed: a live worker's clock is now
        self._send(REEVALUATE, None, orjson.dumps({"customers": sorted(self.customers)}))

    def _send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.offset += 1
        asyncio.run(self.processor.handle_batch([InMessage(topic, 0, self.offset, key, value)]))

    def changes(self) -> list[dict]:
        return [orjson.loads(c) for c in self.outputs.published]


def test_the_replay_emits_what_a_live_worker_with_its_sweep_emits() -> None:
    lines = (CASES / "12b-lapse-and-return.jsonl").read_bytes().splitlines()
    replayed: list = []
    replay = Replay(CONFIG, AS_OF, on_change=replayed.append)
    replay.feed_all(enumerate(lines, 1))
    replay.finish()

    worker = LiveWorker()
    events = sorted(lines, key=lambda raw: parse_event(raw).timestamp)
    tick = (parse_event(events[0]).timestamp.timestamp() // DAY + 1) * DAY
    for raw in events:
        while tick < parse_event(raw).timestamp.timestamp():
            worker.sweep_at(tick)
            tick += DAY
        worker.event(raw)
    while tick < AS_OF:
        worker.sweep_at(tick)
        tick += DAY
    worker.sweep_at(AS_OF)  # the replay's last evaluation (no model here: nothing to retrain)

    ours = [orjson.loads(c.model_dump_json()) for c in replayed]
    assert ours == worker.changes()
    exits = [c for c in ours if c["reason"]["code"] == "rule_left" and c["customer_id"].startswith("lapser-")]
    assert exits and all(c["changed_at"].endswith("T00:00:00Z") for c in exits)  # time-driven: at a tick
