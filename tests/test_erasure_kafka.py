"""On the real broker: an erasure covers exactly the customer's events produced before the
request was accepted, also when events produced after it were consumed first (the erasures
topic is read independently of the inputs), for events on the home partition and for events a
producer with another partitioner sent elsewhere (forwarded through the repartition topic)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from schemas.erasure import erasure_now
from streams.partitioning import home_partition
from tests.kafka_helpers import WorkerProcess, run, wait_until
from tests.test_worker_e2e import worker_env

pytestmark = pytest.mark.kafka
PARTITIONS = 4
START = datetime(2026, 3, 2, tzinfo=timezone.utc)


def purchase(customer: str, n: int, amount: float) -> bytes:
    return orjson.dumps({"type": "purchase", "event_id": f"{customer}-p{n}", "customer_id": customer,
                         "timestamp": (START + timedelta(days=n)).isoformat(), "amount": amount})


async def send(bootstrap: str, messages: list[tuple[str, str, int, bytes]]) -> None:
    """messages: (topic, key, partition, value)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for topic, key, partition, value in messages:
            await producer.send(topic, value, key=key.encode(), partition=partition)
        await producer.flush()
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topics: list[str]) -> dict[str, list[int]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in range(PARTITIONS)]
        ends = await consumer.end_offsets(tps)
        return {t: [ends[TopicPartition(t, p)] for p in range(PARTITIONS)] for t in topics}
    finally:
        await consumer.stop()


def test_events_sent_after_the_request_but_consumed_before_it_are_kept(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"erase-race-{tmp_path.name[-6:]}."
    purchases, home = f"{prefix}purchases", "ann"
    away = "bob"  # its producer sends to a partition that is not its home: forwarded
    bob_partition = (home_partition(away.encode(), PARTITIONS) + 1) % PARTITIONS
    # No sweep: it would also find the pending re-read (the net for a crash right after the erasure).
    env = worker_env(kafka_bootstrap, prefix, tmp_path / "data", SEGSTREAM_WORKER__SWEEP_INTERVAL_S="3600")
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        run(send(kafka_bootstrap, [(purchases, home, home_partition(home.encode(), PARTITIONS), purchase(home, 0, 100.0)),
                                   (purchases, away, bob_partition, purchase(away, 0, 100.0))]))
        def spent(customer: str) -> dict:
            status, doc = worker.request(f"/customers/{customer}")
            return doc if status == 200 else {}  # type: ignore[return-value]

        wait_until(lambda: spent(home).get("purchase_count") == 1 and spent(away).get("purchase_count") == 1,
                   90, "the purchases before the request")
        # The request is accepted now; it reaches the worker only after the next purchases.
        cutoff = run(end_offsets(kafka_bootstrap, [purchases, f"{prefix}engagements", f"{prefix}feedback",
                                                   f"{prefix}repartition"]))
        run(send(kafka_bootstrap, [(purchases, home, home_partition(home.encode(), PARTITIONS), purchase(home, 1, 5.0)),
                                   (purchases, away, bob_partition, purchase(away, 1, 7.0))]))
        wait_until(lambda: spent(home).get("purchase_count") == 2 and spent(away).get("purchase_count") == 2,
                   90, "the purchases after the request")
        erasures = f"{prefix}erasures"
        run(send(kafka_bootstrap, [
            (erasures, c, home_partition(c.encode(), PARTITIONS), erasure_now(c, f"req-{c}", cutoff).to_json())
            for c in (home, away)]))
        for customer, amount in ((home, 5.0), (away, 7.0)):
            wait_until(lambda c=customer: worker.get(f"/customers/{c}/erasures/req-{c}")["applied"] is True,  # type: ignore[index]
                       90, "the erasure")
            wait_until(lambda c=customer: spent(c).get("purchase_count") == 1, 90,
                       "the purchase sent after the request to be read again")
            assert spent(customer)["total_spend"] == amount
        assert "reading them again" in worker.log_tail(200_000)
    finally:
        assert worker.stop() == 0, worker.log_tail()
