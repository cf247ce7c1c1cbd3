"""What the customer agent does with each message: the adapter between Kafka and the pure engine.

One agent (concurrency 1) consumes every per-customer topic: the three event types, erase
requests and the sweep's re-evaluation batches. One agent, not one per topic, because they all
read-modify-write the same table entry: two agents would interleave at their ``await`` points
and lose updates.

Ordering within a message, chosen for at-least-once delivery:

1. a bad message goes to the dead-letter topic with the reason and processing goes on;
2. the state is updated in memory (idempotent per ``event_id``: a redelivered event is a no-op);
3. the segment changes it caused are sent **and acknowledged**;
4. only then is the state written to the table (and so to its changelog).

A crash between 3 and 4 replays the event onto the old state, which re-emits the same changes
with the same deterministic ``change_id`` (a consumer deduplicates them); a crash after 4 finds
the event already applied and emits nothing. Either way no change is lost.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, MutableMapping, Protocol

import orjson

from models.pipeline import Pipeline
from models.state import CustomerState, EngineRejection
from monitoring.metrics import WorkerMetrics
from schemas.erasure import parse_erasure
from schemas.events import AnyEvent, EventValidationError, FieldProblem, parse_event
from schemas.segment_change import SegmentChange
from streams.clock import WorkerClock
from streams.sampling import SampleForwarder

log = logging.getLogger("segstream.worker")

ERASURE, REEVALUATE = "erasure", "reevaluate"


@dataclass(frozen=True, slots=True)
class InMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Outputs(Protocol):
    async def changes(self, changes: list[SegmentChange]) -> None:
        """Send the changes and return once the broker has acknowledged every one."""

    async def dead_letter(self, message: InMessage, source_type: str, problems: list[FieldProblem]) -> None: ...


def key_problem(key: bytes | None, customer_id: str) -> list[FieldProblem]:
    """The message key must be the customer id, or tables and topics stop being co-partitioned."""
    if key is None or key != customer_id.encode():
        return [FieldProblem(field="key", error="key_mismatch", message="message key must equal customer_id")]
    return []


class CustomerProcessor:
    def __init__(self, pipeline: Pipeline, table: MutableMapping[bytes, bytes], outputs: Outputs,
                 clock: WorkerClock, forwarder: SampleForwarder, metrics: WorkerMetrics,
                 routes: dict[str, str], active_partitions: Callable[[], set[int]] | None = None):
        """``routes``: topic name -> event type, ``"erasure"`` or ``"reevaluate"``."""
        self.pipeline = pipeline
        self.table = table
        self.outputs = outputs
        self.clock = clock
        self.forwarder = forwarder
        self.metrics = metrics
        self.routes = routes
        self.populations = PopulationTally(active_partitions)

    async def handle(self, msg: InMessage) -> None:
        route = self.routes.get(msg.topic)
        if route == REEVALUATE:
            await self.reevaluate(msg)
        elif route == ERASURE:
            await self.erase(msg)
        elif route is not None:
            await self.ingest(msg, route)
        else:  # not subscribed by us; cannot happen unless the topic settings change under a running group
            log.error("message from unexpected topic %s[%d]@%d ignored", msg.topic, msg.partition, msg.offset)

    # ---- events ------------------------------------------------------------------------------

    async def ingest(self, msg: InMessage, event_type: str) -> None:
        started = time.perf_counter()
        event = await self._validated(msg, event_type)
        if event is None:
            return
        state = self._load(msg.key) or self.pipeline.new_state(event.customer_id)  # type: ignore[arg-type]
        self.clock.observe(event.timestamp.timestamp())
        now = time.time()
        try:
            outcome = self.pipeline.process(state, event, now=now, clock=self.clock.now())
        except EngineRejection as exc:
            self.metrics.event(event_type, "rejected")
            await self._dead(msg, event_type, [FieldProblem(field=exc.field, error="rejected", message=exc.message)])
            return
        if not outcome.applied:
            self.metrics.event(event_type, "duplicate")
            return
        await self._emit(outcome.changes)
        self.table[msg.key] = state.to_bytes()  # type: ignore[index]
        self.metrics.event(event_type, "applied")
        self.metrics.processing.observe(time.perf_counter() - started)
        if outcome.changes and self.clock.mode == "wall":  # on an event clock the gap is replay time
            self.metrics.event_to_change.observe(max(time.time() - event.timestamp.timestamp(), 0.0))

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

    # ---- the clock-driven sweep ----------------------------------------------------------------

    async def reevaluate(self, msg: InMessage) -> None:
        """Re-evaluate a batch of customers (all of this message's partition) as of the clock."""
        at = self.clock.now()
        try:
            batch = orjson.loads(msg.value or b"")
            customer_ids = batch["customers"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            await self._dead(msg, REEVALUATE, [FieldProblem(field="customers", error="invalid",
                                                            message="not a re-evaluation batch")])
            return
        if at is None:
            return
        changes: list[SegmentChange] = []
        updates: dict[bytes, bytes] = {}
        tally = self.populations.batch(msg.partition, batch.get("pass", 0))
        for customer_id in customer_ids:
            key = customer_id.encode()
            raw = self.table.get(key)
            if raw is None:
                continue  # erased since the sweep listed it
            state = CustomerState.from_bytes(raw)
            changes.extend(self.pipeline.evaluate(state, at))
            tally.count(state)
            new = state.to_bytes()
            if new != raw:
                updates[key] = new
        await self._emit(changes)
        for key, value in updates.items():
            self.table[key] = value
        self.metrics.reevaluated.inc(len(customer_ids))
        if batch.get("end"):
            counts, customers = self.populations.complete(msg.partition)
            self.metrics.populations(counts, customers)

    # ---- erasure -------------------------------------------------------------------------------

    async def erase(self, msg: InMessage) -> None:
        try:
            request = parse_erasure(msg.value or b"")
            problems = key_problem(msg.key, request.customer_id)
            if problems:
                raise EventValidationError(problems)
        except EventValidationError as exc:
            await self._dead(msg, ERASURE, exc.problems)
            return
        state = self._load(msg.key)
        self.forwarder.forget(request.customer_id)
        if state is not None:
            at = self.clock.now() or time.time()
            await self._emit(self.pipeline.erase(state, at))
            del self.table[msg.key]  # type: ignore[arg-type]
        self.metrics.erasures_found[state is not None].inc()
        # The request id, not the customer id: logs are for ops and must not hold customer data.
        log.info("erase request %s: %s", request.request_id, "state deleted" if state else "no state held")

    # ---- helpers -------------------------------------------------------------------------------

    def _load(self, key: bytes | None) -> CustomerState | None:
        raw = self.table.get(key) if key is not None else None
        return CustomerState.from_bytes(raw) if raw is not None else None

    async def _emit(self, changes: list[SegmentChange]) -> None:
        if not changes:
            return
        await self.outputs.changes(changes)
        for c in changes:
            self.metrics.change(c.kind.value, c.reason.code.value, c.previous_segment.id if c.previous_segment else None,
                                c.segment.id if c.segment else None, bool(c.reason.details.get("flap")))

    async def _dead(self, msg: InMessage, source_type: str, problems: list[FieldProblem]) -> None:
        await self.outputs.dead_letter(msg, source_type, problems)
        self.metrics.dead_letters[source_type].inc()
        # No payload or customer id in the log: the dead-letter topic has them, logs are for ops.
        summary = "; ".join(f"{p.field or '<message>'}: {p.message}" for p in problems)
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, summary[:300])




class PassTally:
    """Segment memberships counted over one partition's share of a sweep pass."""

    def __init__(self, sweep_pass: int):
        self.sweep_pass = sweep_pass
        self.segments: Counter[tuple[str, str]] = Counter()
        self.customers = 0

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

    def __init__(self, active_partitions: Callable[[], set[int]] | None = None):
        self.active_partitions = active_partitions
        self._current: dict[int, PassTally] = {}
        self._complete: dict[int, PassTally] = {}

    def batch(self, partition: int, sweep_pass: int) -> PassTally:
        tally = self._current.get(partition)
        if tally is None or tally.sweep_pass != sweep_pass:
            tally = self._current[partition] = PassTally(sweep_pass)
        return tally

    def complete(self, partition: int) -> tuple[Counter[tuple[str, str]], int]:
        """Mark the partition's pass complete; the totals over the owned partitions."""
        self._complete[partition] = self._current.pop(partition, PassTally(0))
        owned = self.active_partitions() if self.active_partitions else set(self._complete)
        for gone in set(self._complete) - owned:
            del self._complete[gone]
        totals: Counter[tuple[str, str]] = Counter()
        for tally in self._complete.values():
            totals.update(tally.segments)
        return totals, sum(t.customers for t in self._complete.values())
