"""A research prototype for #20: faust's consumer group, offsets and commits, without faust's
per-message delivery. Nothing of the worker uses it yet; :mod:`streams.harnesses.faust_batch_floor`
measures it.

**What faust does per message** (faust-streaming 0.15.3). ``Consumer._drain_messages``
(``transport/consumer.py``) iterates ``Consumer.getmany``, an async generator that yields one
``ConsumerMessage`` per record (``_to_message``; ``monitor.track_tp_end_offset``); for each it
awaits ``wait_first(callback(message), suspend_flow.wait())``: two tasks and a wait per message.
``callback`` is the conductor's closure (``transport/conductor.py`` ``ConductorCompiler.build``):
it acquires flow control, waits for the producer buffer, decodes the message into an ``Event`` and
puts it on each subscribing stream's queue. The stream's iterator (``streams.py`` ``_py_aiter`` /
the Cython ``_CStreamIterator``) sleeps once, tracks the message (``_unacked_messages``), builds
the sensors' state, runs the processors (``take_events``' ``add_to_buffer``), and ``take_events``
acks each event on the way out (``Stream.ack`` -> ``Consumer.ack`` under ``ack_lock``).

**What this module does instead.** :class:`BatchConsumer` overrides the drain loop (faust's
``Fetcher._fetcher`` calls ``consumer._drain_messages(self)``): it calls faust's own
``_wait_next_records`` (the same consumer-thread hand-over, the same active/paused partitions),
and for a topic routed to a :class:`BatchChannel` puts the aiokafka records of one partition on
the channel as *one* :class:`RawBatch` (offset order, as fetched). Every other topic (tables'
changelogs, other agents) goes through faust's per-message path unchanged. The agent iterates the
channel; each batch is tracked as one message in ``_unacked_messages`` (so faust's ``wait_empty``
waits for it on rebalance and shutdown) and acknowledged in bulk: its offsets go into faust's
``_acked``/``_acked_index`` exactly as ``Consumer.ack`` puts them one by one, so faust's own
``_new_offset`` / ``commit`` compute and commit the offsets.

Private internals touched: ``Consumer._drain_messages`` (overridden), ``_wait_next_records``,
``_read_offset``, ``_add_gap``, ``_buffered_partitions``, ``_n_acked``, ``_commit_every``,
``_acked``, ``_acked_index``, ``_committed_offset``, ``_unacked_messages``, ``_waiting_for_ack``,
``_to_message``, ``_stopped`` (mode). Can go when faust-streaming delivers batches of messages to
an agent (there is no such API in 0.15.3: ``take``/``take_events`` batch after the per-message path).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Sequence

from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from streams.fixups.kafka_transport import WorkerConsumer, WorkerTransport

__all__ = ["BatchChannel", "BatchConsumer", "BatchTransport", "RawBatch", "use_batch_delivery"]


@dataclass(eq=False)
class RawBatch:
    """Records of one partition, in offset order, as aiokafka fetched them (``ConsumerRecord``:
    ``key``, ``value``, ``offset``, ``timestamp``, ``headers``...)."""

    tp: TP
    records: Sequence[Any]
    generation_id: int
    tracked: Any = field(default=None, repr=False)  # the one faust message standing for the batch

    def __len__(self) -> int:
        return len(self.records)


class BatchChannel:
    """Where :class:`BatchConsumer` puts the batches of the topics routed here; an agent iterates
    it (``async for batch in channel``). Acknowledged when the agent asks for the next batch:
    a batch whose processing raised is never acknowledged (faust's ``take_events`` acks it anyway)."""

    def __init__(self, app: Any, topics: Sequence[str], max_records: int, maxsize: int = 8) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self.max_records = max_records
        self.queue: asyncio.Queue[RawBatch] = asyncio.Queue(maxsize)
        self.dropped = 0  # batches of an older generation, dropped unacknowledged (read again)

    async def put(self, batch: RawBatch) -> None:
        # what faust's conductor waits for before each message (ConductorCompiler.build.on_message)
        await self.app.flow_control.acquire()
        await self.app.producer.buffer.wait_until_ebb()
        await self.queue.put(batch)

    async def __aiter__(self) -> AsyncIterator[RawBatch]:
        app = self.app
        consumer: BatchConsumer = app.consumer
        get = self.queue.get
        while True:
            batch = await get()
            if batch.generation_id != app.consumer_generation_id or not app.flow_control.is_active():
                self.dropped += 1  # as faust's stream skips such messages; not acked: read again after the seek
                continue
            consumer.track_batch(batch)
            done = False
            try:
                yield batch
                done = True
            finally:
                consumer.ack_batch(batch, processed=done)


class BatchConsumer(WorkerConsumer):
    """faust's consumer with a drain loop that hands whole per-partition batches to the
    :class:`BatchChannel` of their topic (see the module doc)."""

    def track_batch(self, batch: RawBatch) -> None:
        """One faust message stands for the batch in ``_unacked_messages`` (what
        ``Consumer.track_message`` does per message): ``wait_empty`` waits for it."""
        message = self._to_message(batch.tp, batch.records[-1])
        message.tracked = True
        batch.tracked = message
        self._unacked_messages.add(message)

    def ack_batch(self, batch: RawBatch, processed: bool = True) -> int:
        """``Consumer.ack`` for every message of the batch, in bulk. ``processed=False``: the batch
        only stops being waited for (nothing is committed for it). Returns the offsets acked."""
        tp = batch.tp
        with ack_lock:
            try:
                message = batch.tracked
                if message is not None:
                    message.acked = True
                    self._unacked_messages.discard(message)
                if not processed or batch.generation_id != self.app.consumer_generation_id:
                    return 0  # a rebalance since: faust seeks back to the committed offset, read again
                if not self.app.topics.acks_enabled_for(tp.topic):
                    return 0
                records = batch.records
                first, last = records[0].offset, records[-1].offset
                offsets: Sequence[int]
                if last - first + 1 == len(records):
                    offsets = range(first, last + 1)
                else:
                    offsets = [r.offset for r in records]
                committed = self._committed_offset[tp]  # Kafka's: the next offset to read
                if committed is not None and first < committed:
                    offsets = [o for o in offsets if o >= committed]
                index = self._acked_index[tp]
                if not index.isdisjoint(offsets):
                    offsets = [o for o in offsets if o not in index]
                index.update(offsets)
                self._acked[tp].extend(offsets)
                self._n_acked += len(offsets)
                return len(offsets)
            finally:
                notify(self._waiting_for_ack)

    async def _drain_messages(self, fetcher: Any) -> None:  # faust: transport/consumer.py Consumer._drain_messages
        routes: dict[str, BatchChannel] = getattr(self.transport, "batch_routes", {})
        if not routes:
            await super()._drain_messages(fetcher)
            return
        app = self.app
        callback = self.callback
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        read_offset = self._read_offset
        acks_enabled_for = app.topics.acks_enabled_for
        to_message = self._to_message
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                records, active = await self._wait_next_records(1.0)  # faust's getmany, minus its per-record generator
                await self.sleep(0)
                if records is None or self.should_stop:
                    continue
                if not self.flow_active:  # as faust's getmany: records fetched across a stop are read again
                    try:
                        await self.perform_seek()
                    except Exception as exc:
                        self.log.warning(f"exception performing seek when flow not active {exc}")
                    continue
                generation_id = app.consumer_generation_id
                for tp, recs in records.items():
                    if not self.flow_active or app.consumer_generation_id != generation_id:
                        break  # as faust's getmany: the rest is read again after the rebalance's seek
                    if active is not None and tp not in active and tp not in self._buffered_partitions:
                        continue
                    if not recs:
                        continue
                    app.monitor.track_tp_end_offset(tp, self.highwater(tp))  # faust: once per record
                    r_offset = read_offset[tp]
                    # faust's "DROPPED MESSAGE": below the read offset. Not at it: after a seek faust's
                    # read offset is the committed one, the *next* to read (``perform_seek``, ``seek``)
                    if r_offset is not None and recs[0].offset < r_offset:
                        recs = [r for r in recs if r.offset >= r_offset]
                        if not recs:
                            continue
                    channel = routes.get(tp.topic)
                    if channel is None:
                        await self._deliver_each(tp, recs, callback, to_message, acks_enabled_for)
                        continue
                    if acks_enabled_for(tp.topic):
                        await self._note_gaps(tp, r_offset, recs)
                    commit_every = self._commit_every
                    if commit_every is not None and self._n_acked >= commit_every:
                        self._n_acked = 0
                        await self.commit()
                    step = channel.max_records
                    for start in range(0, len(recs), step):
                        chunk = recs[start:start + step] if len(recs) > step else recs
                        batch = RawBatch(tp, chunk, generation_id)
                        await self.wait_first(channel.put(batch), self.suspend_flow.wait())
                        read_offset[tp] = chunk[-1].offset
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _note_gaps(self, tp: TP, r_offset: int | None, recs: Sequence[Any]) -> None:
        """faust's gap bookkeeping (offsets that hold no message), once per jump instead of per
        record: before the batch, and inside it when its offsets are not contiguous."""
        first = recs[0].offset
        if r_offset and first - r_offset > 1:
            await self._add_gap(tp, r_offset + 1, first)
        if recs[-1].offset - first + 1 != len(recs):
            prev = first
            for r in recs:
                if r.offset - prev > 1:
                    await self._add_gap(tp, prev + 1, r.offset)
                prev = r.offset

    async def _deliver_each(self, tp: TP, recs: Sequence[Any], callback: Any, to_message: Any,
                            acks_enabled_for: Any) -> None:
        """faust's own per-message delivery (``_drain_messages``' loop body) for the other topics."""
        read_offset = self._read_offset
        commit_every = self._commit_every
        for n, record in enumerate(recs):
            if n and not n % 100:
                await asyncio.sleep(0)
            message = to_message(tp, record)
            offset = message.offset
            r_offset = read_offset[tp]
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and acks_enabled_for(message.topic):
                    await self._add_gap(tp, r_offset + 1, offset)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                await self.wait_first(callback(message), self.suspend_flow.wait())
                read_offset[tp] = offset


class BatchTransport(WorkerTransport):
    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_routes: dict[str, BatchChannel] = {}


def use_batch_delivery(app: Any, topic: Any, max_records: int, maxsize: int = 8) -> BatchChannel:
    """Route ``topic``'s messages to a :class:`BatchChannel` (call before the app starts, after
    :func:`streams.app.faust_app`). The agent must still be declared on ``topic`` (``@app.agent``),
    so that faust subscribes to it, assigns its partitions and acks and commits them."""
    old = app.transport
    if not isinstance(old, BatchTransport):
        transport = BatchTransport(app.conf.broker_consumer, app, fetch_min_bytes=old.fetch_min_bytes,
                                   fetch_max_wait_ms=old.fetch_max_wait_ms)
        app.transport = transport
    channel = BatchChannel(app, list(topic.topics), max_records, maxsize)
    for name in channel.topics:
        app.transport.batch_routes[name] = channel
    return channel
