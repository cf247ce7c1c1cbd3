"""faust's consumer group, offsets and commits without faust's per-message delivery (#20): the
customer agent gets each partition's fetched records as whole batches, in offset order *by
construction* (``worker.delivery = "batch"``; :mod:`streams.agents`).

**What faust does per message** (faust-streaming 0.15.3). ``Consumer._drain_messages``
(``transport/consumer.py``) iterates ``Consumer.getmany``, an async generator that yields one
``ConsumerMessage`` per record (``_to_message``; ``monitor.track_tp_end_offset``); for each it
awaits ``wait_first(callback(message), suspend_flow.wait())``: two tasks and a wait per message.
``callback`` is the conductor's closure (``transport/conductor.py`` ``ConductorCompiler.build``):
it acquires flow control, waits for the producer buffer, decodes the message into an ``Event`` and
puts it on each subscribing stream's queue. The stream's iterator (``streams.py`` ``_py_aiter``)
tracks the message, runs the processors (``take_events``) and acks each event on the way out.

**Where faust loses messages** (the holes :mod:`streams.delivery_guard` re-reads, and the
prototype's rebalance failures). Read from ``transport/consumer.py``:

* ``_drain_messages`` sets the read offset after ``wait_first(callback(message),
  suspend_flow.wait())`` whichever of the two won (``set_read_offset(tp, offset)`` right after
  the ``wait_first``): a message cut off by ``stop_flow`` still moves the read offset. When that
  happens after the rebalance's ``perform_seek`` (``tables/recovery.py`` ``_resume_streams``:
  ``perform_seek`` then ``resume_flow``; any await in the loop, e.g. ``commit()`` on
  ``commit_every``, lets a whole revoke/assign pass), the re-fetched messages below it are
  "DROPPED MESSAGE ROFF" for good. The prototype copied this (``read_offset[tp] =
  chunk[-1].offset`` after the ``wait_first``).
* ``getmany`` stops at a generation change or a stopped flow *after* aiokafka handed over the
  records (aiokafka's position is past them); the stream drops messages of an older generation
  (``streams.py``: ``message.generation_id != self.app.consumer_generation_id``). Only a later
  seek brings them back; a seek that came *before* the drop (or none at all: a partition skipped
  as not active) leaves a hole, which faust then commits past (``_add_gap``; ``_new_offset`` with
  a hole right at the committed offset).
* With the read offset clobbered, the offsets delivered before the rebalance but not committed
  (faust pops ``_acked`` of the revoked partitions in ``on_partitions_revoked`` before the
  commit of ``wait_empty``) are never delivered again: ``_acked`` keeps a hole at its head and
  ``_new_offset`` returns ``None`` for good (``min(acked) - committed_offset > 1``). That is
  the prototype's "committed offsets end short of the end offsets" with every message seen.

**The construction.** Per partition the consumer keeps the next offset to deliver
(``_next_offset``) and a seek *epoch*, bumped before and after every seek (faust's ``seek`` and
``perform_seek``, so also every rebalance and every seek of the worker) and on every revocation
and assignment. A fetch is delivered only if no seek happened since it was started; each chunk is
delivered only if it was really put on the channel (not cut off by ``suspend_flow``) and no seek
happened meanwhile; only then does the next offset move. Fetched records that are not delivered
are read again: after a rebalance faust's ``perform_seek`` (which always precedes
``resume_flow``) seeks to the committed offsets; otherwise the drain loop seeks the partition
back to its next offset itself. A partition has a next offset (a start) only once ``perform_seek``
has sought it to its committed offset or, never committed, to its earliest one, set in the same
step as its epoch moves on: before that nothing of it is delivered, and a fetch only has its
position put back. (The seek to the earliest offset used to come after that step, behind a lookup
on the broker, and a fetch meanwhile was delivered from wherever it stood: past the batches the
seek had just dropped, read before them. With write-behind the crash test lost the events of 17
customers that way: docs/reliability.md.) The agent's side drops a queued batch of an older generation or
epoch (a seek since: read again from the seek's offset). So each partition reaches the agent as
a sequence of batches in offset order, each starting where the previous one ended, or at the
offset of the latest seek. Offsets aiokafka skips (transaction markers, aborted or compacted
records, retention after a seek) hold no message: they are gaps the commit may pass
(:meth:`streams.fixups.kafka_transport.WorkerConsumer.skip_deleted`), nothing else is.

Batches are acknowledged in bulk: the processed offsets go into faust's ``_acked`` /
``_acked_index`` exactly as ``Consumer.ack`` puts them one by one, so faust's own ``_new_offset``
and ``commit`` compute and commit the offsets. One faust message per batch stands in
``_unacked_messages``, so faust's ``wait_empty`` waits for the batch in processing on a
rebalance and at shutdown.

Private internals touched: ``Consumer._drain_messages`` (overridden), ``_wait_next_records``,
``_read_offset``, ``_buffered_partitions``, ``_n_acked``, ``_commit_every``, ``_acked``,
``_acked_index``, ``_committed_offset``, ``_unacked_messages``, ``_waiting_for_ack``,
``_to_message``, ``_stopped`` (mode). Can go when faust-streaming delivers batches of messages to
an agent (there is no such API in 0.15.3: ``take``/``take_events`` batch after the per-message
path) and stops moving its read offset for a message it did not deliver.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Iterable, Iterator, Sequence

import faust
from faust.streams import _current_event as _faust_current_event  # what faust's tables read
from faust.transport.consumer import CONSUMER_FETCHING
from faust.types import TP
from faust.types.tuples import ack_lock
from mode.utils.futures import notify

from schemas.errors import SetupError
from streams.fixups.kafka_transport import WorkerConsumer, WorkerTransport

__all__ = ["BatchChannel", "BatchConsumer", "BatchTransport", "RawBatch", "record_is_current",
           "use_batch_delivery"]


@dataclass(eq=False)
class RawBatch:
    """Records of one partition, in offset order, as aiokafka fetched them (``ConsumerRecord``:
    ``key``, ``value``, ``offset``, ``timestamp``, ``headers``...)."""

    tp: TP
    records: Sequence[Any]
    generation_id: int
    epoch: int = 0  # the partition's seek epoch when it was fetched
    tracked: Any = field(default=None, repr=False)  # the one faust message standing for the batch

    def __len__(self) -> int:
        return len(self.records)


class BatchChannel:
    """Where :class:`BatchConsumer` puts the batches of the topics routed here. An agent either
    iterates it (``async for batch in channel``: acknowledged when it asks for the next one, never
    if its processing raised) or takes groups of batches (:meth:`take`) and acknowledges them
    itself (:meth:`BatchConsumer.ack_batch`)."""

    def __init__(self, app: Any, topics: Sequence[str], max_records: int, maxsize: int = 8) -> None:
        self.app = app
        self.topics = frozenset(topics)
        self.max_records = max_records
        self.queue: asyncio.Queue[RawBatch] = asyncio.Queue(maxsize)
        self.dropped = 0  # batches of an older generation or seek epoch, dropped unacknowledged (read again)

    async def put(self, batch: RawBatch) -> None:
        # what faust's conductor waits for before each message (ConductorCompiler.build.on_message)
        await self.app.flow_control.acquire()
        await self.app.producer.buffer.wait_until_ebb()
        await self.queue.put(batch)

    def _current(self, batch: RawBatch) -> bool:
        app = self.app
        if (batch.generation_id != app.consumer_generation_id or not app.flow_control.is_active()
                or not app.consumer.is_current(batch)):
            self.dropped += 1  # a seek since it was fetched: read again from the seek's offset
            return False
        return True

    async def take(self, max_records: int, within_s: float = 0.0) -> list[RawBatch]:
        """The next batches, each tracked until :meth:`BatchConsumer.ack_batch`: at least one,
        then more while fewer than ``max_records`` records are taken and either some are queued
        or ``within_s`` has not passed since the first (what faust's ``take_events`` does:
        live events come a few at a time per partition, and each batch of the processor costs a
        few round trips to the broker whatever its size)."""
        consumer: BatchConsumer = self.app.consumer
        queue = self.queue
        while True:
            batch = await queue.get()
            if self._current(batch):
                break
        consumer.track_batch(batch)
        taken, size = [batch], len(batch)
        deadline = asyncio.get_running_loop().time() + within_s
        while size < max_records:
            if queue.empty():
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                batch = queue.get_nowait()
            if self._current(batch):
                consumer.track_batch(batch)
                taken.append(batch)
                size += len(batch)
        return taken

    async def __aiter__(self) -> AsyncIterator[RawBatch]:
        consumer: BatchConsumer = self.app.consumer
        get = self.queue.get
        while True:
            batch = await get()
            if not self._current(batch):
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
    :class:`BatchChannel` of their topic, in order by construction (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._epoch: defaultdict[TP, int] = defaultdict(int)
        self._next_offset: dict[TP, int] = {}  # the next offset to deliver, where known
        self._handed: dict[TP, int] = {}  # the next offset not yet taken by the agent (<= _next_offset)
        self._jumps: dict[TP, tuple[int, int, int]] = {}  # tp -> (next offset, first fetched, times seen)
        self.jumps_read_again = 0  # fetches that started past the next offset, read again
        # ``(tp, offset) -> first offset at or after it holding a message`` (None: unknown), asked
        # outside this consumer (streams.outside_view.OutsideView.first_offset_from); set by the worker
        self.first_offset_from: Any = None

    # ---- positions -------------------------------------------------------------------------------

    def _bump(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._epoch[tp] += 1

    def is_current(self, batch: RawBatch) -> bool:
        """No seek of the batch's partition since it was fetched."""
        return self._epoch[batch.tp] == batch.epoch

    async def seek(self, partition: TP, offset: int) -> None:
        """faust's ``seek``; what was fetched or queued before it is not delivered (read again)."""
        tp = partition
        self._bump([tp])
        self._next_offset[tp] = self._handed[tp] = offset
        try:
            await super().seek(partition, offset)
        finally:
            self._bump([tp])  # a fetch started before the seek took effect is dropped too
            self._next_offset[tp] = self._handed[tp] = offset

    async def perform_seek(self) -> None:
        """faust's seek to the committed offsets (every rebalance and recovery, before
        ``resume_flow``), then the routed partitions never committed to their earliest offsets. A
        routed partition gets its start (the next offset to deliver) back only once both seeks are
        done, in the same step as the epoch moves on: nothing fetched before counts, and nothing
        fetched after is delivered from anywhere else (see :meth:`_undelivered`)."""
        before = set(self.assignment())
        self._bump(before)
        earliest: dict[TP, int] = {}
        try:
            await super().perform_seek()
            earliest = await self._seek_uncommitted_to_earliest()
        finally:
            tps = set(self.assignment()) | before
            self._bump(tps)
            for tp in tps:
                self._next_offset.pop(tp, None)
                self._handed.pop(tp, None)
            read = self._read_offset
            for tp in tps:
                offset = read.get(tp)
                if offset is not None:  # the committed offset
                    self._next_offset[tp] = self._handed[tp] = offset
            for tp, offset in earliest.items():
                self._next_offset[tp] = self._handed[tp] = offset

    async def _seek_uncommitted_to_earliest(self) -> dict[TP, int]:
        """A routed partition the group never committed: aiokafka's ``seek_to_committed`` leaves
        it where the fetch stood (it seeks only to a committed offset above 0), past whatever was
        fetched and cut off by the rebalance. Sought to its earliest offset instead, where a new
        consumer starts (``consumer_auto_offset_reset="earliest"``); what was already processed
        there is recognised by the state. Returns the offsets sought to."""
        routes = getattr(self.transport, "batch_routes", {})
        tps = [tp for tp in self.assignment() if tp.topic in routes and self._read_offset.get(tp) is None]
        if not tps:
            return {}
        earliest = await self.earliest_offsets(*tps)
        sought = {}
        for tp in tps:
            offset = earliest.get(tp)
            if offset is not None:
                await self.seek(tp, offset)
                sought[tp] = offset
        return sought

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        self._bump(revoked)
        for tp in revoked:
            self._next_offset.pop(tp, None)
            self._handed.pop(tp, None)
        await super().on_partitions_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TP], generation_id: int = 0) -> None:
        self._bump(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    # ---- acknowledgements --------------------------------------------------------------------------

    def track_batch(self, batch: RawBatch) -> None:
        """One faust message stands for the batch in ``_unacked_messages`` (what
        ``Consumer.track_message`` does per message): ``wait_empty`` waits for it."""
        self._handed[batch.tp] = batch.records[-1].offset + 1
        message = self._to_message(batch.tp, batch.records[-1])
        message.tracked = True
        batch.tracked = message
        self._unacked_messages.add(message)

    def ack_batch(self, batch: RawBatch, processed: bool = True, held: Iterable[int] = ()) -> int:
        """``Consumer.ack`` for every message of the batch, in bulk, except the offsets of
        ``held`` (not processed: they come again after a seek). ``processed=False``: the batch only
        stops being waited for (nothing is committed for it). Returns the offsets acked."""
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
                held = set(held)
                if held:
                    offsets = [o for o in offsets if o not in held]
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

    # ---- the drain loop ----------------------------------------------------------------------------

    async def _drain_messages(self, fetcher: Any) -> None:  # faust: transport/consumer.py Consumer._drain_messages
        routes: dict[str, BatchChannel] = getattr(self.transport, "batch_routes", {})
        if not routes:
            await super()._drain_messages(fetcher)
            return
        app = self.app
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        epochs = self._epoch
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                before = dict(epochs)  # a seek while the fetch is under way: its records are not delivered
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
                    if not recs:
                        continue
                    if (not self.flow_active or app.consumer_generation_id != generation_id
                            or epochs[tp] != before.get(tp, 0)
                            or (active is not None and tp not in active and tp not in self._buffered_partitions)):
                        await self._undelivered(tp, recs, generation_id)
                        continue
                    channel = routes.get(tp.topic)
                    if channel is None:
                        await self._deliver_each(tp, recs, generation_id)
                    else:
                        await self._deliver_batches(channel, tp, recs, generation_id)
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

    def _fresh(self, tp: TP, recs: Sequence[Any]) -> Sequence[Any]:
        """``recs`` from the next offset to deliver on (a fetch never starts before it, except
        after a seek past the end, where Kafka starts again from the earliest offset)."""
        expected = self._next_offset.get(tp)
        if expected is not None and recs[0].offset < expected:
            self.log.debug("fresh %s[%d]: dropping %d..%d below next %d", tp.topic, tp.partition,
                          recs[0].offset, min(recs[-1].offset, expected - 1), expected)
            return [r for r in recs if r.offset >= expected]
        return recs

    async def _undelivered(self, tp: TP, recs: Sequence[Any], generation_id: int) -> None:
        """Fetched records that are not delivered: aiokafka's position is past them, so the
        partition is sought back to the first offset the agent has not taken (the seek makes the
        channel drop the batches still queued: they are read again too). Also during a rebalance: a fetch
        that returns while ``perform_seek`` runs may hold records from the sought position, and
        the rebalance's seek is then behind it.

        A routed partition with no known start (from its assignment, or from the start of a
        ``perform_seek``, until :meth:`perform_seek` has sought it to its committed or earliest
        offset) delivers nothing, and only its position is put back where the fetch started: the
        start is never taken from a fetch. Taking it from there made holes: after a seek had
        dropped the partition's queued batches, the next fetch stood past them, and the batch
        delivered from there moved the customers' positions past events no state held yet (the
        crash test with write-behind: the re-read from the partition's start then skipped them as
        redeliveries). Other topics (faust's own delivery) are read again from the first record,
        unless the seek of a rebalance is still to come."""
        if self.should_stop or tp not in self.assignment():
            return
        offset = self._handed.get(tp, self._next_offset.get(tp))
        if offset is None and tp.topic in getattr(self.transport, "batch_routes", {}):
            try:
                await self._seek(tp, recs[0].offset)  # the position only: the start stays unknown
            except Exception as exc:  # revoked meanwhile
                self.log.warning("%s[%d]: reading again from %d failed: %r", tp.topic, tp.partition,
                                 recs[0].offset, exc)
            return
        if offset is None:
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                return
            offset = recs[0].offset
        self.log.debug("undelivered %s[%d] %d..%d: seek to %d", tp.topic, tp.partition, recs[0].offset,
                       recs[-1].offset, offset)
        try:
            await self.seek(tp, offset)
        except Exception as exc:  # revoked meanwhile: its next owner reads it from the commit
            self.log.warning("%s[%d]: reading again from %d failed: %r", tp.topic, tp.partition, offset, exc)

    async def _deliver_batches(self, channel: BatchChannel, tp: TP, recs: Sequence[Any], generation_id: int) -> None:
        recs = self._fresh(tp, recs)
        if not recs:
            return
        if not await self._no_jump(tp, recs, generation_id):
            return
        app = self.app
        self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))  # faust: once per record
        commit_every = self._commit_every
        if commit_every is not None and self._n_acked >= commit_every:
            self._n_acked = 0
            epoch = self._epoch[tp]
            await self.commit()
            if self._epoch[tp] != epoch or not self.flow_active or app.consumer_generation_id != generation_id:
                await self._undelivered(tp, recs, generation_id)
                return
        acks = app.topics.acks_enabled_for(tp.topic)
        step = channel.max_records
        for start in range(0, len(recs), step):
            chunk = recs[start:start + step] if len(recs) > step else recs
            epoch = self._epoch[tp]
            if acks:
                await self._note_gaps(tp, chunk)
            batch = RawBatch(tp, chunk, generation_id, epoch)
            put = channel.put(batch)
            result = await self.wait_first(put, self.suspend_flow.wait())
            if put not in result.done or self._epoch[tp] != epoch or app.consumer_generation_id != generation_id:
                # cut off by a rebalance or a seek: what was not put is read again (a queued batch
                # of an older epoch or generation is dropped by the channel)
                await self._undelivered(tp, recs[start:], generation_id)
                return
            self._next_offset[tp] = chunk[-1].offset + 1
            self._read_offset[tp] = chunk[-1].offset  # faust's: the last one delivered

    async def _no_jump(self, tp: TP, recs: Sequence[Any], generation_id: int) -> bool:
        """Whether ``recs`` may be delivered: they start at the next offset to deliver, or the
        offsets between hold no message. A fetch past the next offset is never taken on trust
        (the crash test saw aiokafka hand over records past a seek under way): the partition is
        read again from the next offset, unless Kafka, asked outside this consumer, says the
        first message from there is the one fetched (transaction markers, compaction, retention:
        then those offsets are a gap the commit may pass). Without such a probe, the same jump
        fetched three times over is taken as offsets without messages."""
        expected = self._next_offset.get(tp)
        if expected is None:  # no start yet (see _undelivered)
            await self._undelivered(tp, recs, generation_id)
            return False
        first = recs[0].offset
        if first <= expected:
            self._jumps.pop(tp, None)
            return True
        seen = self._jumps.get(tp)
        times = seen[2] + 1 if seen is not None and seen[:2] == (expected, first) else 1
        self._jumps[tp] = (expected, first, times)
        confirmed = False
        if self.first_offset_from is not None:
            try:
                confirmed = await self.first_offset_from(tp, expected) == first
            except Exception as exc:  # the broker away: read again, ask again
                self.log.warning("%s[%d]: could not ask whether offsets %d-%d hold messages: %r",
                                 tp.topic, tp.partition, expected, first - 1, exc)
        else:
            confirmed = times >= 3
        if confirmed:
            self._jumps.pop(tp, None)
            await self.skip_deleted(tp, expected, first - 1)
            return True
        self.jumps_read_again += 1
        self.log.warning("%s[%d]: fetched from %d, the next offset to deliver is %d: reading again from %d",
                         tp.topic, tp.partition, first, expected, expected)
        await self._undelivered(tp, recs, generation_id)
        return False

    async def _note_gaps(self, tp: TP, recs: Sequence[Any]) -> None:
        """Offsets aiokafka skipped inside one fetch hold no message (transaction markers, aborted
        or compacted records). Committed past only once a later offset is acknowledged (faust's
        ``_new_offset``)."""
        first = recs[0].offset
        if recs[-1].offset - first + 1 != len(recs):
            prev = first
            for r in recs:
                if r.offset - prev > 1:
                    await self.skip_deleted(tp, prev + 1, r.offset - 1)
                prev = r.offset

    async def _deliver_each(self, tp: TP, recs: Sequence[Any], generation_id: int) -> None:
        """faust's own per-message delivery (``_drain_messages``' loop body) for the other topics
        (the trainer's samples, tables' changelogs), with the read offset moved only for a message
        really handed over."""
        read_offset = self._read_offset
        commit_every = self._commit_every
        callback = self.callback
        to_message = self._to_message
        acks_enabled = self.app.topics.acks_enabled_for(tp.topic)
        for n, record in enumerate(recs):
            if n and not n % 100:
                await asyncio.sleep(0)
            offset = record.offset
            r_offset = read_offset[tp]
            if r_offset is None or offset >= r_offset:
                gap = offset - (r_offset or 0)
                if gap > 1 and r_offset and acks_enabled:
                    await self._add_gap(tp, r_offset + 1, offset)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                epoch = self._epoch[tp]
                message = to_message(tp, record)
                delivery = callback(message)
                result = await self.wait_first(delivery, self.suspend_flow.wait())
                if delivery not in result.done or self._epoch[tp] != epoch:
                    await self._undelivered(tp, recs[n:], generation_id)
                    return
                read_offset[tp] = offset
                self._next_offset[tp] = offset + 1


class BatchTransport(WorkerTransport):
    Consumer = BatchConsumer

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_routes: dict[str, BatchChannel] = {}


def use_batch_delivery(app: Any, topic: Any, max_records: int, maxsize: int = 8) -> BatchChannel:
    """Route ``topic``'s messages to a :class:`BatchChannel` (call before the app starts and before
    anything reads ``app.consumer``, after :func:`streams.app.faust_app`). The agent must still be
    declared on ``topic`` (``@app.agent``), so that faust subscribes to it, assigns its partitions
    and acks and commits them."""
    old = app.transport
    if not isinstance(old, BatchTransport):
        transport = BatchTransport(app.conf.broker_consumer, app, fetch_min_bytes=old.fetch_min_bytes,
                                   fetch_max_wait_ms=old.fetch_max_wait_ms)
        app.transport = transport
    if not isinstance(app.consumer, BatchConsumer):
        raise SetupError("batch delivery must be set up before the app's consumer is created")
    channel = BatchChannel(app, list(topic.topics), max_records, maxsize)
    for name in channel.topics:
        app.transport.batch_routes[name] = channel
    return channel


class _Bound:
    """What faust's tables read of the current event (``event.message``: its topic and partition,
    ``tables/base.py`` ``_send_changelog``/``partition_for_key``; ``stores/rocksdb.py`` ``_set``,
    ``_del``, ``_get``: the partition's database)."""

    __slots__ = ("message", "__weakref__")

    def __init__(self, message: Any) -> None:
        self.message = message


@contextlib.contextmanager
def record_is_current(consumer: BatchConsumer, tp: TP, record: Any) -> Iterator[None]:
    """Make ``record`` (of ``tp``) faust's current event for a table write: the key goes to the
    changelog partition of the record's own partition (and RocksDB's database of it), as
    :func:`streams.fixups.current_event.current_event_is` does for a faust event. The message is
    faust's own (``_to_message``), built only for the records whose customers are written."""
    bound = _Bound(consumer._to_message(tp, record))
    event: faust.EventT = bound  # type: ignore[assignment]  # only .message is read
    token = _faust_current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _faust_current_event.reset(token)
