"""What a producer's partitioner costs the worker, side by side in one run.

1. **Engine, in process** (no Kafka): the worker's ``CustomerProcessor.handle_batch`` over the same
   murmur2-partitioned messages, without the home-partition check (``home=None``) and with it
   (what every murmur2 producer pays now), alternated A B A B; events per CPU second.
2. **Worker end to end** on a local broker: the same backlog produced with murmur2 (Kafka's
   default: nothing to forward) and with CRC32 (librdkafka's default: about 3 in 4 messages
   forwarded through the repartition topic at 4 partitions), each drained by a fresh worker;
   applied events per wall second from the first to the last applied event.

    .venv/bin/python -m bench.partitioners --customers 1000
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable

from streams import worker_process
from streams.harnesses import bench
from streams.partitioning import PARTITIONERS, HomePartitions
from streams.settings import Settings


def engine_run(settings: Settings, messages: list[bench.Message], home: HomePartitions | None) -> float:
    """Events per CPU second of the worker's processor over ``messages`` (murmur2-partitioned)."""
    from models.state_cache import StateCache
    from monitoring.metrics import WorkerMetrics
    from streams.clock import WorkerClock
    from streams.processor import CustomerProcessor, InMessage
    from streams.sampling import SampleForwarder

    topics = settings.topics.input_topics
    partitions = settings.topics.partitions
    place = PARTITIONERS["murmur2"]
    processor = CustomerProcessor(bench._timed_pipeline(settings), {}, bench._CountingOutputs(),
                                  WorkerClock(settings.worker.clock), SampleForwarder(), WorkerMetrics(),
                                  {name: etype for etype, name in topics.items()},
                                  cache=StateCache(settings.worker.state_cache_size), home=home)
    inbox = [InMessage(topics[etype], place(key, partitions), i, key, value)
             for i, (etype, key, value) in enumerate(messages)]
    batch = settings.worker.batch_max

    async def drive() -> float:
        cpu0 = time.process_time()
        for start in range(0, len(inbox), batch):
            await processor.handle_batch(inbox[start:start + batch])
        return time.process_time() - cpu0

    return len(inbox) / asyncio.run(drive())


async def produce_partitioned(settings: Settings, messages: list[bench.Message],
                              partitioner: Callable[[bytes, int], int]) -> None:
    from aiokafka import AIOKafkaProducer

    topics, partitions = settings.topics.input_topics, settings.topics.partitions
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        for etype, key, value in messages:
            await producer.send(topics[etype], value, key=key, partition=partitioner(key, partitions))
        await producer.flush()
    finally:
        await producer.stop()


def worker_drain(bootstrap: str, work_dir: Path, messages: list[bench.Message], partitioner: str) -> dict[str, float]:
    settings = bench.bench_settings(bootstrap, f"part{uuid.uuid4().hex[:8]}.", 4)
    asyncio.run(bench.create_topics(settings))
    asyncio.run(produce_partitioned(settings, messages, PARTITIONERS[partitioner]))
    run_dir = work_dir / f"{partitioner}-{uuid.uuid4().hex[:4]}"
    run_dir.mkdir()
    with bench.running_worker(settings, run_dir) as (proc, port, log_path):
        drained = bench.measure_worker_drain(proc, port, log_path, len(messages))
        exposition = (worker_process.http_get(port, "/metrics") or b"").decode()
    drained["forwarded"] = sum(float(line.rpartition(" ")[2]) for line in exposition.splitlines()
                               if line.startswith("segstream_repartitioned_total{"))
    return drained


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    messages = bench.build_messages(args.customers, args.seed)
    base = Settings()
    settings = bench.bench_settings("unused:9092", "bench.", 4, base)
    print(f"{len(messages):,} events, {args.customers:,} customers, 4 partitions")

    engine: dict[str, list[float]] = {"without the check": [], "with the check": []}
    for _ in range(2):
        engine["without the check"].append(engine_run(settings, messages, None))
        engine["with the check"].append(engine_run(settings, messages, HomePartitions(4)))
    for name, figures in engine.items():
        print(f"engine, murmur2 producer, {name}: " + ", ".join(f"{f:,.0f}" for f in figures) + " events/s per core")
    print(f"ratio with / without the check: {sum(engine['with the check']) / sum(engine['without the check']):.3f}")

    work_dir = Path(tempfile.mkdtemp(prefix="segstream-bench-partitioners-"))
    with bench.broker(base, work_dir, print) as bootstrap:
        drains = {name: worker_drain(bootstrap, work_dir, messages, name) for name in ("murmur2", "crc32")}
    for name, d in drains.items():
        print(f"worker, {name} producer: {d['events_per_s']:,.0f} events/s ({d['events_per_cpu_s']:,.0f} per CPU s), "
              f"mean batch {d['mean_batch']:.0f}, forwarded {d['forwarded']:,.0f}")
    print(f"ratio crc32 / murmur2 producer: {drains['crc32']['events_per_s'] / drains['murmur2']['events_per_s']:.3f}")


if __name__ == "__main__":
    main()
