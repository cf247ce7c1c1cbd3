"""What the customer agent does with each message: the adapter between Kafka and the pure engine.

One agent (concurrency 1) consumes every per-customer topic: the four event types, erase
requests, the sweep's re-evaluation batches and the repartition topic. One agent, not one per
topic, because they all read-modify-write the same table entry: two agents would interleave at
their ``await`` points and lose updates.

An input message off its customer's home partition (a producer with another partitioner) is not
processed where it arrived: it is forwarded to the home partition through the repartition topic
(:mod:`streams.partitioning`, :mod:`streams.repartition`), and acknowledged only once the
forward is, like every other output of its batch. Every customer therefore has one state.

Messages come in batches (``stream.take``: faust's per-message machinery is paid once per batch).
Within a batch, chosen for at-least-once delivery:

1. a bad message goes to the dead-letter topic with the reason and processing goes on;
2. each event updates its customer's state in memory, idempotently: the state records the highest
   offset it applied per source topic-partition (a forwarded message counts for its source), so an
   event redelivered after a crash is recognised however many came back (and a repeated
   ``event_id`` within a window, see :mod:`models.state`); each customer is loaded from the table
   once per batch;
3. each applied event is evaluated as if its message had been a batch of its own (the clock as
   of that message): the customers whose latest event is the batch's last for them are evaluated
   together at the end (:meth:`Pipeline.evaluate_many`), and a customer's earlier events of the
   batch one by one, just before its next event is applied (or the sweep or an erasure reaches
   it). A batch therefore emits exactly the changes its messages would one at a time, which is
   what the offline replay emits too (tests/test_batch_engine.py);
4. customers with segment changes are saved first **with the changes in an outbox**, and the
   producer is flushed: the new state (with its offsets) is durable before anyone sees a change;
5. the changes are sent **and acknowledged**;
6. the states are saved (outboxes emptied). Write-through (:class:`~streams.write_behind.StateStore`
   not deferred): the worker waits until the broker has acknowledged those writes (and the
   batch's dead letters) before the batch is acknowledged to faust, whose offset commits follow.
   Write-behind (the worker's default): the saved states wait in the store and are written, and
   acknowledged, just before the consumer commits offsets, together with the batches' dead
   letters and forwards (:mod:`streams.write_behind`). Either way no offset is committed before
   what its batch wrote is acknowledged; faust's own flush before a commit gives up when nothing
   moves for 100 ms (see :mod:`streams.fixups.durable_table`), hence these waits of our own.

A crash before 4 replays the batch onto the old states and nothing was visible yet. A crash
between 4 and 6 leaves an outbox behind; the events are redelivered (their offsets were not
committed), so the customer is loaded again and the outbox sent again *as it was*: the same
``change_id`` with the same content, which a consumer drops. Re-deciding instead could give
another answer (a new model, a later clock) and leave subscribers with a segment the worker no
longer holds: the crash test caught exactly that. A crash after 6 finds everything applied,
except the states still waiting for a commit (write-behind): their events were not committed
either, so they come again onto the last written states, as after a crash before 4 (or between
4 and 6, when the lost write was the one emptying an outbox).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, MutableMapping, Protocol


from models.kpis import SegmentKPIs
from models.membership_flow import MembershipFlowLog
from models.pipeline import Pipeline
from models.scorecard import score
from models.state import CustomerState, EngineRejection, Position, source_tag
from models.state_cache import StateCache
from streams.write_behind import StateStore
from monitoring.metrics import KpiReport, WorkerMetrics
from schemas.erasure import parse_erasure
from schemas.internal import parse_reevaluation
from schemas.events import (
    CONTRACT_FIELDS,
    AnyEvent,
    Consent,
    EVENT_TYPES,
    EventValidationError,
    FieldProblem,
    ProfileEvent,
    parse_event,
)
from schemas.segment_change import SegmentChange
from streams.clock import WorkerClock
from streams.watermark import InputWatermark
from streams.sampling import SampleForwarder

log = logging.getLogger("segstream.worker")

ERASURE, REEVALUATE, REPARTITION = "erasure", "reevaluate", "repartition"


@dataclass(frozen=True, slots=True)
class InMessage:
    """A message as the processor sees it. For a message forwarded through the repartition topic
    (``forwarded``), topic, partition and offset are those of the original."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    forwarded: bool = False
    delivered_on: tuple[str, int] | None = None  # the topic-partition it came from, if not its own

    @property
    def delivered(self) -> tuple[str, int]:
        """The topic-partition the message was consumed from."""
        return self.delivered_on or (self.topic, self.partition)


class Outputs(Protocol):
    async def changes(self, changes: list[SegmentChange]) -> None:
        """Send the changes and return once the broker has acknowledged every one."""

    async def dead_letter(self, message: InMessage, source_type: str, problems: list[FieldProblem]) -> None: ...

    async def forward(self, message: InMessage, partition: int) -> None:
        """Send ``message`` to ``partition`` of the repartition topic (acknowledged by ``flush``)."""

    async def input_end_offsets(self) -> dict[str, list[int]]:
        """The input topics' end offsets, by topic, one per partition (an erasure's cutoff)."""

    async def flush(self) -> None:
        """Return once everything sent so far (table changelog writes and dead letters included)
        is acknowledged; raise if any of it failed."""


def key_problem(key: bytes | None, customer_id: str) -> list[FieldProblem]:
    """The message key must be the customer id, or tables and topics stop being co-partitioned."""
    if key is None or key != customer_id.encode():
        return [FieldProblem(field="key", error="key_mismatch", message="message key must equal customer_id")]
    return []


@dataclass
class Touched:
    """A customer's state while a batch is processed: loaded once, written once."""

    state: CustomerState | None  # None: not in the table and no event applied yet (then nothing is written)
    raw: bytes | None  # as loaded from the table
    last_index: int  # the batch position of its latest message (its partition context for the write)
    partition: int = 0  # the partition its messages came from (its changelog partition)
    evaluate: bool = False  # its latest event was applied and not yet evaluated
    evaluate_at: float = 0.0  # the time that evaluation is as of (the clock when the event came)
    latest_event_ts: float = 0.0
    changes: list[SegmentChange] = field(default_factory=list)  # to emit, in order


def _no_context(_index: int) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


class CustomerProcessor:
    """Processes batches of messages (``handle_batch``): each customer touched by a batch is loaded
    once, evaluated after each of its events (as of the clock when that event came), and written
    once, after the batch's segment changes were acknowledged. A batch emits the changes its
    messages would one at a time.
    """

    def __init__(self, pipeline: Pipeline, table: MutableMapping[bytes, bytes], outputs: Outputs,
                 clock: WorkerClock, forwarder: SampleForwarder, metrics: WorkerMetrics,
                 routes: dict[str, str], active_partitions: Callable[[], set[int]] | None = None,
                 cache: StateCache | None = None, home: Callable[[bytes], int] | None = None,
                 watermark: InputWatermark | None = None, store: StateStore | None = None,
                 max_waiting: int = 50_000, sweeper: str | None = None):
        """``routes``: topic name -> event type, ``"erasure"``, ``"reevaluate"`` or ``"repartition"``.
        ``cache``: decoded states kept between batches (default: 20,000 customers). ``home``: a
        customer key's home partition (:class:`streams.partitioning.HomePartitions`); None
        processes every message where it arrives (a single partition, tests). ``watermark``: told
        what was applied and forwarded from which partition (the worker's input watermark).
        ``store``: ``table`` behind a write-behind buffer (default: written through);
        ``max_waiting``: the states it may hold before a batch writes them out itself.
        ``sweeper``: this worker's :attr:`streams.sweep.Sweeper.identity`; populations are counted
        from its passes only (None: from every re-evaluation batch, for in-process use)."""
        self.pipeline = pipeline
        self.store = store if store is not None else StateStore(table)
        self.max_waiting = max_waiting
        self.outputs = outputs
        self.clock = clock
        self.forwarder = forwarder
        self.metrics = metrics
        self.routes = routes
        self.populations = PopulationTally(active_partitions, pipeline.new_kpis, sweeper)
        self.flow = MembershipFlowLog()  # entries and exits per segment: the scorecard's stability
        self.cache = cache if cache is not None else StateCache(20_000)
        self.home = home
        self.watermark = watermark
        self._tags: dict[str, int] = {}
        self._outcomes: Counter[tuple[str, str]] = Counter()  # of the current batch, counted at its end
        self._repartition = next((topic for topic, route in routes.items() if route == REPARTITION), None)
        # Of the current batch: topic-partitions to read again from an offset (an erasure took
        # events produced after it, see CustomerState.erased), and the indexes of the messages
        # not processed because they come after such a point (the caller leaves them unacknowledged).
        self.rewinds: dict[tuple[str, int], int] = {}
        self.held: list[int] = []

    async def handle(self, msg: InMessage) -> None:
        await self.handle_batch([msg])

    async def handle_batch(self, msgs: list[InMessage],
                           bind: Callable[[int], contextlib.AbstractContextManager] = _no_context) -> None:
        """Process ``msgs`` in order. Table writes happen inside ``bind(i)``, which makes message
        ``i`` the current one (faust writes a key to the changelog partition of the current message)."""
        started = time.perf_counter()
        self._outcomes.clear()  # a batch that failed half-way is retried message by message
        self.rewinds, self.held = {}, []
        touched: dict[bytes, Touched] = {}
        applied = 0
        for i, msg in enumerate(msgs):
            if msg.delivered in self.rewinds:  # read again from an earlier offset: comes again
                self.held.append(i)
                continue
            route = self.routes.get(msg.topic)
            if route == REEVALUATE:
                await self._reevaluate(msg, i, touched)
            elif route == REPARTITION or (route is None and msg.forwarded):  # only the worker writes there
                await self._dead(msg, REPARTITION, [FieldProblem(
                    field="headers", error="invalid", message="forwarded message without a valid origin header")])
            elif route is not None and await self._forwarded_home(msg, route):
                continue
            elif route == ERASURE:
                await self._erase(msg, i, touched)
            elif route is not None:
                applied += await self._ingest(msg, i, route, touched)
                if msg.forwarded and self.watermark is not None and not (self.held and self.held[-1] == i):
                    self.watermark.arrived((msg.topic, msg.partition), msg.offset)  # whatever came of it
            else:  # not subscribed by us; only if the topic settings change under a running group
                log.error("message from unexpected topic %s[%d]@%d ignored", msg.topic, msg.partition, msg.offset)
        self._evaluate_touched(touched)
        changes = await self._publish(touched, bind)
        self._observe_timing(started, len(msgs), applied, changes, touched)

    async def _publish(self, touched: dict[bytes, Touched],
                       bind: Callable[[int], contextlib.AbstractContextManager]) -> list[SegmentChange]:
        """Save the customers with changes (outbox filled), send, then save every touched state
        (see the module doc). An erased customer's exits are in its marker's outbox like any
        other changes: saved before they are sent, sent again as saved after a crash."""
        with_changes = [(key, e) for key, e in touched.items() if e.changes and e.state is not None]
        for _, entry in with_changes:
            entry.state.outbox = [c.model_dump_json() for c in entry.changes]  # type: ignore[union-attr]
        if with_changes:
            self._write(with_changes, bind, through=True)
            await self.outputs.flush()
        changes = [c for _, entry in with_changes for c in entry.changes]
        await self._emit(changes)
        for _, entry in with_changes:
            entry.state.outbox = []  # type: ignore[union-attr]
        self._write(touched.items(), bind)
        # Acknowledged before the batch's offsets can be committed: here, or by the commit (a
        # deferred store; see the module doc). faust's own flush may give up with writes queued.
        if not self.store.deferred:
            await self.outputs.flush()
        elif len(self.store) > self.max_waiting:
            await self.write_out()
        for key, entry in touched.items():  # saved: decoded states may serve the next batches
            if entry.state is not None and entry.raw is not None:
                self.cache.put(key, entry.raw, entry.state)
        return changes

    async def write_out(self) -> int:
        """Write every state waiting in the store and await the acknowledgement of everything
        sent so far (what must precede an offset commit); the number of states written."""
        written = self.store.write_out()
        await self.outputs.flush()
        return written

    async def _forwarded_home(self, msg: InMessage, route: str) -> bool:
        """Forward ``msg`` if it arrived off its customer's home partition (see the module doc).
        A message without a key stays: the contract rejects it wherever it is."""
        if self.home is None or msg.forwarded or msg.key is None:
            return False
        home = self.home(msg.key)
        if home == msg.partition:
            return False
        await self.outputs.forward(msg, home)
        if self.watermark is not None:
            self.watermark.forwarded((msg.topic, msg.partition), msg.offset, home)
        self.metrics.repartitioned[route].inc()
        return True

    # ---- events ------------------------------------------------------------------------------

    async def _ingest(self, msg: InMessage, index: int, event_type: str, touched: dict[bytes, Touched]) -> int:
        event = await self._validated(msg, event_type)
        if event is None:
            return 0
        entry = self._touch(msg.key, index, touched, msg.delivered[1])  # type: ignore[arg-type]
        # A new customer's state is kept only once an event is applied to it: a rejected event
        # must not leave a profile behind (GET /customers/{id} would answer, the sweep segment it).
        state = entry.state if entry.state is not None else self.pipeline.new_state(event.customer_id)
        position = self._position(msg)
        if state.before_erasure(position):  # produced before an erase request was accepted
            self._outcomes[(event_type, "erased")] += 1
            return 0
        if self._replay_missed(state, position, msg):
            self.held.append(index)
            return 0
        self._settle(entry)  # its previous event of this batch is decided on the state it left
        try:
            # The future-skew bound is wall time in both clock modes: it is what bounds the event
            # clock (docs/worker.md, "How far the event clock may jump").
            applied = self.pipeline.apply(state, event, now=time.time(), position=position)
        except EngineRejection as exc:
            self._outcomes[(event_type, "rejected")] += 1
            await self._dead(msg, event_type, [FieldProblem(field=exc.field, error="rejected", message=exc.message)])
            return 0
        if not applied:
            self._outcomes[(event_type, "duplicate")] += 1
            return 0
        ts = event.timestamp.timestamp()
        self.clock.observe(ts)  # only accepted data moves the event clock
        if self.watermark is not None:
            origin = (msg.topic, msg.partition) if msg.forwarded else None
            self.watermark.applied(msg.delivered, origin, ts)
        entry.state = state
        self._outcomes[(event_type, "applied")] += 1
        at = self.clock.time_for(state.last_event_ts)  # as a batch of this one message would
        if at is not None:
            entry.evaluate, entry.evaluate_at = True, at
        entry.latest_event_ts = max(entry.latest_event_ts, ts)
        return 1

    async def _validated(self, msg: InMessage, event_type: str) -> AnyEvent | None:
        try:
            if msg.value is None:
                raise EventValidationError([FieldProblem(field="", error="empty", message="message has no value")])
            event = parse_event(msg.value, expected_type=event_type)
            problems = key_problem(msg.key, event.customer_id)
            if problems:
                raise EventValidationError(problems)
        except EventValidationError as exc:
            self.metrics.event(event_type, "invalid")
            await self._dead(msg, event_type, exc.problems)
            return None
        return event

    def _settle(self, entry: Touched) -> None:
        """Decide ``entry``'s pending evaluation now, before its state changes again (one
        customer: the batch's repeat customers only)."""
        if entry.evaluate and entry.state is not None:
            entry.changes.extend(self.pipeline.evaluate(entry.state, entry.evaluate_at))
        entry.evaluate = False

    def _evaluate_touched(self, touched: dict[bytes, Touched]) -> None:
        """The customers with a pending evaluation, together, each as of the time its latest event
        came (:meth:`WorkerClock.time_for` then)."""
        due = [entry for entry in touched.values() if entry.evaluate and entry.state is not None]
        self._evaluate_all(due, [entry.evaluate_at for entry in due])
        at = self.clock.sweep_time()
        if at is not None:
            self.pipeline.maybe_train(at)

    def _evaluate_all(self, due: list[Touched], times: list[float]) -> None:
        """Evaluate these customers together (:meth:`Pipeline.evaluate_many`), each as of its time."""
        results = self.pipeline.evaluate_many([entry.state for entry in due], times)  # type: ignore[misc]
        for entry, changes in zip(due, results):
            entry.changes.extend(changes)
            entry.evaluate = False

    # ---- the clock-driven sweep ----------------------------------------------------------------

    async def _reevaluate(self, msg: InMessage, index: int, touched: dict[bytes, Touched]) -> None:
        """Re-evaluate a sweep batch (customers of this message's partition) as of the clock,
        held back to the input watermark (:meth:`WorkerClock.sweep_time`)."""
        try:
            batch = parse_reevaluation(msg.value or b"")
        except EventValidationError as exc:  # not a re-evaluation batch (schemas.internal)
            await self._dead(msg, REEVALUATE, exc.problems)
            return
        customer_ids = batch.customers
        at = self.clock.sweep_time()
        tally = self.populations.batch(msg.partition, batch.sweep_pass, batch.sweeper)
        if at is None:
            if tally is not None:
                tally.whole = False  # these customers are not counted: nor is the pass's total
            return
        due: list[Touched] = []
        times: list[float] = []
        for customer_id in customer_ids:
            entry = self._touch(customer_id.encode(), index, touched, msg.partition)
            if entry.state is not None and entry.state.replay_to:  # see _replay_missed
                self._rewind(entry.state, customer_id.encode())
            self._settle(entry)  # an event earlier in this batch is decided before the sweep
            if entry.state is None or not entry.state.holds_data:
                continue  # erased since the sweep listed it: only the erasure marker is left
            own = self.clock.time_for(entry.state.last_event_ts)  # not before its own latest event
            due.append(entry)
            times.append(own if own is not None else at)
        self._evaluate_all(due, times)
        self.metrics.reevaluated.inc(len(customer_ids))
        if tally is None:  # another sweeper's pass (a previous owner's, or this worker's before a restart)
            return
        states: list[CustomerState] = [entry.state for entry in due]  # type: ignore[misc]  # due holds states only
        for state in states:
            tally.count(state)
        kpis = tally.kpis
        if kpis is not None:
            for memberships, values, z in self.pipeline.kpi_rows(states, times, self.pipeline.kpi_fields):
                # a model with other features installed during the pass: its vectors are not summed
                kpis.add(memberships, values, z if z is None or kpis.dim in (None, len(z)) else None)
        if batch.end:
            counts, customers = self.populations.complete(msg.partition)
            self.metrics.populations(counts, customers)
            self.flow.mark(at)
            kpis = self.populations.kpis()
            if kpis is not None:
                figures, config = kpis.declare(self.pipeline.segment_keys()).figures(), self.pipeline.config
                flows = self.flow.last_week((f["kind"], f["segment_id"]) for f in figures)
                card = score(figures, config.scorecard, flows, config.value.base_currency)
                self.metrics.segment_kpis(KpiReport(kpis, figures, card, at, flows, self.populations.partitions()))

    # ---- erasure -------------------------------------------------------------------------------

    async def _erase(self, msg: InMessage, index: int, touched: dict[bytes, Touched]) -> None:
        """Replace the customer's state by the erasure's marker; its exits (and any change found
        earlier in the batch) stay on the entry, to be saved in the marker's outbox and sent."""
        try:
            request = parse_erasure(msg.value or b"")
            problems = key_problem(msg.key, request.customer_id)
            if problems:
                raise EventValidationError(problems)
        except EventValidationError as exc:
            await self._dead(msg, ERASURE, exc.problems)
            return
        entry = self._touch(msg.key, index, touched, msg.delivered[1])  # type: ignore[arg-type]
        state = entry.state
        # The request id, not the customer id: logs are for ops and must not hold customer data.
        if state is not None and state.erasure_applied(request.request_id):  # redelivered: deletes nothing new
            log.info("erase request %s: already applied", request.request_id)
            return
        cutoff = await self._cutoff(request.cutoff)
        self.forwarder.forget(request.customer_id)
        held = state is not None and state.holds_data
        if state is not None and held:
            # Changes found earlier in this batch (or left in an outbox) come before the exits.
            self._settle(entry)
            at = self.clock.time_for(state.last_event_ts) or time.time()
            entry.changes.extend(self.pipeline.erase(state, at))
        # The marker, saved in place of the state: keeps earlier events out and repeats a no-op.
        marker = CustomerState.erased(request.customer_id, state, request.request_id, cutoff)
        entry.state, entry.evaluate = marker, False
        if marker.replay_to:
            log.info("erase request %s: events produced after it were consumed before it, from %d partition(s); "
                     "reading them again", request.request_id, len(marker.replay_to))
            self._rewind(marker, msg.key)  # type: ignore[arg-type]
        self.metrics.erasures_found[held].inc()
        log.info("erase request %s: %s", request.request_id, "state deleted" if held else "no state held")

    async def _cutoff(self, accepted: dict[str, list[int]] | None) -> dict[tuple[int, int], int]:
        """Per source topic-partition, the first offset produced after the request was accepted:
        as the API recorded it, else the input topics' end offsets now (a request produced to the
        erasures topic directly is accepted when the worker reaches it)."""
        if accepted is None:
            accepted = await self.outputs.input_end_offsets()
        return {(self._tag(topic), partition): offset
                for topic, offsets in accepted.items() for partition, offset in enumerate(offsets)}

    def _replay_missed(self, state: CustomerState, position: Position, msg: InMessage) -> bool:
        """True when ``msg`` comes after events an erasure took although produced after it and
        they were not read again (a crash right after the erasure): read them first."""
        upto = state.replay_to.get(position[:2])
        if upto is None or position[2] <= upto:
            return False
        self._rewind(state, msg.key)  # type: ignore[arg-type]
        return msg.delivered in self.rewinds

    def _rewind(self, state: CustomerState, key: bytes) -> None:
        """Ask for the sources of ``state``'s pending replay to be read again from the erasure's
        cutoff: a source on the home partition directly, one forwarded to it through the
        repartition topic from where that topic ended when the request was accepted."""
        home = self.home(key) if self.home is not None else None
        for (tag, partition), offset in state.replay_pending().items():
            topic = self._topic_of(tag)
            if home is not None and partition != home and self._repartition is not None:
                topic, partition = self._repartition, home
                offset = state.erased_before.get((self._tag(self._repartition), home), 0)  # 0: from the earliest kept
            if topic is not None:
                self.rewinds[(topic, partition)] = min(offset, self.rewinds.get((topic, partition), offset))

    def _topic_of(self, tag: int) -> str | None:
        for topic, route in self.routes.items():
            if route not in (ERASURE, REEVALUATE, REPARTITION) and self._tag(topic) == tag:
                return topic
        return None

    # ---- helpers -------------------------------------------------------------------------------

    def _position(self, msg: InMessage) -> Position:
        """Where the event sits in its source: a redelivery after a crash is recognised by it."""
        return self._tag(msg.topic), msg.partition, msg.offset

    def _tag(self, topic: str) -> int:
        tag = self._tags.get(topic)
        if tag is None:
            tag = self._tags[topic] = source_tag(topic)
        return tag

    def _touch(self, key: bytes, index: int, touched: dict[bytes, Touched], partition: int = 0) -> Touched:
        entry = touched.get(key)
        if entry is None:
            raw = self.store.get(key)
            state = None
            if raw is not None:
                state = self.cache.take(key, raw) or CustomerState.from_bytes(
                    raw, partition=self.home(key) if self.home is not None else None)
            entry = touched[key] = Touched(state, raw, index, partition)
            if state is not None and state.outbox:  # a crash between saving and sending: send as saved
                entry.changes = [SegmentChange.model_validate_json(c) for c in state.outbox]
                self.metrics.changes_resent.inc(len(entry.changes))
        else:
            entry.last_index, entry.partition = index, partition
        return entry

    def _write(self, entries: Iterable[tuple[bytes, Touched]],
               bind: Callable[[int], contextlib.AbstractContextManager], through: bool = False) -> None:
        """Save every state that differs from what the store holds (``through``: to the table now)."""
        for key, entry in entries:
            context = functools.partial(bind, entry.last_index)
            if entry.state is None:
                if entry.raw is not None:
                    self.store.save(key, None, entry.partition, context)
                    entry.raw = None
                continue
            new = entry.state.to_bytes()
            if new != entry.raw:
                if through:
                    self.store.write_through(key, new, context)
                else:
                    self.store.save(key, new, entry.partition, context)
                entry.raw = new

    def _observe_timing(self, started: float, messages: int, applied: int, changes: list[SegmentChange],
                        touched: dict[bytes, Touched]) -> None:
        for (event_type, outcome), count in self._outcomes.items():
            self.metrics.event(event_type, outcome, count)
        self.metrics.batch_messages.observe(messages)
        if applied:
            self.metrics.processed((time.perf_counter() - started) / applied, applied)
        if changes and self.clock.mode == "wall":  # on an event clock the gap is replay time
            now = time.time()
            for c in changes:
                entry = touched.get(c.customer_id.encode())
                if entry is not None and entry.latest_event_ts:
                    self.metrics.event_to_change.observe(max(now - entry.latest_event_ts, 0.0))

    async def _emit(self, changes: list[SegmentChange]) -> None:
        if not changes:
            return
        await self.outputs.changes(changes)
        for c in changes:
            if c.previous_segment is not None:
                self.flow.record(c.kind.value, c.previous_segment.id, entered=False)
            if c.segment is not None:
                self.flow.record(c.kind.value, c.segment.id, entered=True)
            self.metrics.change(c.kind.value, c.reason.code.value, c.previous_segment.id if c.previous_segment else None,
                                c.segment.id if c.segment else None, bool(c.reason.details.get("flap")))

    async def _dead(self, msg: InMessage, source_type: str, problems: list[FieldProblem]) -> None:
        await self.outputs.dead_letter(msg, source_type, problems)
        self.metrics.dead_letters[source_type].inc()
        # No payload or customer id in the log: the dead-letter topic has them, logs are for ops.
        # Field names outside the contract are the sender's text: not logged either.
        summary = "; ".join(_loggable_problem(p, source_type) for p in problems)
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, summary[:300])


#: The fields only a profile event has: its traits. A reason given for one may quote the value
#: ("'de' is not an ISO 3166-1 alpha-2 country code", an acquisition cost the rates cannot value):
#: traits are never logged, so for these only the field and the error code are.
_OTHER_FIELDS = frozenset({"key", "type"}).union(*(cls.model_fields for name, cls in EVENT_TYPES.items()
                                                   if name != "profile"))
TRAIT_FIELDS = frozenset(ProfileEvent.model_fields) - _OTHER_FIELDS
#: Names that may follow a contract field in a problem's path (``consent.email``, ``interests.3``).
_NESTED_FIELDS = frozenset(Consent.model_fields)


def _loggable_problem(problem: FieldProblem, source_type: str) -> str:
    """``field: reason`` for the log; ``field: <error code>`` for a trait field, and for anything
    but the fields every contract shares (key, ids, timestamp, currency...) of a profile event: the
    reason could quote a trait. The dead letter keeps the reason."""
    head = problem.field.split(".")[0]
    if head in TRAIT_FIELDS or (source_type == "profile" and head not in _OTHER_FIELDS):
        return f"{_loggable_field(problem.field)}: <{problem.error}>"
    return f"{_loggable_field(problem.field)}: {problem.message}"


def _loggable_field(name: str) -> str:
    """``name`` as the log shows it: a contract field's path, else ``<unknown field>`` (a name
    outside the contract is the sender's text, and may be anything: a profile's consent key, say)."""
    if not name:
        return "<message>"
    head, *rest = name.split(".")
    if head not in CONTRACT_FIELDS:
        return "<unknown field>"
    shown = [head]
    for part in rest:  # a sender's key may hold dots itself: nothing of it after the first unknown part
        if not (part.isdigit() or part in _NESTED_FIELDS):
            shown.append("<unknown field>")
            break
        shown.append(part)
    return ".".join(shown)


class PassTally:
    """Segment memberships, and the KPIs of their members, over one partition's share of a sweep pass."""

    def __init__(self, sweep_pass: int, kpis: SegmentKPIs | None = None):
        self.sweep_pass = sweep_pass
        self.segments: Counter[tuple[str, str]] = Counter()
        self.customers = 0
        self.kpis = kpis
        self.whole = True  # False once a batch of the pass went uncounted

    def count(self, state: CustomerState) -> None:
        self.customers += 1
        if state.cluster is not None:
            self.segments[("cluster", state.cluster)] += 1
        for rule in state.rules:
            self.segments[("rule", rule)] += 1


class PopulationTally:
    """Exact segment populations of this worker's partitions, one sweep pass at a time.

    The sweep visits every customer of every active partition once per pass, so counting there
    costs nothing extra; a partition's count is complete at its last batch of the pass, and the
    published figure is the sum over the partitions still owned.
    """

    def __init__(self, active_partitions: Callable[[], set[int]] | None = None,
                 new_kpis: Callable[[], SegmentKPIs] | None = None, sweeper: str | None = None):
        """``sweeper``: the identity of the passes counted (:attr:`streams.sweep.Sweeper.identity`);
        None counts every pass."""
        self.active_partitions = active_partitions
        self.new_kpis = new_kpis
        self.sweeper = sweeper
        self._current: dict[int, PassTally] = {}
        self._complete: dict[int, PassTally] = {}

    def batch(self, partition: int, sweep_pass: int, sweeper: str | None = None) -> PassTally | None:
        """The tally of the partition's share of the pass; None for another sweeper's batch. Pass
        numbers are a sweeper's own: a batch a previous owner of the partition sent before a
        rebalance (or this worker before a restart) would otherwise count into this one's pass."""
        if self.sweeper is not None and sweeper != self.sweeper:
            return None
        tally = self._current.get(partition)
        if tally is None or tally.sweep_pass != sweep_pass:
            tally = self._current[partition] = PassTally(sweep_pass, self.new_kpis() if self.new_kpis else None)
        return tally

    def kpis(self) -> SegmentKPIs | None:
        """The KPIs over the owned partitions' last complete passes (call after :meth:`complete`);
        None without an accumulator factory or a complete pass."""
        if self.new_kpis is None or not self._complete:
            return None
        merged = self.new_kpis()
        parts = [tally.kpis for tally in self._complete.values() if tally.kpis is not None]
        if len({part.dim for part in parts} - {None}) > 1:  # passes under models with other features
            parts = [part.drop_features() for part in parts]
        for part in parts:
            merged.merge(part)
        return merged

    def partitions(self) -> tuple[int, ...]:
        """The partitions :meth:`kpis` and :meth:`complete`'s totals cover (owned, a pass complete)."""
        return tuple(sorted(self._complete))

    def complete(self, partition: int) -> tuple[Counter[tuple[str, str]], int]:
        """Mark the partition's pass complete; the totals over the owned partitions. A pass that
        missed some of its batches (:attr:`PassTally.whole`) leaves the partition's last whole one."""
        tally = self._current.pop(partition, PassTally(0))
        if tally.whole:
            self._complete[partition] = tally
        owned = self.active_partitions() if self.active_partitions else set(self._complete)
        for gone in set(self._complete) - owned:
            del self._complete[gone]
        totals: Counter[tuple[str, str]] = Counter()
        for tally in self._complete.values():
            totals.update(tally.segments)
        return totals, sum(t.customers for t in self._complete.values())
