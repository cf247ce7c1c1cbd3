"""Every worker follows the compacted model-snapshots topic with a plain consumer (no group, so
each worker reads every snapshot), starting from the latest one. faust's GlobalTable would do
the same but has open recovery-loop and missing-key reports; a single-partition topic read by
hand is simpler and visible.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from models.snapshot import ModelSnapshot

log = logging.getLogger("segstream.model")

SNAPSHOT_KEY = b"model"


class SnapshotListener:
    def __init__(self, bootstrap: str, topic: str,
                 on_snapshot: Callable[[ModelSnapshot], None] | None = None, **client_kwargs: object):
        self.bootstrap = bootstrap
        self.topic = topic
        self.on_snapshot = on_snapshot
        self.client_kwargs = client_kwargs
        self.latest: ModelSnapshot | None = None
        self.started = asyncio.Event()  # caught up with the topic as it was at start

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **self.client_kwargs)
        await consumer.start()
        try:
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            end = (await consumer.end_offsets([tp]))[tp]
            # The last record is the latest model (compaction never removes the newest).
            consumer.seek(tp, max(end - 1, 0))
            if end == 0:
                self.started.set()
            while True:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                for record in batch.get(tp, []):
                    self._install(record.value, record.offset)
                    if record.offset >= end - 1:
                        self.started.set()
        finally:
            await consumer.stop()

    def _install(self, raw: bytes | None, offset: int) -> None:
        if raw is None:
            return
        try:
            snapshot = ModelSnapshot.from_bytes(raw)
        except (ValueError, KeyError, TypeError) as exc:
            log.error("model snapshot at offset %d is unreadable, ignored: %s", offset, exc)
            return
        if self.latest is None or snapshot.version >= self.latest.version:
            self.latest = snapshot
            if self.on_snapshot is not None:
                self.on_snapshot(snapshot)
