"""End-to-end worker benchmark on a real broker: sustained throughput and event -> change latency.

    python bench/worker_e2e.py --customers 2000 --probes 200

1. **Throughput**: a synthetic population is produced to the input topics *before* the worker
   starts; the worker then drains the backlog and the figure is events applied per second of
   wall time (from its first to its last applied event, read from its /metrics).
2. **Latency**: with the model trained, brand-new "probe" customers send one purchase each at a
   fixed rate, mixed into background traffic; each probe's first-assignment change is consumed
   from the segment-changes topic and timed from the moment its event was produced.

Uses KAFKA_BOOTSTRAP_SERVERS if set, else starts a local broker. Everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

ROOT = Path(__file__).resolve().parent.parent

from models.synthetic import generate_population
from streams import worker_process
from streams.kafka_admin import ensure_topics
from streams.local_kafka import LocalKafka, free_port
from streams.settings import Settings
from streams.topics import topic_specs

TOPIC_OF = {"purchase": "purchases", "engagement": "engagements", "feedback": "feedback"}


async def produce_all(bootstrap: str, prefix: str, events: list[dict]) -> float:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, max_batch_size=256 * 1024)
    await producer.start()
    started = time.perf_counter()
    try:
        for e in events:
            await producer.send(f"{prefix}{TOPIC_OF[e['type']]}", orjson.dumps(e), key=e["customer_id"].encode())
        await producer.flush()
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def probe_latency(bootstrap: str, prefix: str, probes: int, rate: float, background: list[dict]) -> list[float]:
    """Seconds from producing a new customer's first purchase to consuming its first change."""
    consumer = AIOKafkaConsumer(f"{prefix}segment-changes", bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="latest")
    await consumer.start()
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    sent_at: dict[str, float] = {}
    latencies: list[float] = []

    async def send_probes() -> None:
        bg = iter(background)
        for i in range(probes):
            customer = f"probe-{uuid.uuid4().hex[:12]}"
            event = {"type": "purchase", "event_id": f"{customer}-p0", "customer_id": customer,
                     "timestamp": datetime.now(timezone.utc).isoformat(), "amount": 25.0 + i % 50}
            sent_at[customer] = time.perf_counter()
            await producer.send(f"{prefix}purchases", orjson.dumps(event), key=customer.encode())
            for _ in range(9):  # background traffic between probes
                e = next(bg, None)
                if e is not None:
                    await producer.send(f"{prefix}{TOPIC_OF[e['type']]}", orjson.dumps(e), key=e["customer_id"].encode())
            await asyncio.sleep(1 / rate)

    async def collect() -> None:
        deadline = time.monotonic() + probes / rate + 60
        while len(latencies) < probes and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    customer = r.key.decode()
                    if customer in sent_at:
                        latencies.append(now - sent_at.pop(customer))

    try:
        await asyncio.gather(send_probes(), collect())
    finally:
        await producer.stop()
        await consumer.stop()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--activity", type=float, default=1.0)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument("--probe-rate", type=float, default=20.0, help="probes per second (each with 9 background events)")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    kafka = None
    bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        kafka = LocalKafka.from_settings(Settings().local_kafka, run_dir=work / "kafka")
        kafka.start()
        bootstrap = kafka.bootstrap_servers
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SEGSTREAM_TOPICS__PREFIX": prefix,
           "SEGSTREAM_TOPICS__PARTITIONS": str(args.partitions), "SEGSTREAM_WORKER__APP_ID": f"{prefix}app",
           "SEGSTREAM_WORKER__WEB_PORT": str(port), "SEGSTREAM_WORKER__DATA_DIR": str(work / "data"),
           "SEGSTREAM_WORKER__TRAIN_INTERVAL_S": "10", "PYTHONUNBUFFERED": "1"}
    settings = Settings(KAFKA_BOOTSTRAP_SERVERS=bootstrap).model_copy(update={
        "topics": Settings().topics.model_copy(update={"prefix": prefix, "partitions": args.partitions})})
    worker = None
    try:
        asyncio.run(ensure_topics(bootstrap, topic_specs(settings)))
        pop = generate_population(args.customers, seed=1, activity=args.activity, end=time.time() - 3600)
        events = pop.events
        split = int(len(events) * 0.9)
        backlog, background = events[:split], events[split:]
        produce_s = asyncio.run(produce_all(bootstrap, prefix, backlog))
        print(f"backlog: {len(backlog):,} events for {args.customers:,} customers produced in {produce_s:.1f}s")

        worker = worker_process.start(env, work / "worker.log")
        worker_process.wait_ready(worker, port, work / "worker.log")
        first_at = None
        samples = []
        while True:
            applied = (worker_process.metric(port, "segstream_events_total", outcome="applied") or 0.0)
            now = time.perf_counter()
            if applied > 0 and first_at is None:
                first_at = (now, applied)
            samples.append((now, applied))
            if applied >= len(backlog):
                break
            time.sleep(0.25)
        elapsed = samples[-1][0] - first_at[0]
        throughput = (samples[-1][1] - first_at[1]) / elapsed
        print(f"throughput: {len(backlog):,} events drained, {throughput:,.0f} events/s end to end "
              f"(validate, state, assign, changes acked, table written)")

        while (worker_process.ready(port) or {}).get("model_version") is None:
            time.sleep(0.5)
        latencies = asyncio.run(probe_latency(bootstrap, prefix, args.probes, args.probe_rate, background))
        load = args.probe_rate * 10
        if latencies:
            ms = [v * 1000 for v in latencies]
            print(f"latency at {load:.0f} events/s ({len(ms)}/{args.probes} probes): p50 {percentile(ms, 0.5):.1f} ms, "
                  f"p99 {percentile(ms, 0.99):.1f} ms, max {max(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms")
        else:
            print("latency: no probe change seen")
    finally:
        if worker is not None:
            worker_process.stop(worker)
        if kafka is not None:
            kafka.stop()


if __name__ == "__main__":
    main()
