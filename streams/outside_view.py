"""The group's committed offsets and the partitions' contents, read by Kafka clients of the worker's
own, outside faust's consumer.

faust's consumer runs in a thread of its own, which is busy (or waiting on the event loop) during
a rebalance: a call into it from an agent can then wait for good (a restarted worker's agent hung
that way asking it for a committed offset). These clients answer whatever faust is doing: an
admin client for the group's committed offsets, and a plain consumer outside the group for end
offsets and for what a partition holds at an offset. Started on first use, closed on error (the
next call starts them again) and on shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

log = logging.getLogger("segstream.worker")


class OutsideView:
    RETRIES = 6  # retriable errors over about 4 s
    def __init__(self, bootstrap: str, group_id: str, isolation_level: str = "read_uncommitted",
                 **client_kwargs: Any):
        """``isolation_level``: the worker consumer's, so that an offset looks the same to both."""
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.isolation_level = isolation_level
        self.client_kwargs = client_kwargs
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reading = asyncio.Lock()  # one partition read at a time (they assign the consumer)
        self._starting = asyncio.Lock()  # the agent and the lag timer may ask at once

    async def committed(self, tps: Iterable[Any]) -> dict[TopicPartition, int | None]:
        """The group's committed offset (the next to read) of each of ``tps``; ``None``: none."""
        admin, _ = await self._clients()
        wanted = [TopicPartition(tp.topic, tp.partition) for tp in tps]
        for attempt in range(self.RETRIES):
            try:
                found = await admin.list_consumer_group_offsets(self.group_id, partitions=wanted)
                break
            except KafkaError as exc:  # e.g. the coordinator still loading after a broker restart
                if not exc.retriable or attempt == self.RETRIES - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))
        return {tp: (found[tp].offset if tp in found and found[tp].offset >= 0 else None) for tp in wanted}

    async def end_offsets(self, tps: Iterable[Any]) -> dict[TopicPartition, int]:
        _, consumer = await self._clients()
        return await consumer.end_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])

    async def end_offsets_by_topic(self, topics: Iterable[str], partitions: int) -> dict[str, list[int]]:
        """Each topic's end offsets, one per partition ``0..partitions-1`` (an erasure's cutoff)."""
        ends = await self.end_offsets([TopicPartition(t, p) for t in topics for p in range(partitions)])
        return {t: [ends[TopicPartition(t, p)] for p in range(partitions)] for t in topics}

    async def earliest_offsets(self, tps: Iterable[Any]) -> dict[tuple[str, int], int]:
        """The first offset still in each of ``tps``, in one request (retention deletes from the start)."""
        _, consumer = await self._clients()
        found = await consumer.beginning_offsets([TopicPartition(tp.topic, tp.partition) for tp in tps])
        return {(tp.topic, tp.partition): offset for tp, offset in found.items()}

    async def earliest_offset(self, tp: Any) -> int:
        """The first offset still in ``tp`` (retention deletes from the start)."""
        _, consumer = await self._clients()
        partition = TopicPartition(tp.topic, tp.partition)
        return (await consumer.beginning_offsets([partition]))[partition]

    PROBE_POLL_MS = 100

    async def first_offset_from(self, tp: Any, offset: int, timeout_s: float = 5.0) -> int | None:
        """The first offset at or after ``offset`` that holds a message of ``tp`` (``None``: none
        within ``timeout_s``). Offsets with no message for this isolation level (transaction
        markers, aborted transactions under ``read_committed``, compacted records) are skipped by
        Kafka itself; when only such offsets follow ``offset`` (a transactional producer's commit
        marker ends the partition), no record comes back but the fetch position moves past them,
        and that position is the answer."""
        _, consumer = await self._clients()
        partition = TopicPartition(tp.topic, tp.partition)
        deadline = time.monotonic() + timeout_s
        async with self._reading:
            consumer.assign([partition])
            consumer.seek(partition, offset)
            try:
                # In short polls: a fetch answered with markers only returns no record, and
                # waiting out the whole timeout for one made each tail of markers cost 5 s.
                while True:
                    records = await consumer.getmany(partition, timeout_ms=self.PROBE_POLL_MS, max_records=1)
                    found = records.get(partition)
                    if found:
                        return found[0].offset
                    # Moved with no record: markers only (a broker away moves nothing).
                    past = await consumer.position(partition)
                    if past > offset:
                        return past
                    if time.monotonic() >= deadline:
                        return None
            finally:
                consumer.unsubscribe()

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        async with self._starting:
            if self._admin is None:
                admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, **self.client_kwargs)
                await admin.start()
                self._admin = admin
            if self._consumer is None:
                consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                            enable_auto_commit=False, isolation_level=self.isolation_level,
                                            **self.client_kwargs)
                await consumer.start()
                self._consumer = consumer
            return self._admin, self._consumer

    async def close(self) -> None:
        for client in (self._consumer, self._admin):
            if client is not None:
                try:
                    await (client.stop() if isinstance(client, AIOKafkaConsumer) else client.close())
                except Exception:  # closing after an error or on shutdown: nothing left to do about it
                    log.debug("closing a Kafka client failed", exc_info=True)
        self._admin = self._consumer = None
