"""Consumer lag of the group on this worker's input partitions: end offset minus committed offset.

faust has no lag metric. The committed offsets are the group's (an admin request), the end offsets
come from a plain consumer outside the group; both are cheap metadata requests, done every few
seconds by a timer.
"""

from __future__ import annotations

import logging

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

log = logging.getLogger("segstream.lag")


class LagMonitor:
    def __init__(self, bootstrap: str, group_id: str, **client_kwargs: object):
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.client_kwargs = client_kwargs
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def measure(self, topics: list[str], partitions: set[int]) -> dict[tuple[str, int], int]:
        """Lag per (topic, partition) for the given partitions of ``topics``."""
        if not partitions:
            return {}
        await self._start()
        assert self._admin is not None and self._consumer is not None
        tps = [TopicPartition(t, p) for t in topics for p in sorted(partitions)]
        committed = await self._admin.list_consumer_group_offsets(self.group_id, partitions=tps)
        ends = await self._consumer.end_offsets(tps)
        lags = {}
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lags[(tp.topic, tp.partition)] = max(ends.get(tp, 0) - done, 0)
        return lags

    async def _start(self) -> None:
        if self._admin is None:
            self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.client_kwargs)
            await self._admin.start()
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                              enable_auto_commit=False, **self.client_kwargs)
            await self._consumer.start()

    async def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    await (client.stop() if isinstance(client, AIOKafkaConsumer) else client.close())
                except Exception:  # closing on shutdown: nothing left to do about it
                    log.debug("closing a lag client failed", exc_info=True)
        self._admin = self._consumer = None
