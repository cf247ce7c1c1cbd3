"""faust's aiokafka transport with the worker's consumer: fetch batching under our control, and
no commit past an offset the worker has not processed.

**Fetch windows.** faust builds its aiokafka consumer with ``fetch_min_bytes=1``: the broker
answers a fetch as soon as one message is there. Under a steady live stream that is a fetch round
trip for every few messages, and aiokafka encodes and decodes each request and response in Python,
for every partition the worker owns. Measured on the worker at 100-300 events/s, that made a live
event cost ten times its backlog cost. With ``fetch_min_bytes`` raised, the broker holds a fetch
until that much has arrived or ``fetch_max_wait_ms`` passed. faust has no setting for either, so
the consumer thread sets both before the consumer starts (64 KiB / 10 ms by default; faust's own
are 1 B / 1500 ms). With them on, faust dropped fetched messages more often in the crash test
(6-21 holes a run instead of 0-9), which the delivery guard re-reads; before the guard, that
was where the crash test's losses came from.

**Holes.** faust-streaming 0.15.3 can drop a fetched message (see :mod:`streams.delivery_guard`).
When it then sees the jump in offsets it records a "gap" and counts the gap as acknowledged
(``Consumer._add_gap``), and its ``_new_offset`` commits past a missing offset that sits right at
the committed one (it takes the committed offset for the last one processed, where Kafka's is the
next one to read). Either way a message the worker never processed is committed, and lost. For the
topics the worker guards (:attr:`WorkerConsumer.guarded_topics`: the customer agent's), a jump is
not a gap but a hole the worker re-reads, and nothing is committed past an offset not
acknowledged, except offsets Kafka confirms hold no message: deleted by retention, transaction
markers, compacted records (:meth:`WorkerConsumer.skip_deleted`).

**Seeks in the consumer's thread.** faust runs the aiokafka consumer in a thread of its own, but
its ``seek`` calls aiokafka's ``seek`` straight from the caller's thread, where it deletes the
partition's fetched records while the consumer thread may be draining them: under load the
drain raised ``KeyError(TopicPartition(...))`` in aiokafka's ``fetched_records``, faust crashed
the worker, and the batch in flight failed with "Producer not Running" (seen by a new user's
crash test with a CRC32 producer, whose forwards make the delivery guard seek more often). The
worker's seeks go through faust's own ``call_thread``, like its commits (:meth:`WorkerConsumer._seek`).
Can go when faust-streaming seeks in its consumer thread.

**Writes before commits.** With write-behind (:mod:`streams.write_behind`) the customer states a
batch saved reach the table only at the next commit: :attr:`WorkerConsumer.before_commit` is
awaited before every commit of offsets (``_commit_tps``: the commit timer's, and the one
``wait_empty`` makes on a rebalance and at shutdown). It writes the waiting states and awaits
their acknowledgement, so no offset is committed before the states its events produced are
durable. Can go when faust lets a table be written behind with that guarantee (it has no hook
before a commit in 0.15.3).
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ack_lock


class WorkerConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    async def seek_here(self, tp: TP, offset: int) -> None:
        """``seek``, run by the consumer's own thread (see the module doc)."""
        self._ensure_consumer().seek(tp, offset)

    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_min_bytes = transport.fetch_min_bytes
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class WorkerConsumer(faust_aiokafka.Consumer):
    guarded_topics: frozenset[str] = frozenset()  # set by the agent that guards them
    before_commit: Callable[[], Awaitable[None]] | None = None  # awaited before offsets are committed

    async def _commit_tps(self, tps: Iterable[TP], start_new_transaction: bool) -> bool:
        if self.before_commit is not None:
            await self.before_commit()  # raises if a write failed: nothing is committed then
        # The committable offsets are computed at once, before any await: nothing is acknowledged
        # between the hook's writes and them.
        return await super()._commit_tps(tps, start_new_transaction)

    def _new_consumer_thread(self) -> WorkerConsumerThread:
        return WorkerConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _seek(self, partition: TP, offset: int) -> None:
        await self._thread.call_thread(self._thread.seek_here, partition, offset)  # type: ignore[attr-defined]

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        if tp.topic in self.guarded_topics:
            return  # a hole the worker re-reads, never "acknowledged"
        await super()._add_gap(tp, offset_from, offset_to)

    def _new_offset(self, tp: TP) -> int | None:
        if tp.topic in self.guarded_topics:
            committed = self._committed_offset[tp]
            acked = self._acked[tp]
            if committed is not None and acked:
                gaps = self._gap[tp]  # only offsets known to hold no message (skip_deleted)
                first = min(acked + [g.begin for g in gaps])
                if first > committed:
                    return None  # the committed offset itself is not processed yet
        return super()._new_offset(tp)

    async def skip_deleted(self, tp: TP, offset_from: int, offset_to: int) -> None:
        """Offsets ``offset_from``..``offset_to`` hold no message any more (retention, compaction,
        transaction markers): commit past them. Not faust's ``_add_gap``, which starts a gap one
        past the committed offset (it takes the committed offset for the last one processed)."""
        if offset_from <= offset_to:
            gaps = self._gap[tp]
            gaps.addi(offset_from, offset_to + 1)  # intervaltree: the end is excluded
            gaps.merge_overlaps()

    def hold(self, message: Any) -> None:
        """A message that will be fetched again: it must never count as processed (acknowledged),
        nor be waited for on shutdown."""
        with ack_lock:
            message.acked = True
            self._unacked_messages.discard(message)


class WorkerTransport(faust_aiokafka.Transport):
    Consumer = WorkerConsumer

    def __init__(self, *args: Any, fetch_min_bytes: int, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms


def use_worker_transport(app: Any, fetch_min_bytes: int, fetch_max_wait_ms: int) -> WorkerTransport:
    """Make ``app`` consume through :class:`WorkerTransport` (before it starts)."""
    transport = WorkerTransport(app.conf.broker_consumer, app, fetch_min_bytes=fetch_min_bytes,
                                fetch_max_wait_ms=fetch_max_wait_ms)
    app.transport = transport
    return transport
