"""Offline replay: the same engine as the worker, driven from a JSONL file instead of Kafka.

``segstream replay EVENTS.jsonl --as-of T --profiles-out FILE`` applies every valid event stamped
at or before ``T`` (any order, mixed types), refits the lifetime-value model as of ``T`` and writes
one JSON profile per customer. Invalid lines are reported with their line numbers and counted.

The change stream (``--changes-out``) is the one a live worker with its sweep would have emitted
in event time:

* **one order**: the valid events are applied in the order of a total key (event time, customer,
  event type, ``event_id``, then the line's bytes), so the same data in any line order gives the
  same profiles and the same changes;
* **one clock that only accepted data moves**: segments are evaluated at the latest time of an
  *applied* event; a rejected or repeated event moves nothing;
* **the sweep in event time**: every ``replay.sweep_every_s`` of event time (at its multiples since
  the epoch: UTC midnights by default) every customer is re-evaluated as of that tick, as the
  worker's sweep re-evaluates every customer as of its clock. A customer who lapses between two
  of their own events changes segment at the first tick after the crossing, not at their next
  event (or never). Ticks run up to the as-of time; the last evaluation is at the as-of time.

Ordering holds one valid line's bytes plus about 220 bytes of key in memory, about 0.4 GB per
million events (``docs/benchmarks.md``); past ``replay.sort_buffer_events`` lines, sorted runs are
spilled to temporary files and merged (an external merge sort), so a file larger than memory
replays too.
"""

from __future__ import annotations

import codecs
import heapq
import math
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

import msgpack
import orjson

from models.config import EngineConfig
from models.pipeline import Pipeline
from models.snapshot import FORMAT as SNAPSHOT_FORMAT
from models.state import CustomerState, EngineRejection
from schemas.segment_change import SegmentChange
from schemas.events import AnyEvent, EventValidationError, parse_event


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
    no_model: str | None = None  # why there is no model, when there is none
    sweeps: int = 0  # event-time sweep ticks run (those before any model or rule are skipped)

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
    """(line number, stripped line) for each non-empty line; a UTF-8 byte order mark at the start
    of the file is dropped (``utf-8-sig``), as ``segstream produce`` drops it. One at the start of
    a later line (two files concatenated) is kept: :meth:`Replay.feed` rejects that line, naming
    the mark (:data:`BOM_INSIDE`)."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            if on_bytes is not None:
                on_bytes(len(line))
            stripped = line.strip()
            if number == 1:
                stripped = stripped.removeprefix(codecs.BOM_UTF8).strip()
            if stripped:
                yield number, stripped


#: Customers evaluated together at a sweep tick (bounds the feature matrix: 2,000 x 9 floats).
_EVALUATION_BATCH = 2000

#: Why a line that starts with a UTF-8 byte order mark is rejected. Only the file's first line may
#: carry one (it is dropped there): further on it is the start of a second file pasted after the
#: first, and JSON itself does not allow it.
BOM_INSIDE = ("the line starts with a UTF-8 byte-order mark (U+FEFF), allowed only at the start of the "
              "file (two files concatenated?): remove the mark")

#: A valid line's place in the replay's order: (event time, customer, event type, event_id, the
#: line's bytes, line number). Total on the content: two lines tie only if they are identical.
OrderKey = tuple[float, str, str, str, bytes, int]


def order_key(number: int, raw: bytes, event: AnyEvent) -> OrderKey:
    """>>> from schemas.events import parse_event
    >>> raw = b'{"type":"purchase","event_id":"o1","customer_id":"c1","timestamp":"2026-01-05T00:00:00Z","amount":5}'
    >>> order_key(7, raw, parse_event(raw))[:4]
    (1767571200.0, 'c1', 'purchase', 'o1')
    """
    return event.timestamp.timestamp(), event.customer_id, event.type, event.event_id, raw, number


def ordered(keys: Iterable[OrderKey], buffer: int) -> Iterator[OrderKey]:
    """``keys`` in order, at most ``buffer`` of them in memory: beyond that, sorted runs of
    ``buffer`` keys are spilled to temporary files and merged.

    >>> keys = [(3.0, "c", "purchase", "e3", b"x", 1), (1.0, "a", "purchase", "e1", b"y", 2),
    ...         (2.0, "b", "purchase", "e2", b"z", 3)]
    >>> [k[-1] for k in ordered(keys, buffer=1)] == [k[-1] for k in ordered(keys, buffer=10)] == [2, 3, 1]
    True
    """
    runs: list[IO[bytes]] = []
    chunk: list[OrderKey] = []
    try:
        for key in keys:
            chunk.append(key)
            if len(chunk) >= buffer:
                runs.append(_spill(sorted(chunk)))
                chunk = []
        chunk.sort()
        yield from heapq.merge(chunk, *map(_read_run, runs)) if runs else chunk
    finally:
        for run in runs:
            run.close()


def _spill(chunk: list[OrderKey]) -> IO[bytes]:
    run = tempfile.TemporaryFile()
    packer = msgpack.Packer()  # bytes stay bytes, str stay str, floats stay float64: keys compare alike
    for key in chunk:
        run.write(packer.pack(key))
    run.seek(0)
    return run


def _read_run(run: IO[bytes]) -> Iterator[OrderKey]:
    return iter(msgpack.Unpacker(run, use_list=False, raw=False))  # tuples, as the keys in memory


class Replay:
    """Holds the pipeline and the states; ``feed`` lines (or ``feed_all``), ``finish``, then ``profiles``.

    ``feed`` applies events in the order given, with the event-time sweep driven by their times
    (right for a time-ordered source); ``feed_all`` orders them first (see the module doc), which
    is what ``segstream replay`` does. ``sweep_every_s`` overrides ``config.replay.sweep_every_s``
    (0: no sweep).
    """

    def __init__(self, config: EngineConfig, as_of: float,
                 on_change: Callable[[SegmentChange], None] | None = None,
                 sweep_every_s: float | None = None, pipeline: Pipeline | None = None):
        """``pipeline``: the engine to replay through (default: one that trains by event count,
        ``train_every_events``, and refits only with its trainings)."""
        self.config = config
        self.as_of = as_of
        self.pipeline = pipeline if pipeline is not None else Pipeline(config, auto_refit=False)
        self.engine = self.pipeline.values
        self.states: dict[str, CustomerState] = {}
        self.clock = -math.inf  # the latest time of an applied event
        self.on_change = on_change
        self.report = ReplayReport()
        self.sweep_every_s = config.replay.sweep_every_s if sweep_every_s is None else sweep_every_s
        self._next_tick = math.inf  # set by the first applied event

    def feed_events(self, events: Iterable[dict]) -> "Replay":
        """Feed contract events given as dicts (tests and benchmarks), numbered from 1."""
        for number, event in enumerate(events, 1):
            self.feed(number, orjson.dumps(event))
        return self

    def feed(self, number: int, raw: bytes) -> None:
        event = self._parse(number, raw)
        if event is not None:
            self.apply(number, event)

    def feed_all(self, lines: Iterable[tuple[int, bytes]]) -> None:
        """Apply ``lines`` (number, bytes) in the replay's order, whatever order they come in."""
        def keys() -> Iterator[OrderKey]:
            for number, raw in lines:
                event = self._parse(number, raw)
                if event is not None:
                    yield order_key(number, raw, event)

        # Parsed again in order: a key and the bytes take far less memory than an event.
        for *_, raw, number in ordered(keys(), self.config.replay.sort_buffer_events):
            self.apply(number, parse_event(raw))
        self.report.rejected.sort(key=lambda r: r.line)

    def _parse(self, number: int, raw: bytes) -> AnyEvent | None:
        """The event on a line, or None when it is invalid (reported) or after the as-of time."""
        report = self.report
        report.lines += 1
        if raw.startswith(codecs.BOM_UTF8):  # parse_event would say only "invalid JSON at column 1"
            report.rejected.append(Rejected(number, BOM_INSIDE))
            return None
        try:
            event = parse_event(raw)
        except EventValidationError as exc:
            report.rejected.append(Rejected(number, str(exc)))
            return None
        if event.timestamp.timestamp() > self.as_of:
            report.after_as_of += 1
            return None
        return event

    def apply(self, number: int, event: AnyEvent) -> None:
        """Apply one valid event stamped at or before the as-of time (``number``: its line)."""
        report = self.report
        ts = event.timestamp.timestamp()
        # Repeated events are recognised by the state itself, exactly as in the worker: one
        # identity (customer, event type, event_id) and one window (models.state).
        state = self.states.get(event.customer_id)
        known = state is not None
        if state is None:
            state = self.engine.new_state(event.customer_id)
        if self._next_tick < ts and self.engine.accepts(state, event, self.as_of):
            self._sweep_before(ts)  # time passes up to an accepted event only
        clock = max(self.clock, ts)
        try:
            outcome = self.pipeline.process(state, event, now=self.as_of, clock=clock)
        except EngineRejection as exc:  # no state, no profile, no clock: as in the worker
            report.rejected.append(Rejected(number, str(exc)))
            return
        if not outcome.applied:
            report.duplicates += 1
            return
        if not known:
            self.states[event.customer_id] = state
        if self.clock == -math.inf and self.sweep_every_s:
            self._next_tick = (math.floor(ts / self.sweep_every_s) + 1) * self.sweep_every_s
        self.clock = clock
        report.applied += 1
        report.by_type[event.type] += 1
        self._emit(outcome.changes)

    def _sweep_before(self, until: float) -> None:
        """Run the sweep ticks before ``until``: every customer re-evaluated as of each tick
        (never before the clock: events applied out of order can have moved it past a tick)."""
        while self._next_tick < until:
            # Without a model and without rules an evaluation changes nothing (and offers the
            # sample only the bases it already has): such ticks are skipped, not run.
            if self.pipeline.snapshot is not None or self.pipeline.rules is not None:
                self._evaluate_everyone(max(self._next_tick, self.clock))
                self.report.sweeps += 1
            self._next_tick += self.sweep_every_s

    def _evaluate_everyone(self, at: float) -> None:
        """Every customer as of ``at``, in id order, in batches (:meth:`Pipeline.evaluate_many`)."""
        ids = sorted(self.states)
        for start in range(0, len(ids), _EVALUATION_BATCH):
            states = [self.states[cid] for cid in ids[start:start + _EVALUATION_BATCH]]
            for changes in self.pipeline.evaluate_many(states, [at] * len(states)):
                self._emit(changes)

    def _emit(self, changes: list[SegmentChange]) -> None:
        self.report.changes += len(changes)
        if self.on_change is not None:
            for change in changes:
                self.on_change(change)

    def finish(self) -> None:
        """Sweep up to the as-of time, refit and retrain as of it, then re-evaluate every customer
        at that time (customers who lapsed without new events change segment here, as in the
        worker's sweep, if no tick caught it before)."""
        self._sweep_before(self.as_of)
        self.pipeline.train(self.as_of)
        self._evaluate_everyone(self.as_of)
        self.report.customers = len(self.states)
        self.report.valuation = self.engine.valuation.to_dict()
        snap = self.pipeline.snapshot
        self.report.model_version = snap.version if snap else None
        self.report.no_model = None if snap else self.pipeline.why_no_model()

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
    def write_change(change: SegmentChange) -> None:
        changes_file.write(change.model_dump_json().encode() + b"\n")  # type: ignore[union-attr]

    on_change = write_change if changes_file else None
    try:
        replay = Replay(config, as_of, on_change=on_change)
        replay.feed_all(iter_jsonl(events, on_bytes))
        replay.finish()
    finally:
        if changes_file:
            changes_file.close()
    write_jsonl(profiles_out, replay.profiles())
    if snapshot_out:
        # The rule section too (sizes, thresholds, pending ones): rules work without a model. Written
        # even without either, so the file never holds an older run's snapshot unsaid.
        snap = replay.pipeline.segmenter.with_current_sizes()  # sizes after the last re-evaluation
        doc = snap.to_dict() if snap else {"format": SNAPSHOT_FORMAT, "version": None, "segments": [],
                                           "no_model": replay.pipeline.why_no_model()}
        snapshot_out.write_bytes(orjson.dumps({**doc, **replay.pipeline.rule_report()},
                                              option=orjson.OPT_SERIALIZE_NUMPY))
    replay.report.seconds = time.perf_counter() - started
    return replay.report
