"""Offline replay: the same engine as the worker, driven from a JSONL file instead of Kafka.

``segstream replay EVENTS.jsonl --as-of T --profiles-out FILE`` applies every valid event stamped
at or before ``T`` (any order, mixed types), refits the lifetime-value model as of ``T`` and writes
one JSON profile per customer. Invalid lines are reported with their line numbers and counted.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import orjson

from models.config import EngineConfig
from models.pipeline import Pipeline
from models.state import CustomerState, EngineRejection
from schemas.segment_change import SegmentChange
from schemas.events import EventValidationError, parse_event


@dataclass
class Rejected:
    line: int
    error: str


@dataclass
class ReplayReport:
    lines: int = 0
    applied: int = 0
    duplicates: int = 0
    after_as_of: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    by_type: Counter[str] = field(default_factory=Counter)
    customers: int = 0
    seconds: float = 0.0
    valuation: dict | None = None
    changes: int = 0
    model_version: int | None = None

    @property
    def invalid(self) -> int:
        return len(self.rejected)

    @property
    def events_per_s(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def reconciles(self) -> bool:
        """Every line is accounted for: nothing is dropped silently."""
        return self.lines == self.applied + self.duplicates + self.after_as_of + self.invalid


def iter_jsonl(path: Path, on_bytes: Callable[[int], None] | None = None) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if on_bytes is not None:
                on_bytes(len(line))
            stripped = line.strip()
            if stripped:
                yield number, stripped


class Replay:
    """Holds the pipeline and the states; ``feed`` lines, ``finish``, then ``profiles``.

    Segments are evaluated on an event-time clock (the latest event time seen, at most the as-of
    time), so a replay of history yields the changes the worker would have emitted.
    """

    def __init__(self, config: EngineConfig, as_of: float,
                 on_change: Callable[[SegmentChange], None] | None = None):
        self.config = config
        self.as_of = as_of
        self.pipeline = Pipeline(config, auto_refit=False)
        self.engine = self.pipeline.values
        self.states: dict[str, CustomerState] = {}
        self.clock = float("-inf")
        self.on_change = on_change
        self.report = ReplayReport()

    def feed(self, number: int, raw: bytes) -> None:
        report = self.report
        report.lines += 1
        try:
            event = parse_event(raw)
        except EventValidationError as exc:
            report.rejected.append(Rejected(number, str(exc)))
            return
        if event.timestamp.timestamp() > self.as_of:
            report.after_as_of += 1
            return
        # Repeated events are recognised by the state itself, exactly as in the worker: one
        # identity (customer, event type, event_id) and one window (models.state).
        state = self.states.get(event.customer_id)
        if state is None:
            state = self.states[event.customer_id] = self.engine.new_state(event.customer_id)
        self.clock = max(self.clock, event.timestamp.timestamp())
        try:
            outcome = self.pipeline.process(state, event, now=self.as_of, clock=self.clock)
        except EngineRejection as exc:
            report.rejected.append(Rejected(number, str(exc)))
            if state.applied_events == 0:
                del self.states[event.customer_id]  # a customer known only from a rejected event
            return
        if outcome.applied:
            report.applied += 1
            report.by_type[event.type] += 1
            self._emit(outcome.changes)
        else:
            report.duplicates += 1

    def _emit(self, changes: list[SegmentChange]) -> None:
        self.report.changes += len(changes)
        if self.on_change is not None:
            for change in changes:
                self.on_change(change)

    def finish(self) -> None:
        """Refit and retrain as of the as-of time, then re-evaluate every customer at that time
        (customers who lapsed without new events change segment here, as in the worker's sweep)."""
        self.pipeline.train(self.as_of)
        for customer_id in sorted(self.states):
            self._emit(self.pipeline.evaluate(self.states[customer_id], self.as_of))
        self.report.customers = len(self.states)
        self.report.valuation = self.engine.valuation.to_dict()
        snap = self.pipeline.snapshot
        self.report.model_version = snap.version if snap else None

    def profiles(self) -> Iterator[dict]:
        for customer_id in sorted(self.states):
            yield self.pipeline.profile(self.states[customer_id], self.as_of)


def write_jsonl(path: Path, docs: Iterator[dict]) -> int:
    count = 0
    with path.open("wb") as f:
        for doc in docs:
            f.write(orjson.dumps(doc))
            f.write(b"\n")
            count += 1
    return count


def run_replay(
    events: Path, as_of: float, config: EngineConfig, profiles_out: Path,
    on_bytes: Callable[[int], None] | None = None, changes_out: Path | None = None,
    snapshot_out: Path | None = None,
) -> ReplayReport:
    started = time.perf_counter()
    changes_file = changes_out.open("wb") if changes_out else None
    on_change = (lambda c: changes_file.write(c.model_dump_json().encode() + b"\n")) if changes_file else None
    try:
        replay = Replay(config, as_of, on_change=on_change)
        for number, raw in iter_jsonl(events, on_bytes):
            replay.feed(number, raw)
        replay.finish()
    finally:
        if changes_file:
            changes_file.close()
    write_jsonl(profiles_out, replay.profiles())
    final = replay.pipeline.segmenter.with_current_sizes()  # sizes after the last re-evaluation
    if snapshot_out and final:
        snapshot_out.write_bytes(final.to_bytes())
    replay.report.seconds = time.perf_counter() - started
    return replay.report
