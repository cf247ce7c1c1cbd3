"""Hostile input (tests/hostile.py) mixed into valid traffic: every bad message is dead-lettered
with a reason, the worker stays up, and the counts reconcile:
consumed = applied + dead-lettered + duplicates ignored."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from models.state import CustomerState
from models.synthetic import generate_population
from schemas.events import parse_event
from streams.processor import InMessage
from streams.settings import Settings
from tests.hostile import Hostile, mix
from tests.kafka_helpers import WorkerProcess, consume, wait_until
from tests.test_processor_crashes import BrokerOutputs, processor
from tests.test_worker_e2e import matches_truth, worker_env

BAD_MESSAGES = 10_000


def valid_events(customers: int, seed: int) -> list[dict]:
    return generate_population(customers, seed=seed, end=time.time() - 86_400).events


def truth_of(events: list[dict]) -> dict[str, CustomerState]:
    from models.config import ValueConfig

    states: dict[str, CustomerState] = {}
    for e in events:
        event = parse_event(orjson.dumps(e))
        states.setdefault(event.customer_id, CustomerState(event.customer_id)).apply(event, ValueConfig())
    return states


def blames(field: str, fields: list[str]) -> bool:
    """One of the reasons names ``field`` (or a part of it, like ``amount.0`` for a list)."""
    return any(f == field or f.startswith(field + ".") for f in fields)


class RecordingOutputs(BrokerOutputs):
    def __init__(self) -> None:
        super().__init__()
        self.dead: list[tuple[InMessage, list]] = []

    async def dead_letter(self, message: InMessage, source_type: str, problems: list) -> None:
        self.dead.append((message, problems))


def test_every_hostile_message_is_dead_lettered_by_the_processor() -> None:
    """The same mix through the worker's processor in process: fast, and it names every miss."""
    events = valid_events(40, seed=3)
    mixed = mix(events, 3000, seed=1, now=datetime.now(timezone.utc))
    prefix = Settings().topics.prefix
    offsets: Counter[str] = Counter()
    inbox = []
    for topic, key, value, _ in mixed:
        name = prefix + topic
        inbox.append(InMessage(name, 0, offsets[name], key, value))
        offsets[name] += 1
    table: dict[bytes, bytes] = {}
    outputs = RecordingOutputs()
    proc = processor(table, outputs)
    for start in range(0, len(inbox), 500):
        asyncio.run(proc.handle_batch(inbox[start:start + 500]))

    dead = {(m.topic, m.offset): problems for m, problems in outputs.dead}
    for (_, _, _, hostile), msg in zip(mixed, inbox):
        problems = dead.get((msg.topic, msg.offset))
        if hostile is None or hostile.expect == "duplicate":
            assert problems is None, (msg, problems)
            continue
        assert problems, f"{hostile.category} not dead-lettered: {msg.value!r:.200}"
        if hostile.field is not None:
            assert blames(hostile.field, [p.field for p in problems]), (hostile.category, problems)
    for customer_id, state in truth_of(events).items():
        got = CustomerState.from_bytes(table[customer_id.encode()])
        assert (got.purchase_count, got.total_spend, got.engagement_count) == \
               (state.purchase_count, state.total_spend, state.engagement_count)


async def _produce(bootstrap: str, prefix: str, mixed: list) -> list[tuple[str, int, int]]:
    """Send in order; (topic, partition, offset) of each message."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=2 * 1024 * 1024, linger_ms=5)
    await producer.start()
    try:
        futures = [await producer.send(prefix + topic, value, key=key) for topic, key, value, _ in mixed]
        metadata = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return [(m.topic, m.partition, m.offset) for m in metadata]


@pytest.mark.kafka
def test_a_hostile_flood_on_the_real_broker_is_dead_lettered_and_reconciles(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"hostile{datetime.now().strftime('%H%M%S%f')}."
    events = valid_events(80, seed=12)
    mixed = mix(events, BAD_MESSAGES, seed=2, now=datetime.now(timezone.utc))
    kinds: Counter[str] = Counter("valid" if h is None else h.expect for *_, h in mixed)
    assert kinds["dead_letter"] >= BAD_MESSAGES and kinds["duplicate"] > 0
    # The event clock makes the test independent of the wall clock; the engine still refuses
    # events from the future by the wall clock.
    worker = WorkerProcess(worker_env(kafka_bootstrap, prefix, tmp_path / "data"), tmp_path / "worker.log")
    try:
        worker.wait_ready()
        positions = asyncio.run(_produce(kafka_bootstrap, prefix, mixed))

        def consumed() -> float:
            return worker.metric("segstream_events_total")

        wait_until(lambda: consumed() >= len(mixed), 300, f"all {len(mixed)} messages consumed")
        time.sleep(1.0)
        assert worker.proc.poll() is None, "the worker died"
        assert worker.request("/ready")[0] == 200

        applied = worker.metric("segstream_events_total", outcome="applied")
        duplicates = worker.metric("segstream_events_total", outcome="duplicate")
        invalid = worker.metric("segstream_events_total", outcome="invalid")
        rejected = worker.metric("segstream_events_total", outcome="rejected")
        dead = worker.metric("segstream_dead_letters_total")
        assert consumed() == len(mixed) == applied + dead + duplicates  # the reconciliation
        assert invalid + rejected == dead

        letters = asyncio.run(consume(kafka_bootstrap, f"{prefix}dead-letter", int(dead), timeout_s=120))
        assert len(letters) == dead
        expected = {pos: h for pos, (*_, h) in zip(positions, mixed) if h is not None and h.expect == "dead_letter"}
        by_category: Counter[str] = Counter()
        for record in letters:
            letter = orjson.loads(record.value)
            source = letter["source"]
            hostile: Hostile = expected.pop((source["topic"], source["partition"], source["offset"]))
            assert letter["error"] and letter["problems"], letter
            if hostile.field is not None:
                assert blames(hostile.field, [p["field"] for p in letter["problems"]]), (hostile, letter)
            assert letter["payload_size"] == len(hostile.value or b"")
            assert len(record.value) < 200_000  # huge payloads and keys are cut, not re-sent whole
            by_category[hostile.category] += 1
        missed = Counter(f"{h.category}: {(h.value or b'')[:120]!r}" for h in expected.values())
        assert not missed, missed  # every bad message has its dead letter, exactly one
        assert (applied, duplicates, dead) == (kinds["valid"], kinds["duplicate"], kinds["dead_letter"])
        assert {"invalid_json", "invalid_utf8", "wrong_type", "missing_field", "huge_payload", "nan_infinity",
                "far_past", "far_future", "key_mismatch", "unknown_type", "wrong_topic"} <= set(by_category)
        assert by_category["hypothesis_replace"] + by_category["hypothesis_extra"] >= BAD_MESSAGES * 0.25

        for customer_id, state in list(truth_of(events).items())[:40]:
            status, profile = worker.request(f"/customers/{customer_id}")
            assert status == 200 and matches_truth(profile, state), customer_id  # type: ignore[arg-type]
        log = worker.log_path.read_text(errors="replace")
        assert "similar message" in log or log.count("dead-lettered") <= 40  # throttled
    finally:
        assert worker.stop() == 0, worker.log_tail()
