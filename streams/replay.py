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
from models.engine import ValueEngine
from models.profile import build_profile
from models.state import CustomerState, EngineRejection, fingerprint
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
    """Holds the engine and the states; ``feed`` lines, then ``profiles``."""

    def __init__(self, config: EngineConfig, as_of: float):
        self.config = config
        self.as_of = as_of
        self.engine = ValueEngine(config.value, auto_refit=False)
        self.states: dict[str, CustomerState] = {}
        # A replay sees the whole history, so it can dedupe exactly; the worker dedupes within
        # each customer's recent window (models.state), which covers Kafka redelivery.
        self._seen: set[int] = set()
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
        fp = fingerprint(event.event_id)
        if fp in self._seen:
            report.duplicates += 1
            return
        state = self.states.get(event.customer_id)
        if state is None:
            state = self.states[event.customer_id] = self.engine.new_state(event.customer_id)
        try:
            result = self.engine.apply(state, event, now=self.as_of)
        except EngineRejection as exc:
            report.rejected.append(Rejected(number, str(exc)))
            return
        self._seen.add(fp)
        if result.applied:
            report.applied += 1
            report.by_type[event.type] += 1
        else:
            report.duplicates += 1

    def finish(self) -> None:
        """Refit the lifetime-value model on the whole population as of the as-of time."""
        self.engine.refit(self.as_of)
        self.report.customers = len(self.states)
        self.report.valuation = self.engine.valuation.to_dict()

    def profiles(self) -> Iterator[dict]:
        for customer_id in sorted(self.states):
            yield build_profile(self.states[customer_id], self.as_of, self.engine.valuation, self.config.value)


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
    on_bytes: Callable[[int], None] | None = None,
) -> ReplayReport:
    started = time.perf_counter()
    replay = Replay(config, as_of)
    for number, raw in iter_jsonl(events, on_bytes):
        replay.feed(number, raw)
    replay.finish()
    write_jsonl(profiles_out, replay.profiles())
    replay.report.seconds = time.perf_counter() - started
    return replay.report
