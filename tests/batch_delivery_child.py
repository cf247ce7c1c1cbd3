"""Child process of tests/test_batch_delivery.py: a faust app whose agent takes the messages of one
topic through :mod:`streams.fixups.batch_delivery`, records every (partition, offset) delivered,
and once it has EXPECTED of them (and LINGER_S more seconds to catch anything delivered twice)
commits through faust's own ``Consumer.commit`` and writes what it saw::

    python -m tests.batch_delivery_child TOPIC EXPECTED OUT_FILE LINGER_S

EXPECTED 0: it writes what it saw to OUT_FILE every half second, and commits, writes and exits
once OUT_FILE.stop exists (several members of one group, a rebalance in between).

``BATCH_CHILD_LOOKUP_DELAY_S``: the consumer's lookups of committed and earliest offsets answer
that much later (a slow broker). ``BATCH_CHILD_SLOW_S``: the agent takes that long per batch (batches queue up).
``BATCH_CHILD_PERFORM_SEEK_AFTER``: after that many batches the agent has faust seek every
partition to its committed offset (``perform_seek``, what a rebalance and every recovery do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path
from typing import Any

import orjson

from streams.settings import Settings


def main(topic: str, expected: int, out: Path, linger_s: float) -> None:
    settings = Settings()
    import faust

    from streams.app import faust_app
    from streams.fixups.batch_delivery import BatchConsumer, use_batch_delivery

    delay_s = float(os.environ.get("BATCH_CHILD_LOOKUP_DELAY_S", "0"))
    if delay_s:
        earliest_offsets, seek_to_committed = BatchConsumer.earliest_offsets, BatchConsumer.seek_to_committed

        async def slow_earliest_offsets(self: BatchConsumer, *partitions: Any) -> Any:
            await asyncio.sleep(delay_s)
            return await earliest_offsets(self, *partitions)

        async def slow_seek_to_committed(self: BatchConsumer) -> Any:
            await asyncio.sleep(delay_s)
            return await seek_to_committed(self)

        BatchConsumer.earliest_offsets = slow_earliest_offsets  # type: ignore[method-assign]
        BatchConsumer.seek_to_committed = slow_seek_to_committed  # type: ignore[method-assign]

    app = faust_app(settings, web_enabled=False)
    source = app.topic(topic, key_type=bytes, value_type=bytes)
    channel = use_batch_delivery(app, source, settings.worker.batch_max)
    delivered: list[tuple[int, int]] = []
    sizes: list[int] = []
    batches: list[tuple[int, int, int, int]] = []  # (partition, first offset, last offset, generation)

    async def finish() -> None:
        await asyncio.sleep(linger_s)  # the agent keeps recording meanwhile
        consumer = app.consumer
        assert isinstance(consumer, BatchConsumer), type(consumer)
        committed = await consumer.commit()
        out.write_bytes(orjson.dumps({"delivered": delivered, "sizes": sizes, "committed": committed,
                                      "dropped": channel.dropped, "batches": batches}))
        os._exit(0)

    @app.timer(0.5)
    async def dump() -> None:
        if expected:
            return
        if out.with_suffix(".stop").exists():
            await finish_now()
        tmp = out.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps({"delivered": delivered, "sizes": sizes, "dropped": channel.dropped, "batches": batches}))
        tmp.replace(out.with_suffix(".partial"))

    async def finish_now() -> None:
        committed = await app.consumer.commit()
        out.write_bytes(orjson.dumps({"delivered": delivered, "sizes": sizes, "committed": committed,
                                      "dropped": channel.dropped, "batches": batches}))
        os._exit(0)

    slow_s = float(os.environ.get("BATCH_CHILD_SLOW_S", "0"))
    seek_after = int(os.environ.get("BATCH_CHILD_PERFORM_SEEK_AFTER", "0"))
    seeking: list[asyncio.Future] = []

    @app.agent(source, name="test.batch_delivery", concurrency=1)
    async def record(stream: faust.StreamT) -> None:
        finishing = None
        async for batch in channel:
            if slow_s:
                await asyncio.sleep(slow_s)
            if seek_after and len(batches) == seek_after and not seeking:
                seeking.append(asyncio.ensure_future(app.consumer.perform_seek()))
            assert all(r.partition == batch.tp.partition for r in batch.records)
            assert all(a.offset < b.offset for a, b in zip(batch.records, batch.records[1:]))
            delivered.extend((r.partition, r.offset) for r in batch.records)
            sizes.append(len(batch))
            batches.append((batch.tp.partition, batch.records[0].offset, batch.records[-1].offset,
                            batch.generation_id))
            if expected and finishing is None and len(delivered) >= expected:
                finishing = asyncio.ensure_future(finish())

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), float(sys.argv[4]))
