"""Segment changes caused by one purchase stamped in 2031 (issue #17's field report).

The worker's processor in process (no Kafka) on an event clock: the CDNOW history with the example
rules and a model every 2,000 events, one sweep of every customer, then the 2031 purchase (which
the engine dead-letters as too far in the future) and one more sweep. Every change after it is
one that no data explains.

    python bench/future_event.py
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent

from models.cdnow import read_transactions
from models.config import EngineConfig
from models.pipeline import Pipeline
from monitoring.metrics import WorkerMetrics
from schemas.segment_change import SegmentChange
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings

SWEEP = "sweep"


class Outputs:
    """Keeps the changes, counts the dead letters, acknowledges everything at once."""

    def __init__(self) -> None:
        self.got: list[SegmentChange] = []
        self.dead = 0

    async def changes(self, changes: list[SegmentChange]) -> None:
        self.got.extend(changes)

    async def dead_letter(self, message: InMessage, source_type: str, problems: list) -> None:
        self.dead += 1

    async def forward(self, message: InMessage, partition: int) -> None: ...

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}

    async def flush(self) -> None: ...


async def run() -> None:
    purchases = Settings().topics.input_topics["purchase"]
    routes = {name: etype for etype, name in Settings().topics.input_topics.items()} | {SWEEP: "reevaluate"}
    config = EngineConfig.model_validate({"segmentation": {"rules_file": str(ROOT / "examples/segments.toml"),
                                                           "train_every_events": 2000}})
    table: dict[bytes, bytes] = {}
    out = Outputs()
    processor = CustomerProcessor(Pipeline(config), table, out, WorkerClock("event"), SampleForwarder(),
                                  WorkerMetrics(), routes)
    msgs = [InMessage(purchases, 0, i, e["customer_id"].encode(), orjson.dumps(e))
            for i, e in enumerate(read_transactions())]
    for start in range(0, len(msgs), 500):
        await processor.handle_batch(msgs[start:start + 500])
    sweep = orjson.dumps({"customers": sorted(k.decode() for k in table)})
    await processor.handle_batch([InMessage(SWEEP, 0, 0, None, sweep)])
    before, clock = len(out.got), processor.clock.now()
    future = {"type": "purchase", "event_id": "x2031", "customer_id": "cdnow-0001",
              "timestamp": "2031-01-01T00:00:00Z", "amount": 10.0}
    await processor.handle_batch([InMessage(purchases, 0, len(msgs), b"cdnow-0001", orjson.dumps(future))])
    await processor.handle_batch([InMessage(SWEEP, 0, 1, None, sweep)])
    new = out.got[before:]
    print(f"dead letters: {out.dead}; event clock {clock:.0f} -> {processor.clock.now():.0f}; "
          f"changes after the 2031 purchase and one sweep: {len(new)} for {len({c.customer_id for c in new})} "
          f"customers {dict(Counter(c.reason.code.value for c in new))}")


if __name__ == "__main__":
    asyncio.run(run())
