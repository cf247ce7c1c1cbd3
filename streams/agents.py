"""Agents, timers and tasks of the worker: each one a few lines that hand over to the logic in
:mod:`streams.processor`, :mod:`streams.sweep`, :mod:`streams.training` and :mod:`streams.snapshots`.

Every agent runs with concurrency 1 (faust-streaming #606 loses messages on commit otherwise) and
never lets an exception escape: a crashed faust agent stops consuming while the worker looks alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

import faust
from faust.types import TP

from models.snapshot import ModelSnapshot
from models.state_cache import StateCache
from schemas.dead_letter import Source, dead_letter_for
from schemas.events import FieldProblem
from schemas.segment_change import SegmentChange
from streams.delivery_guard import OrderedIntake
from streams.fixups.batch_delivery import BatchChannel, BatchConsumer, RawBatch, record_is_current, use_batch_delivery
from streams.fixups.current_event import current_event_is
from streams.fixups.durable_table import DurableTable
from streams.fixups.faust_producer import flush_now
from streams.heap import GcPauses, freeze_startup_heap, raise_young_threshold
from streams.lag import LagMonitor
from streams.processor import ERASURE, REEVALUATE, REPARTITION, CustomerProcessor, InMessage
from streams.repartition import origin_header, parse_origin
from streams.shutdown import exit_now
from streams.snapshots import SNAPSHOT_KEY
from streams.runtime import Runtime
from streams.topics import Topics

log = logging.getLogger("segstream.worker")

WATERMARK_INTERVAL_S = 1.0  # how often the input watermark is measured (two metadata requests)




class KafkaOutputs:
    """Segment changes and dead letters, sent through the app's producer; ``flush`` returns once
    they and the table's changelog writes are acknowledged."""

    def __init__(self, topics: Topics, table: DurableTable | None = None,
                 end_offsets: Callable[[], Awaitable[dict[str, list[int]]]] | None = None):
        self.topics = topics
        self.table = table
        self._end_offsets = end_offsets
        self._sent: list[Any] = []  # futures of dead letters not yet seen acknowledged

    async def changes(self, changes: list[SegmentChange]) -> None:
        acks = [await self.topics.segment_changes.send(key=c.customer_id.encode(), value=c.model_dump_json().encode())
                for c in changes]
        await flush_now(self._producer)  # now, not after the producer's linger: the batch waits for these acks
        for ack in acks:  # the caller empties the outbox only once every change is durable
            await ack

    async def flush(self) -> None:
        """Every table write and dead letter so far acknowledged by the broker (an error if one failed)."""
        if self.table is not None:
            await self.table.send_staged()  # the states written since, in whole record batches
        pending = self._sent + (self.table.take_pending_writes() if self.table is not None else [])
        self._sent = []
        if not pending and not self._producer.buffer.size:
            return
        await flush_now(self._producer)
        for fut in pending:  # faust's flush may give up early (see streams.fixups.durable_table): these do not
            await fut

    async def forward(self, message: InMessage, partition: int) -> None:
        header = origin_header(message.topic, message.partition, message.offset)
        self._sent.append(await self.topics.repartition.send(key=message.key, value=message.value,
                                                             partition=partition, headers=[header]))

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return await self._end_offsets() if self._end_offsets is not None else {}

    async def dead_letter(self, message: InMessage, source_type: str, problems: list[FieldProblem]) -> None:
        source = Source.of(message.topic, message.partition, message.offset, message.key)
        letter = dead_letter_for(message.value, source, problems, datetime.now(timezone.utc))
        # Keyed like the source, cut like source.key: a hostile key cannot make the letter too big.
        key = message.key[: Source.MAX_KEY] if message.key is not None else None
        self._sent.append(await self.topics.dead_letter.send(key=key, value=letter.model_dump_json().encode()))

    @property
    def _producer(self) -> Any:
        return self.topics.segment_changes.app.producer


def in_message(event: faust.EventT, repartition_topic: str) -> InMessage:
    """The processor's view of ``event``: a forwarded message as its original (streams.repartition);
    one on the repartition topic without a readable origin as itself (it is dead-lettered)."""
    m = event.message
    if m.topic == repartition_topic:
        origin = parse_origin(event.headers)
        if origin is not None:
            return InMessage(*origin, event.key, event.value, forwarded=True, delivered_on=(m.topic, m.partition))
    return InMessage(m.topic, m.partition, m.offset, event.key, event.value)




async def settle(processor: CustomerProcessor, intake: OrderedIntake, events: list[faust.EventT]) -> None:
    """What the processor left for the delivery path after ``events``: messages it did not process
    stay unacknowledged (they come again), partitions to read again from an offset are re-read."""
    for index in processor.held:
        intake.consumer.hold(events[index].message)
    for (topic, partition), offset in processor.rewinds.items():
        await intake.rewind(TP(topic, partition), offset)


async def process_one(processor: CustomerProcessor, intake: OrderedIntake, event: faust.EventT, msg: InMessage,
                      bind, routes: dict[str, str]) -> None:  # noqa: ANN001
    """One message on its own; an unexpected error dead-letters it (the worker never stops on input)."""
    try:
        await processor.handle_batch([msg], bind)
        await settle(processor, intake, [event])
    except Exception as exc:
        log.exception("internal error on %s[%d]@%d; dead-lettered", msg.topic, msg.partition, msg.offset)
        problem = FieldProblem(field="", error="internal_error", message=f"{type(exc).__name__}: {exc}"[:500])
        await processor.outputs.dead_letter(msg, routes.get(msg.topic, "unknown"), [problem])


def record_message(tp: TP, record: Any, repartition_topic: str) -> InMessage:
    """:func:`in_message` for a record of batch delivery (aiokafka's ``ConsumerRecord``)."""
    if tp.topic == repartition_topic:
        origin = parse_origin(dict(record.headers) if record.headers else None)
        if origin is not None:
            return InMessage(*origin, record.key, record.value, forwarded=True, delivered_on=(tp.topic, tp.partition))
    return InMessage(tp.topic, tp.partition, record.offset, record.key, record.value)


async def process_batches(channel: BatchChannel, processor: CustomerProcessor, intake: OrderedIntake,
                          routes: dict[str, str], repartition_topic: str, batch_max: int,
                          batch_within_s: float = 0.0, lock: asyncio.Lock | None = None) -> None:
    """The customer agent on batch delivery (``worker.delivery = "batch"``,
    :mod:`streams.fixups.batch_delivery`): each partition comes in offset order without holes by
    construction, so nothing is admitted or held by the delivery guard (it keeps the progress the
    watermark reads, and its tail check stays as a safety net). Same processor, outbox and
    flush-before-ack as the per-message path: a batch is acknowledged only once
    ``handle_batch`` returned (every change acknowledged by the broker; the states it saved are
    written and acknowledged before the next commit, :mod:`streams.write_behind`), never the
    messages it held; a batch that raises is processed again message by message; one that can
    neither be processed nor dead-lettered stops the worker unacknowledged."""
    consumer: BatchConsumer = channel.app.consumer
    lock = lock if lock is not None else asyncio.Lock()
    while True:
        batches = await channel.take(batch_max, batch_within_s)
        records: list[tuple[RawBatch, Any]] = [(b, r) for b in batches for r in b.records]
        msgs = [record_message(b.tp, r, repartition_topic) for b, r in records]

        def bind(index: int, records: list = records) -> contextlib.AbstractContextManager:
            batch, record = records[index]
            return record_is_current(consumer, batch.tp, record)  # the changelog partition of its own message

        async with lock:  # never interleaved with the writing out before a commit (write-behind)
            held: set[int] = set()
            rewinds: dict[tuple[str, int], int] = {}
            intake.busy = True  # until the batch is done: no delivery is expected meanwhile
            try:
                try:
                    await processor.handle_batch(msgs, bind)
                    held.update(processor.held)
                    rewinds.update(processor.rewinds)
                except Exception:  # a bug, not bad input: isolate the message, keep the partition moving
                    log.exception("internal error in a batch of %d; processing it message by message", len(msgs))
                    held.clear()
                    rewinds.clear()
                    try:
                        for index, msg in enumerate(msgs):
                            if msg.delivered in rewinds:  # after a rewind of its partition: comes again
                                held.add(index)
                                continue
                            alone = await process_alone(processor, msg, lambda _i, index=index: bind(index), routes)
                            if alone is not None:
                                if alone[0]:
                                    held.add(index)
                                for tp, offset in alone[1].items():
                                    rewinds[tp] = min(offset, rewinds.get(tp, offset))
                    except Exception:
                        # Not even a dead letter could be written: stop unacknowledged, the batch is
                        # redelivered to the next owner.
                        log.exception("a batch could neither be processed nor dead-lettered")
                        exit_now("the batch will be redelivered after a restart")
                held_offsets: dict[RawBatch, list[int]] = {}
                for index in held:
                    batch, record = records[index]
                    held_offsets.setdefault(batch, []).append(record.offset)
                for batch in batches:
                    consumer.ack_batch(batch, held=held_offsets.get(batch, ()))
                    intake.processed_in_order(batch.tp, batch.records[-1].offset)
                for (topic, partition), offset in rewinds.items():
                    try:
                        await intake.seek_in_order(TP(topic, partition), offset)
                    except Exception as exc:  # not ours any more (a rebalance): its owner reads it from the commit
                        log.warning("%s[%d]: reading again from %d failed: %r", topic, partition, offset, exc)
            finally:
                intake.busy = False


async def process_alone(processor: CustomerProcessor, msg: InMessage, bind, routes: dict[str, str]  # noqa: ANN001
                        ) -> tuple[bool, dict[tuple[str, int], int]] | None:
    """One message on its own (batch delivery): (held, rewinds), or ``None`` when an unexpected
    error dead-lettered it (the worker never stops on input)."""
    try:
        await processor.handle_batch([msg], bind)
        return bool(processor.held), dict(processor.rewinds)
    except Exception as exc:
        log.exception("internal error on %s[%d]@%d; dead-lettered", msg.topic, msg.partition, msg.offset)
        problem = FieldProblem(field="", error="internal_error", message=f"{type(exc).__name__}: {exc}"[:500])
        await processor.outputs.dead_letter(msg, routes.get(msg.topic, "unknown"), [problem])
        return None


async def publish_snapshot(rt: Runtime, snapshot: ModelSnapshot) -> None:
    ack = await rt.topics.model_snapshots.send(key=SNAPSHOT_KEY, value=snapshot.to_bytes(), partition=0)
    await ack
    rt.metrics.trainings.inc()
    rt.install(snapshot)  # no need to wait for our own listener


def register_agents(app: faust.App, rt: Runtime) -> None:
    topics = rt.topics
    routes = {name: etype for etype, name in topics.inputs.items()}
    routes[topics.erasures.get_topic_name()] = ERASURE
    routes[topics.reevaluate.get_topic_name()] = REEVALUATE
    repartition_topic = topics.repartition.get_topic_name()
    routes[repartition_topic] = REPARTITION
    outputs = KafkaOutputs(topics, rt.table, rt.input_end_offsets)
    w = rt.settings.worker
    processor = CustomerProcessor(rt.pipeline, rt.table, outputs, rt.clock, rt.forwarder,
                                  rt.metrics, routes, active_partitions=rt.active_partitions,
                                  cache=StateCache(w.state_cache_size), home=rt.home,
                                  watermark=rt.watermark, store=rt.store, sweeper=rt.sweeper.identity)
    # before anything reads app.consumer: the batch path is faust's consumer with our drain loop
    # a queue of batches, not of messages: live, each holds a few per partition (64 of them: ~4 fetches of 16 partitions)
    channel = use_batch_delivery(app, topics.customer_source, w.batch_max, maxsize=64) if w.delivery == "batch" else None
    log.info("customer agent delivery: %s", w.delivery)
    app.consumer.guarded_topics = frozenset(routes)  # type: ignore[attr-defined]  # our WorkerConsumer: streams.fixups.kafka_transport
    # A batch and the writing out of the states waiting for a commit never interleave: the
    # states written must be those of finished batches (a batch's changes are sent before its
    # states are final), and every finished batch's states are written before offsets are.
    processing = asyncio.Lock()

    async def write_out_before_commit() -> None:
        async with processing:  # no batch meanwhile: what the metric times is what batches wait for
            with rt.metrics.commit_write.time():
                written = await processor.write_out()
        if written:
            rt.metrics.states_written_behind.inc(written)

    app.consumer.before_commit = write_out_before_commit  # type: ignore[attr-defined]  # our WorkerConsumer

    rt.wiring.update(delivery=w.delivery, batch_max=w.batch_max, batch_within_s=w.batch_within_s,
                     state_cache_size=processor.cache.capacity, write_behind=processor.store.deferred)
    timers = rt.wiring.setdefault("timers", {})

    def every(interval_s: float) -> Callable:
        """faust's ``app.timer``, with the interval recorded under the timer's name (GET /config)."""
        def register(fun: Callable) -> Any:
            timers[fun.__name__] = interval_s
            return app.timer(interval_s)(fun)
        return register

    view = rt.view
    if channel is not None:
        app.consumer.first_offset_from = view.first_offset_from  # type: ignore[attr-defined]  # our BatchConsumer
    intake = OrderedIntake(app.consumer, view, on_hole=lambda _topic: rt.metrics.delivery_holes.inc())

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types receivers without **kwargs
    async def close_view(_app: faust.App, **_kwargs: Any) -> None:
        await view.close()

    @app.on_partitions_revoked.connect  # type: ignore[arg-type]  # mode types receivers without **kwargs
    async def forget_revoked(_app: faust.App, revoked: Any, **_kwargs: Any) -> None:
        intake.forget(revoked)
        rt.watermark.forget(revoked, repartition_topic)
        # faust committed (wait_empty) before this signal, so normally nothing waits here; what a
        # failed commit left for these partitions is another worker's now (it reads their events
        # again from the last commit): never written by this one.
        dropped = rt.store.forget(tp.partition for tp in revoked if tp.topic in routes)
        if dropped:
            log.warning("%d customer states of revoked partitions were not written; their events are "
                        "read again by the new owner", dropped)

    @app.on_partitions_assigned.connect  # type: ignore[arg-type]  # mode types receivers without **kwargs
    async def forget_assigned(_app: faust.App, assigned: Any, **_kwargs: Any) -> None:
        intake.forget(assigned)  # delivery starts again from the committed offsets
        rt.watermark.forget(assigned, repartition_topic)

    @app.agent(topics.customer_source, name="segstream.customers", concurrency=1)
    async def process_customers(stream: faust.StreamT) -> None:
        if channel is not None:  # the stream only subscribes: the batches arrive on the channel
            try:
                await process_batches(channel, processor, intake, routes, repartition_topic, w.batch_max,
                                      w.batch_within_s, processing)
            except Exception:  # an agent that dies stops consuming while the worker looks alive
                log.exception("the batch delivery loop failed")
                exit_now("what was not committed is redelivered after a restart")
            return
        async for batch in stream.take_events(w.batch_max, within=w.batch_within_s):  # type: ignore[attr-defined]  # not in faust's StreamT
            try:
                events = await intake.admit(batch)  # in offset order, no holes (streams.delivery_guard)
            except Exception:  # nothing is known to be processed or held: start over from the commits
                log.exception("the delivery guard failed on a batch of %d", len(batch))
                exit_now("the batch will be redelivered after a restart")
            if not events:
                continue
            msgs = [in_message(e, repartition_topic) for e in events]

            def bind(index: int, events: list = events) -> contextlib.AbstractContextManager:
                return current_event_is(events[index])

            intake.busy = True  # until the batch is done: no delivery is expected meanwhile
            try:
                async with processing:
                    await handle(msgs, events, bind)
            finally:
                intake.busy = False

    async def handle(msgs: list[InMessage], events: list[faust.EventT], bind: Callable) -> None:
        try:
            await processor.handle_batch(msgs, bind)
            await settle(processor, intake, events)
        except Exception:  # a bug, not bad input: isolate the message, keep the partition moving
            log.exception("internal error in a batch of %d; processing it message by message", len(msgs))
            try:
                for index, msg in enumerate(msgs):
                    await process_one(processor, intake, events[index], msg,
                                      lambda _i, index=index: bind(index), routes)
            except Exception:
                # Not even a dead letter could be written. Letting the exception out would
                # have faust ack the batch (take_events acks in a finally) and lose it: stop
                # the process instead, so the batch is redelivered to the next owner.
                log.exception("a batch could neither be processed nor dead-lettered")
                exit_now("the batch will be redelivered after a restart")

    @app.agent(topics.trainer_samples, name="segstream.trainer", concurrency=1)
    async def collect_samples(stream: faust.StreamT) -> None:
        async for raw in stream:
            try:
                rt.trainer.on_samples(raw)
            except Exception:  # a malformed sample message must not stop the trainer
                log.exception("unreadable trainer-samples message ignored")

    @app.timer(OrderedIntake.REREAD_EVERY_S)
    async def reread_holes() -> None:
        try:
            await intake.retry_stalled()
        except Exception:  # the next tick tries again
            log.exception("re-reading a partition from its hole failed")

    @app.timer(OrderedIntake.TAIL_GRACE_S / 4)
    async def reread_stuck_tails() -> None:
        if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]  # not in faust's TableManagerT
            return  # faust pauses delivery while it restores the table
        try:
            await intake.check_tails(tp for tp in app.consumer.assignment() if tp.topic in routes)
        except Exception as exc:  # the next tick tries again
            log.warning("checking partitions for undelivered messages failed: %r", exc)

    @every(w.sweep_interval_s)
    async def sweep() -> None:
        if not app.tables.recovery.completed.is_set():  # type: ignore[attr-defined]  # not in faust's TableManagerT
            return  # the table is being restored: a pass listing its keys now would miss customers
        batches = rt.sweeper.tick(rt.table.keys(), rt.active_partitions())
        for partition, batch in batches.items():
            await topics.reevaluate.send(value=batch.to_json(), partition=partition)

    event_topics = frozenset([*topics.inputs.values(), repartition_topic])

    @every(WATERMARK_INTERVAL_S)
    async def measure_input_watermark() -> None:
        """The sweep waits for the slowest input partition (streams.watermark)."""
        tps = [tp for tp in app.consumer.assignment() if tp.topic in event_topics]
        try:
            progress = await intake.progress(tps)
        except Exception as exc:  # the broker away: the sweep stays where it is until the next tick
            log.warning("input watermark not measured: %r", exc)
            await view.close()
            return
        rt.clock.hold(rt.watermark.low(progress))
        rt.metrics.input_watermark(rt.clock.input_watermark)

    @every(w.sample_flush_interval_s)
    async def flush_samples() -> None:
        sent_before = rt.forwarder.sent
        for value in rt.forwarder.drain(rt.clock.now()):
            await topics.trainer_samples.send(value=value, partition=0)
        rt.metrics.samples_sent.inc(rt.forwarder.sent - sent_before)

    @app.timer(min(1.0, w.train_interval_s))
    async def train() -> None:
        if not rt.is_trainer():
            rt.trainer.release()
            return
        try:
            await rt.trainer.maybe_train()
        except Exception:
            log.exception("training failed; the current model stays in force")

    lag_monitor = LagMonitor(view)
    input_topics = [*topics.inputs.values(), repartition_topic]

    @every(w.lag_interval_s)
    async def measure_lag() -> None:
        try:
            rt.metrics.lag(await lag_monitor.measure(input_topics, rt.active_partitions()))
        except Exception as exc:  # lag is for dashboards: never let it disturb processing
            log.warning("consumer lag not measured: %s", exc)
            await view.close()

    @app.task
    async def freeze_heap_once_ready() -> None:
        """The start-up heap out of the collector's scans and young collections less often
        (streams.heap), once the table is restored; from then on every collection's pause is timed
        (segstream_gc_pause_seconds)."""
        await app.tables.recovery.completed.wait()  # type: ignore[attr-defined]  # not in faust's TableManagerT
        log.info("%d objects of the start-up heap frozen out of garbage collection (streams.heap)",
                 freeze_startup_heap())
        raise_young_threshold()
        gc_pauses.install()

    gc_pauses = GcPauses(lambda generation, seconds: rt.metrics.gc_pause.labels(str(generation)).observe(seconds))

    @app.on_before_shutdown.connect  # type: ignore[arg-type]  # mode types receivers without **kwargs
    async def stop_timing_gc_pauses(_app: faust.App, **_kwargs: Any) -> None:
        gc_pauses.remove()

    @app.task
    async def follow_models() -> None:
        while True:  # a broker outage must not end the model feed for good
            try:
                await rt.listener.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("model-snapshots consumer failed; reconnecting in 2s")
                await asyncio.sleep(2)
