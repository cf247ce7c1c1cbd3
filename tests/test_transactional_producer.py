"""A producer of another team that writes the input in Kafka transactions: every transaction ends
with a commit marker, an offset with no message, so a partition's end offset stays one past its last
event. The worker must see such a partition as read to its end: no tail re-read every few seconds,
and an input watermark that does not stay at that partition's last event (streams.watermark)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from tests.kafka_helpers import WorkerProcess, run, wait_until
from tests.test_worker_e2e import worker_env

pytestmark = pytest.mark.kafka

START = datetime(2026, 1, 5, tzinfo=timezone.utc)


async def produce_in_transactions(bootstrap: str, topic: str, events: list[dict], transactional_id: str) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=transactional_id,
                                enable_idempotence=True)
    await producer.start()
    try:
        for event in events:  # one transaction each: a commit marker after every event
            async with producer.transaction():
                await producer.send_and_wait(topic, orjson.dumps(event), key=event["customer_id"].encode())
    finally:
        await producer.stop()


def test_partitions_ending_in_commit_markers_are_read_to_their_end(kafka_bootstrap: str, unique_prefix: str,
                                                                   tmp_path: Path) -> None:
    prefix = unique_prefix
    rules = tmp_path / "rules.toml"
    rules.write_text('[[segment]]\nid = "lapsed_60"\nlabel = "No purchase for 60 days"\n'
                     'all = [ { field = "days_since_last_purchase", op = ">", value = 60 } ]\n')
    env = worker_env(kafka_bootstrap, prefix, tmp_path / "data", SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE=str(rules))
    events = [{"type": "purchase", "event_id": f"o-{i}", "customer_id": f"c{i % 6}",
               "timestamp": (START + timedelta(days=i)).isoformat(), "amount": 20.0} for i in range(12)]
    # the last purchase, 90 days on: everyone else lapses once the sweep reaches it
    events.append({"type": "purchase", "event_id": "late", "customer_id": "c0",
                   "timestamp": (START + timedelta(days=100)).isoformat(), "amount": 20.0})
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        run(produce_in_transactions(kafka_bootstrap, f"{prefix}purchases", events, f"{prefix}tx"))
        wait_until(lambda: worker.metric("segstream_events_total") >= len(events), 60, "every event consumed")
        wait_until(lambda: (worker.get("/ready") or {}).get("input_watermark") == "caught up", 30,  # type: ignore[union-attr]
                   "every partition read to its end (commit markers are not messages)")
        wait_until(lambda: worker.metric("segstream_segment_changes_total", reason="rule_entered") >= 5, 30,
                   "the sweep at the event clock: c1-c5 lapse")
        assert worker.metric("segstream_delivery_holes_total") == 0, worker.log_tail()
        assert "never delivered" not in (tmp_path / "worker.log").read_text()
    finally:
        assert worker.stop() == 0, worker.log_tail()
