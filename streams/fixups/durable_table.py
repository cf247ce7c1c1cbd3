"""faust's table, keeping hold of its changelog writes until the worker has seen them acknowledged,
and writing many keys at once in whole record batches.

**Acknowledged writes.** A table write in faust is a changelog message queued in the producer's
buffer; the future that tells when the broker has it is dropped. faust flushes the producer before
it commits offsets, but its buffer flush (faust-streaming 0.15.3, ``ProducerBuffer.flush_atmost``)
returns as soon as no message left the buffer for 100 ms, with messages still queued: under load
the offsets of a batch could be committed before its states reached the changelog, and a crash
then would lose the batch's events for good (found by reading faust while chasing a crash-test
failure that turned out to have another cause, see :mod:`streams.fixups.kafka_transport`; the
test of this one makes faust's flush give up on purpose). This table keeps every changelog write's
future; :meth:`DurableTable.take_pending_writes` hands them over, and the worker awaits them before
a batch counts as processed (``streams.agents.KafkaOutputs.flush``), so whatever faust commits
afterwards is already in the changelog.

**Bulk writes** (issue #20). faust writes a key as one message through its producer buffer: a
``FutureMessage``, a trip through the buffer's queue and its ``flush_atmost`` (an
``asyncio.wait_for`` per message), ``Topic.publish_message`` and aiokafka's ``send``, then a
callback per message. Measured on the worker under load, writing the states that wait for a
commit (write-behind) cost 180-310 µs per key, 120-520 ms per commit with the event loop
unable to process events, the largest stall behind the p99 latency of a live event
(docs/benchmarks.md). :meth:`DurableTable.stage` updates the store exactly as a faust write
does (in the key's current-event context: the changelog partition, and RocksDB's database of
it) and keeps the changelog record; :meth:`DurableTable.send_staged` sends the records of each
changelog partition as whole aiokafka record batches (``send_batch``), in the order staged, and
keeps their futures with the others. The changelog holds the same records as faust would write
(key and value bytes: the table's codecs are 'raw'), and each acknowledged batch moves the
store's persisted offset as faust's ``_on_changelog_sent`` does (RocksDB reads it at a restart).

Private internals touched: the aiokafka producer under faust's (``Producer._producer``), its
accumulator's compression setting, aiokafka's ``BatchBuilder`` (``create_batch`` has no size
argument, and a 16 KiB batch holds about 16 states), ``Table.partition_for_key`` reading
faust's current event. Can go when faust-streaming writes table changes in batches, or gives a
table write's future and a bulk ``send_changelog``.
"""

from __future__ import annotations

from typing import Any

import faust
from aiokafka.producer.message_accumulator import BatchBuilder

__all__ = ["DurableTable"]

#: Largest record batch of staged writes, in bytes (faust's producer allows requests of 1 MB).
STAGED_BATCH_BYTES = 512 * 1024


class DurableTable(faust.Table):
    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.__dict__.setdefault("_pending_writes", []).append(fut)
        return fut

    def take_pending_writes(self) -> list[Any]:
        """The futures of the changelog writes made since the last call."""
        pending = self.__dict__.get("_pending_writes") or []
        self.__dict__["_pending_writes"] = []
        return pending

    # ---- bulk writes -------------------------------------------------------------------------

    def stage(self, key: bytes, value: bytes | None) -> None:
        """``table[key] = value`` (``None``: ``del table[key]``, if present) with the changelog
        record kept for :meth:`send_staged`. Call it in the key's current-event context, as a faust
        write (streams.fixups.current_event)."""
        partition = self.partition_for_key(key)  # the current event's partition, as faust's own write
        if partition is None:  # only a table with use_partitioner=True, which this worker never makes
            raise TypeError("a staged write needs the changelog partition of the current event")
        if value is None:
            if key not in self.data:
                return
            del self.data[key]
        else:
            self.data[key] = value
        staged: dict[int, list[tuple[bytes, bytes | None]]] = self.__dict__.setdefault("_staged", {})
        staged.setdefault(partition, []).append((key, value))

    def staged(self) -> int:
        """Changelog records staged and not yet sent."""
        return sum(len(records) for records in self.__dict__.get("_staged", {}).values())

    async def send_staged(self) -> int:
        """Send every staged changelog record, a few record batches per partition; their futures
        join :meth:`take_pending_writes`. The number of records sent."""
        staged: dict[int, list[tuple[bytes, bytes | None]]] = self.__dict__.get("_staged") or {}
        if not staged:
            return 0
        self.__dict__["_staged"] = {}
        client = self.app.producer._producer  # type: ignore[attr-defined]  # faust's aiokafka driver
        topic = self.changelog_topic.get_topic_name()
        pending = self.__dict__.setdefault("_pending_writes", [])
        sent = 0
        for partition, records in staged.items():
            batch = self._new_batch(client)
            for key, value in records:
                if batch.append(key=key, value=value, timestamp=None) is None:  # full: send it, start another
                    pending.append(await self._send_batch(client, batch, topic, partition))
                    batch = self._new_batch(client)
                    batch.append(key=key, value=value, timestamp=None)  # an empty batch takes any record
                sent += 1
            pending.append(await self._send_batch(client, batch, topic, partition))
        return sent

    @staticmethod
    def _new_batch(client: Any) -> BatchBuilder:
        return BatchBuilder(STAGED_BATCH_BYTES, client._message_accumulator._compression_type)

    async def _send_batch(self, client: Any, batch: BatchBuilder, topic: str, partition: int) -> Any:
        count = batch.record_count()
        fut = await client.send_batch(batch, topic, partition=partition)
        data = self.data

        def persisted(done: Any) -> None:  # what faust's _on_changelog_sent does for each message
            if not done.cancelled() and done.exception() is None:
                meta = done.result()
                data.set_persisted_offset(meta.topic_partition, meta.offset + count - 1)

        fut.add_done_callback(persisted)
        return fut
