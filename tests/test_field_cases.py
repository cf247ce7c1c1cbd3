"""Contract faults from the field (issue #18, shared/cases): each input's right value, offline through
``segstream replay`` and online through the worker's processor (in process, no Kafka).

Cases: 07 (RFC 3339 timestamps), 10 line 8 (duplicated JSON keys), 10b (refund sign decided before
rounding), 14 (amounts and totals that overflow the stored integer micro-units).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from models.config import EngineConfig
from models.pipeline import Pipeline
from models.state import CustomerState
from monitoring.metrics import WorkerMetrics
from schemas.events import FieldProblem
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data"
TOPICS = Settings().topics


def replay(case: str, as_of: str, tmp_path: Path, env: dict[str, str] | None = None,
           lines: list[int] | None = None) -> tuple[dict[str, dict], dict[int, str]]:
    """Run ``segstream replay`` on a case file (or some of its lines): profiles by customer, and
    the rejected lines' reasons by line number (of the file given to the replay)."""
    source = DATA / case
    if lines is not None:
        picked = source.read_bytes().splitlines()
        source = tmp_path / case
        source.write_bytes(b"\n".join(picked[n - 1] for n in lines) + b"\n")
    profiles, rejects = tmp_path / "profiles.jsonl", tmp_path / "rejects.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(source), "--as-of", as_of,
         "--profiles-out", str(profiles), "--rejects-out", str(rejects)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    by_customer = {p["customer_id"]: p for p in map(orjson.loads, profiles.read_bytes().splitlines())}
    reasons = {r["line"]: r["error"] for r in map(orjson.loads, rejects.read_bytes().splitlines())}
    return by_customer, reasons


class DeadLetters:
    """The processor's outputs, keeping the dead letters (by offset) and dropping the rest."""

    def __init__(self) -> None:
        self.problems: dict[int, list[FieldProblem]] = {}

    async def changes(self, changes: list) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def dead_letter(self, message: InMessage, source_type: str, problems: list[FieldProblem]) -> None:
        self.problems[message.offset] = problems

    async def forward(self, message: InMessage, partition: int) -> None:
        raise AssertionError("one partition: nothing to forward")

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}


class Worker:
    """One partition's processor fed the lines of a case file (offset = line number)."""

    def __init__(self, engine: EngineConfig | None = None) -> None:
        routes = {name: etype for etype, name in TOPICS.input_topics.items()}
        self.table: dict[bytes, bytes] = {}
        self.outputs = DeadLetters()
        self.processor = CustomerProcessor(Pipeline(engine or EngineConfig(), train_locally=False), self.table,
                                           self.outputs, WorkerClock("event"), SampleForwarder(),
                                           WorkerMetrics(), routes)

    def feed_case(self, case: str, lines: list[int]) -> None:
        raw = (DATA / case).read_bytes().splitlines()
        msgs = []
        for n in lines:
            key = orjson.loads(raw[n - 1].lstrip(b"\xef\xbb\xbf"))["customer_id"].encode()
            msgs.append(InMessage(TOPICS.input_topics["purchase"], 0, n, key, raw[n - 1]))
        asyncio.run(self.processor.handle_batch(msgs))

    def state(self, customer_id: str) -> CustomerState:
        return CustomerState.from_bytes(self.table[customer_id.encode()])


# ---- case 07: timestamps are RFC 3339 date-times, nothing else ------------------------------------

CASE_07 = "07-timezones-dst.jsonl"
REJECTED_07 = [7, 8, 13, 14, 15, 16, 17, 18, 19]


def test_case_07_replay_accepts_exactly_the_rfc3339_lines(tmp_path: Path) -> None:
    profiles, reasons = replay(CASE_07, "2026-12-01T00:00:00Z", tmp_path)
    assert sorted(reasons) == REJECTED_07
    assert all(reason.startswith("timestamp:") for reason in reasons.values()), reasons
    assert "RFC 3339" in reasons[19] and "'1781085600'" in reasons[19]
    uk = profiles["uk-shopper"]
    assert (uk["purchase_count"], uk["frequency"], uk["recency"]) == (4, 2, 4)  # UTC days 03-28, 03-29, 04-01
    assert profiles["fmt-shopper"]["purchase_count"] == 4  # lines 9-12
    assert profiles["us-shopper"]["purchase_count"] == 2


def test_case_07_worker_dead_letters_the_same_lines() -> None:
    worker = Worker()
    worker.feed_case(CASE_07, list(range(1, 20)))
    assert sorted(worker.outputs.problems) == REJECTED_07
    assert {p.field for problems in worker.outputs.problems.values() for p in problems} == {"timestamp"}
    assert worker.state("fmt-shopper").purchase_count == 4
    assert (worker.state("uk-shopper").purchase_count, worker.state("uk-shopper").frequency) == (4, 2)
