"""``segstream bench``: the engine, the worker and raw aiokafka side by side, in one run.

On one broker and with one set of messages (a seeded synthetic population, produced **once** to
the input topics before anything consumes them):

1. **engine**: the same raw message bytes through the worker's own per-message code
   (:class:`streams.processor.CustomerProcessor`: validate, key check, state from the table's
   bytes, pipeline, state back to bytes) in this process, with a dict as the table and outputs
   that only count: no Kafka, no faust. Events per CPU-second of this process = per core;
2. **raw**: a plain aiokafka consumer (its own group, from the earliest offset) sending every
   message unchanged to ``<prefix>passthrough``, waiting for the acknowledgements and committing
   after each fetched batch: the ceiling of a Python Kafka stack on this machine;
3. **faust floor**: a faust agent with the worker's clients and batches that only counts the same
   backlog (:mod:`streams.harnesses.faust_floor`): the ceiling of any faust agent here, so worker / floor
   is what our processing costs and floor / raw what faust's machinery costs;
4. **worker**: ``segstream worker`` as a subprocess draining the same backlog; events applied per
   second of wall time from its first to its last applied event (read from its ``/metrics``);
5. **latency**: with the model trained, a fixed total rate of half the worker's throughput for
   ``latency_seconds``: re-sent population events (new event ids) and, one message in ten,
   brand-new "probe" customers whose first-assignment change is consumed from
   ``<prefix>segment-changes``; produce -> consume time, p50 / p99 / max;
6. **memory**: the table as the worker's memory store holds it (a dict of id bytes -> state bytes)
   filled with the engine run's states under new customer ids, 100 k and 1 M of them, in a fresh
   child process: RSS increase / customers.

The ratios worker / raw and engine / raw are the last lines printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import orjson

from monitoring.exposition import metric_sum, sample_value
from streams import worker_process
from streams.settings import Settings
from schemas.errors import SetupError

ROOT = Path(__file__).resolve().parents[2]  # the repository (the child runs from it, like the worker)

# (event type, key, value): the exact bytes produced to the input topics
Message = tuple[str, bytes, bytes]

GOAL_ENGINE_EPS = 100_000.0
GOAL_WORKER_RATIO = 0.50
GOAL_P99_MS = 100.0
GOAL_BYTES_PER_CUSTOMER = 1024.0


@dataclass
class BenchConfig:
    customers: int = 3000
    seed: int = 1
    activity: float = 1.0
    partitions: int = 4
    latency_seconds: float = 20.0
    probe_share: float = 0.1  # share of the latency phase's messages that are probes
    memory_customers: tuple[int, ...] = (100_000, 1_000_000)
    drain_timeout_s: float = 3600.0
    model_timeout_s: float = 180.0
    work_dir: Path | None = None
    batch_floor: bool = False  # also measure the batch delivery prototype of #20 (streams.harnesses.faust_batch_floor)


Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ---- messages --------------------------------------------------------------------------------


def build_messages(customers: int, seed: int = 1, activity: float = 1.0, end: float | None = None) -> list[Message]:
    """A synthetic population's events, in time order, as the bytes the worker consumes."""
    from models.synthetic import generate_population

    end = time.time() - 3600 if end is None else end
    pop = generate_population(customers, seed=seed, activity=activity, end=end)
    return [(e["type"], e["customer_id"].encode(), orjson.dumps(e)) for e in pop.events]


def bench_settings(bootstrap: str, prefix: str, partitions: int, base: Settings | None = None) -> Settings:
    base = base or Settings()
    return base.model_copy(update={
        "bootstrap_servers": bootstrap,
        "topics": base.topics.model_copy(update={"prefix": prefix, "partitions": partitions}),
    })


def passthrough_topic(settings: Settings) -> str:
    return f"{settings.topics.prefix}passthrough"


async def create_topics(settings: Settings) -> None:
    from streams.kafka_admin import TopicSpec, ensure_topics
    from streams.topics import topic_specs

    assert settings.bootstrap_servers
    t = settings.topics
    specs = [*topic_specs(settings), TopicSpec(passthrough_topic(settings), t.partitions, t.replication_factor)]
    await ensure_topics(settings.bootstrap_servers, specs, **settings.kafka_client_kwargs())


async def produce_messages(settings: Settings, messages: list[Message]) -> dict[str, float]:
    """Every message once to its input topic, as fast as the producer goes; waits for the acks."""
    from aiokafka import AIOKafkaProducer

    topics = settings.topics.input_topics
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=20,
                                max_batch_size=512 * 1024, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        for etype, key, value in messages:
            await producer.send(topics[etype], value, key=key)
        await producer.flush()
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"events": len(messages), "seconds": seconds, "events_per_s": len(messages) / seconds}


# ---- the engine in process -------------------------------------------------------------------


class _CountingOutputs:
    """The processor's outputs without Kafka: acknowledged at once, counted."""

    def __init__(self) -> None:
        self.changes_sent = 0
        self.dead_letters = 0

    async def changes(self, changes: list) -> None:
        self.changes_sent += len(changes)

    async def flush(self) -> None:
        pass

    async def dead_letter(self, message: Any, source_type: str, problems: list) -> None:
        self.dead_letters += 1

    async def forward(self, message: Any, partition: int) -> None:
        raise AssertionError("the engine bench runs one partition: nothing is forwarded")

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}


def _timed_pipeline(settings: Settings, per_customer: bool = False) -> Any:
    """``Pipeline(settings.engine, train_locally=True)`` that also counts its trainings' CPU time;
    ``per_customer``: batches evaluated one customer after the other (``Pipeline.evaluate``, the
    batch engine's reference) instead of together (``Pipeline.evaluate_many``)."""
    from models.pipeline import Pipeline

    class TimedPipeline(Pipeline):
        trainings = 0
        train_cpu_s = 0.0

        def evaluate_many(self, states, nows):  # type: ignore[no-untyped-def]
            if per_customer:
                return [self.evaluate(state, now) for state, now in zip(states, nows)]
            return super().evaluate_many(states, nows)

        def train(self, now: float):  # type: ignore[override]
            started = time.process_time()
            try:
                return super().train(now)
            finally:
                self.trainings += 1
                self.train_cpu_s += time.process_time() - started

    return TimedPipeline(settings.engine, train_locally=True)


def run_engine(settings: Settings, messages: list[Message],
               per_customer: bool = False) -> tuple[dict[str, Any], dict[bytes, bytes]]:
    """The worker's code (``CustomerProcessor.handle_batch``, in batches of the worker's
    ``batch_max``) over the messages, in process: everything but Kafka and faust
    (``per_customer``: see :func:`_timed_pipeline`).

    Returns the figures and the table (customer id bytes -> state bytes)."""
    from models.state_cache import StateCache
    from monitoring.metrics import WorkerMetrics
    from streams.clock import WorkerClock
    from streams.processor import CustomerProcessor, InMessage
    from streams.sampling import SampleForwarder

    topics = settings.topics.input_topics
    routes = {name: etype for etype, name in topics.items()}
    table: dict[bytes, bytes] = {}
    outputs = _CountingOutputs()
    pipeline = _timed_pipeline(settings, per_customer)
    metrics = WorkerMetrics()
    processor = CustomerProcessor(pipeline, table, outputs, WorkerClock(settings.worker.clock), SampleForwarder(),
                                  metrics, routes, cache=StateCache(settings.worker.state_cache_size))
    inbox = [InMessage(topics[etype], 0, i, key, value) for i, (etype, key, value) in enumerate(messages)]

    batch = settings.worker.batch_max

    async def drive() -> tuple[float, float]:
        handle_batch = processor.handle_batch
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for start in range(0, len(inbox), batch):
            await handle_batch(inbox[start:start + batch])
        return time.process_time() - cpu0, time.perf_counter() - wall0

    cpu_s, wall_s = asyncio.run(drive())
    applied = events_total(metrics.exposition().decode(), "applied")
    n = len(inbox)
    return {
        "events": n,
        "applied": applied,
        "customers": len(table),
        "changes": outputs.changes_sent,
        "dead_letters": outputs.dead_letters,
        "cpu_s": cpu_s,
        "wall_s": wall_s,
        "events_per_s_per_core": n / cpu_s,
        "events_per_s_wall": n / wall_s,
        "trainings": pipeline.trainings,
        "train_cpu_s": pipeline.train_cpu_s,
    }, table


def events_total(exposition: str, outcome: str | None = None) -> float:
    """Sum of ``segstream_events_total`` in a Prometheus exposition (over event types; one outcome
    or all of them)."""
    return metric_sum(exposition, "segstream_events_total", **({"outcome": outcome} if outcome else {}))


def batch_figures(exposition: str) -> tuple[float, float]:
    """(batches, messages) of the worker's ``segstream_batch_messages`` histogram."""
    return (sample_value(exposition, "segstream_batch_messages_count"),
            sample_value(exposition, "segstream_batch_messages_sum"))


# ---- raw aiokafka pass-through ---------------------------------------------------------------


async def run_passthrough(settings: Settings, expected: int, timeout_s: float = 3600.0) -> dict[str, float]:
    """Consume the input topics from the start (own group), produce each message unchanged to the
    pass-through topic, wait for the acks of each fetched batch, then commit it."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap = settings.bootstrap_servers
    out = passthrough_topic(settings)
    consumer = AIOKafkaConsumer(*settings.topics.input_topics.values(), bootstrap_servers=bootstrap,
                                group_id=f"{settings.topics.prefix}passthrough", auto_offset_reset="earliest",
                                enable_auto_commit=False)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024,
                                max_request_size=4 * 1024 * 1024)
    await consumer.start()
    await producer.start()
    count = 0
    first_at = last_at = None
    cpu0 = time.process_time()
    deadline = time.monotonic() + timeout_s
    try:
        while count < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"raw pass-through: {count} of {expected} messages after {timeout_s:.0f}s")
            batch = await consumer.getmany(timeout_ms=500)
            if not batch:
                continue
            if first_at is None:
                first_at = time.perf_counter()
            acks = []
            for records in batch.values():
                for r in records:
                    acks.append(await producer.send(out, r.value, key=r.key))
            await asyncio.gather(*acks)
            await consumer.commit()
            count += len(acks)
            last_at = time.perf_counter()
        cpu_s = time.process_time() - cpu0
    finally:
        await producer.stop()
        await consumer.stop()
    seconds = (last_at or 0.0) - (first_at or 0.0)
    return {"events": count, "seconds": seconds, "events_per_s": count / seconds if seconds > 0 else 0.0,
            "cpu_s": cpu_s}


# ---- the worker ------------------------------------------------------------------------------


def worker_env(settings: Settings, port: int, data_dir: Path) -> dict[str, str]:
    env = worker_process.env_for(settings, port, data_dir)
    env.setdefault("SEGSTREAM_WORKER__TRAIN_INTERVAL_S", "10")
    return env


def measure_faust_floor(settings: Settings, work_dir: Path, expected: int, timeout_s: float = 3600.0,
                        harness: str = "faust_floor") -> dict[str, float]:
    """A faust agent that only counts the messages (``streams.harnesses.faust_floor``), with the worker's
    clients and batching, as a child process: faust's own ceiling. ``harness="faust_batch_floor"``: the
    same with the batch delivery prototype of #20 (``streams.fixups.batch_delivery``)."""
    from streams.local_kafka import free_port

    name = harness.replace("_", "-")
    env = worker_env(settings, free_port(), work_dir / f"{name}-data")
    log_path, result_path = work_dir / f"{name}.log", work_dir / f"{name}.json"
    result_path.unlink(missing_ok=True)
    with log_path.open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", f"streams.harnesses.{harness}", str(expected), str(result_path)],
                                cwd=worker_process.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if proc.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-2000:]
        raise SetupError(f"the {name} exited with {proc.returncode}; log {log_path}:\n{tail}")
    return orjson.loads(result_path.read_bytes())


def events_counted(port: int, outcome: str | None = None) -> float | None:
    """Sum of ``segstream_events_total`` (over event types; one outcome or all)."""
    raw = worker_process.http_get(port, "/metrics")
    return None if raw is None else events_total(raw.decode(), outcome)


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def running_worker(settings: Settings, work_dir: Path) -> Iterator[tuple[subprocess.Popen, int, Path]]:
    from streams.local_kafka import free_port

    port = free_port()
    log_path = work_dir / "worker.log"
    proc = worker_process.start(worker_env(settings, port, work_dir / "worker-data"), log_path)
    try:
        yield proc, port, log_path
    finally:
        worker_process.stop(proc)


def measure_worker_drain(proc: subprocess.Popen, port: int, log_path: Path, expected: int,
                         timeout_s: float = 3600.0, poll_s: float = 0.25) -> dict[str, float]:
    """Poll /metrics until the worker has consumed ``expected`` events; applied events per second
    from the first applied sample to the last one."""
    first: tuple[float, float, float | None] | None = None
    last: tuple[float, float, float | None] | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        worker_process.check_alive(proc, log_path)
        applied = events_counted(port, "applied")
        consumed = events_counted(port)
        now = time.perf_counter()
        if applied:
            sample = (now, applied, process_cpu_s(proc.pid))
            if first is None:
                first = sample
            last = sample
        if consumed is not None and consumed >= expected:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker consumed {consumed} of {expected} events after {timeout_s:.0f}s")
        time.sleep(poll_s)
    assert first is not None and last is not None
    seconds = last[0] - first[0]
    applied_n = last[1] - first[1]
    cpu = (last[2] - first[2]) if last[2] is not None and first[2] is not None else None
    exposition = (worker_process.http_get(port, "/metrics") or b"").decode()
    batches, batched = batch_figures(exposition)
    return {"events": last[1], "seconds": seconds,
            "mean_batch": batched / batches if batches else float("nan"),
            "events_per_s": applied_n / seconds if seconds > 0 else 0.0,
            "cpu_s": cpu if cpu is not None else float("nan"),
            "events_per_cpu_s": applied_n / cpu if cpu else float("nan")}


# ---- latency at a fixed rate -----------------------------------------------------------------


def background_messages(messages: list[Message], count: int) -> list[Message]:
    """``count`` population events re-sent with new event ids (so they are applied again)."""
    out: list[Message] = []
    n = len(messages)
    for i in range(count):
        etype, key, value = messages[i % n]
        doc = orjson.loads(value)
        doc["event_id"] = f"{doc['event_id']}~r{i // n + 1}"
        out.append((etype, key, orjson.dumps(doc)))
    return out


def probe_message(customer_id: str, amount: float) -> bytes:
    return orjson.dumps({"type": "purchase", "event_id": f"{customer_id}-p0", "customer_id": customer_id,
                         "timestamp": datetime.now(timezone.utc).isoformat(), "amount": amount,
                         "currency": "USD"})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure_latency(settings: Settings, messages: list[Message], rate: float, seconds: float,
                          probe_share: float = 0.1, grace_s: float = 15.0) -> dict[str, Any]:
    """Produce at ``rate`` msgs/s for ``seconds``: background traffic and probe customers; time each
    probe from its send to the consumption of its first segment change.

    Each latency is also split at the change record's timestamp (the worker's producer stamps it
    when the worker sends the change; one machine, one clock): ``worker_*`` is send → change sent
    (fetch, delivery, batching, processing, the state's write), ``subscriber_*`` is change sent →
    consumed (the change's acknowledgement, the subscriber's fetch). ``probes`` lists per probe
    (seconds since the first send, total ms, worker ms, subscriber ms, Unix time of the send), in
    the order sent."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    bootstrap = settings.bootstrap_servers
    topics = settings.topics.input_topics
    total = max(int(rate * seconds), 1)
    every = max(int(round(1 / probe_share)), 1) if probe_share > 0 else total + 1
    n_probes = (total + every - 1) // every
    background = iter(background_messages(messages, total - n_probes))
    consumer = AIOKafkaConsumer(settings.topics.name("segment_changes"), bootstrap_servers=bootstrap,
                                group_id=None, auto_offset_reset="latest", enable_auto_commit=False)
    await consumer.start()
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    run_tag = uuid.uuid4().hex[:8]
    sent_at: dict[bytes, tuple[float, float]] = {}  # probe key -> (perf_counter, wall clock) at its send
    latencies: list[float] = []
    splits: list[tuple[float, float, float, float, float]] = []  # (sent since start s, total, worker, subscriber ms, sent at)
    done_sending = asyncio.Event()
    send_span = [0.0, 0.0]

    async def send() -> None:
        started = send_span[0] = time.perf_counter()
        sent = 0
        while sent < total:
            due = min(total, int((time.perf_counter() - started) * rate) + 1)
            while sent < due:
                if sent % every == 0:
                    cid = f"probe-{run_tag}-{sent // every:06d}"
                    key = cid.encode()
                    value = probe_message(cid, 20.0 + (sent // every) % 80)
                    sent_at[key] = (time.perf_counter(), time.time())
                    await producer.send(topics["purchase"], value, key=key)
                else:
                    etype, key, value = next(background)
                    await producer.send(topics[etype], value, key=key)
                sent += 1
            await asyncio.sleep(0.002)
        await producer.flush()
        send_span[:] = [started, time.perf_counter()]
        done_sending.set()

    async def collect() -> None:
        deadline = None
        while len(latencies) < n_probes:
            if done_sending.is_set():
                deadline = deadline or time.monotonic() + grace_s
                if time.monotonic() > deadline:
                    break
            batch = await consumer.getmany(timeout_ms=100)
            now, wall = time.perf_counter(), time.time()
            for records in batch.values():
                for r in records:
                    at = sent_at.pop(r.key, None)
                    if at is not None:
                        latencies.append(now - at[0])
                        splits.append((at[0] - send_span[0], (now - at[0]) * 1000,
                                       r.timestamp - at[1] * 1000, wall * 1000 - r.timestamp, at[1]))

    try:
        await asyncio.gather(send(), collect())
    finally:
        await producer.stop()
        await consumer.stop()
    ms = [v * 1000 for v in latencies]
    worker_ms = [s[2] for s in splits]
    subscriber_ms = [s[3] for s in splits]
    span = send_span[1] - send_span[0]
    return {"target_rate": rate, "achieved_rate": total / span if span > 0 else 0.0, "seconds": span,
            "messages": total, "probes_sent": n_probes, "probes_seen": len(ms),
            "p50_ms": percentile(ms, 0.5) if ms else float("nan"),
            "p99_ms": percentile(ms, 0.99) if ms else float("nan"),
            "max_ms": max(ms) if ms else float("nan"),
            "mean_ms": statistics.mean(ms) if ms else float("nan"),
            "worker_p50_ms": percentile(worker_ms, 0.5) if ms else float("nan"),
            "worker_p99_ms": percentile(worker_ms, 0.99) if ms else float("nan"),
            "subscriber_p50_ms": percentile(subscriber_ms, 0.5) if ms else float("nan"),
            "subscriber_p99_ms": percentile(subscriber_ms, 0.99) if ms else float("nan"),
            "probes": sorted(splits)}


# ---- memory per customer ---------------------------------------------------------------------


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fill_table(templates: list[bytes], count: int) -> tuple[dict[bytes, bytes], int]:
    """A table like the worker's memory store: ``count`` customers, each a copy of one of the
    template states under its own new id. Returns the table and the sum of key + value lengths."""
    from models.state import CustomerState

    states = [CustomerState.from_bytes(t) for t in templates]
    table: dict[bytes, bytes] = {}
    total = 0
    for i in range(count):
        state = states[i % len(states)]
        state.customer_id = f"cust-{i:07d}"
        key = state.customer_id.encode()
        value = state.to_bytes()
        table[key] = value
        total += len(key) + len(value)
    return table, total


def available_memory_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 2**63


def memory_child_main() -> None:
    """In a fresh process: templates (pickled list of state bytes) and the count on stdin; the
    figures as JSON on stdout."""
    import pickle

    templates, count = pickle.load(sys.stdin.buffer)
    from models.state import CustomerState  # noqa: F401  (imported before the baseline)

    gc.collect()
    before = _rss_bytes()
    table, total = fill_table(templates, count)
    gc.collect()
    after = _rss_bytes()
    sys.stdout.buffer.write(orjson.dumps({
        "customers": len(table), "rss_increase_bytes": after - before,
        "bytes_per_customer": (after - before) / len(table), "mean_key_value_bytes": total / len(table)}))


def memory_per_customer(templates: list[bytes], count: int, timeout_s: float = 1800.0) -> dict[str, float]:
    """Fill a table of ``count`` customers in a fresh Python process and measure its RSS growth."""
    import pickle

    proc = subprocess.run([sys.executable, "-c", "from streams.harnesses.bench import memory_child_main; memory_child_main()"],
                          input=pickle.dumps((templates, count)), capture_output=True, cwd=ROOT, timeout=timeout_s)
    if proc.returncode != 0:
        raise SetupError(f"memory measurement of {count} customers failed:\n{proc.stderr.decode()[-3000:]}")
    return orjson.loads(proc.stdout)


# ---- the whole run ---------------------------------------------------------------------------


@contextlib.contextmanager
def broker(settings: Settings, work_dir: Path, log: Log) -> Iterator[str]:
    """KAFKA_BOOTSTRAP_SERVERS if set, else a local broker for the duration of the block."""
    if settings.bootstrap_servers:
        yield settings.bootstrap_servers
        return
    from streams.local_kafka import LocalKafka

    kafka = LocalKafka.from_settings(settings.local_kafka, run_dir=work_dir / "kafka")
    kafka.start()
    log(f"local Kafka on {kafka.bootstrap_servers} (started in {kafka.started_in_s:.1f}s)")
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


def run(config: BenchConfig, log: Log = _stderr, base: Settings | None = None) -> dict[str, Any]:
    """The whole benchmark; returns every figure (see :func:`summary_lines`)."""
    base = base or Settings()
    work_dir = config.work_dir or Path(tempfile.mkdtemp(prefix="segstream-bench-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"bench{uuid.uuid4().hex[:8]}."
    results: dict[str, Any] = {"config": {
        "customers": config.customers, "seed": config.seed, "activity": config.activity,
        "partitions": config.partitions, "latency_seconds": config.latency_seconds,
        "probe_share": config.probe_share, "memory_customers": list(config.memory_customers),
        "topic_prefix": prefix, "work_dir": str(work_dir), "cpus": os.cpu_count(),
    }}
    started = time.perf_counter()
    log(f"generating {config.customers:,} customers (seed {config.seed})...")
    messages = build_messages(config.customers, config.seed, config.activity)
    results["config"]["events"] = len(messages)
    log(f"{len(messages):,} events; work dir {work_dir}")

    with broker(base, work_dir, log) as bootstrap:
        settings = bench_settings(bootstrap, prefix, config.partitions, base)
        asyncio.run(create_topics(settings))
        results["produce"] = asyncio.run(produce_messages(settings, messages))
        log(f"produce: {results['produce']['events_per_s']:,.0f} events/s")

        log("engine in process...")
        results["engine"], table = run_engine(settings, messages)
        log(f"engine: {results['engine']['events_per_s_per_core']:,.0f} events/s per core")

        log("raw aiokafka pass-through...")
        results["raw"] = asyncio.run(run_passthrough(settings, len(messages), config.drain_timeout_s))
        log(f"raw: {results['raw']['events_per_s']:,.0f} events/s")

        log("faust floor (an agent that only counts)...")
        results["faust_floor"] = measure_faust_floor(settings, work_dir, len(messages), config.drain_timeout_s)
        log(f"faust floor: {results['faust_floor']['events_per_s']:,.0f} events/s")

        if config.batch_floor:
            log("faust batch floor (the same agent, batch delivery of #20)...")
            results["faust_batch_floor"] = measure_faust_floor(settings, work_dir, len(messages),
                                                               config.drain_timeout_s, harness="faust_batch_floor")
            log(f"faust batch floor: {results['faust_batch_floor']['events_per_s']:,.0f} events/s")

        log("worker...")
        with running_worker(settings, work_dir) as (proc, port, log_path):
            worker_process.wait_ready(proc, port, log_path)
            results["worker"] = measure_worker_drain(proc, port, log_path, len(messages), config.drain_timeout_s)
            log(f"worker: {results['worker']['events_per_s']:,.0f} events/s; waiting for a model...")
            status = worker_process.wait_ready(proc, port, log_path, config.model_timeout_s, model=True)
            rate = max(0.5 * results["worker"]["events_per_s"], 1.0)
            log(f"latency at {rate:,.0f} events/s (model v{status['model_version']}) "
                f"for {config.latency_seconds:g}s...")
            results["latency"] = asyncio.run(measure_latency(settings, messages, rate, config.latency_seconds,
                                                             config.probe_share))
            results["latency"]["model_version"] = status["model_version"]
            worker_process.check_alive(proc, log_path)

    templates = list(table.values())
    del table
    results["memory"] = {}
    per_customer = None
    for count in sorted(config.memory_customers):
        if per_customer is not None and per_customer * count > 0.8 * available_memory_bytes():
            log(f"memory: {count:,} customers skipped: about {per_customer * count / 2**30:.1f} GiB needed, "
                f"{available_memory_bytes() / 2**30:.1f} GiB available")
            continue
        log(f"memory: {count:,} customers...")
        results["memory"][str(count)] = memory_per_customer(templates, count)
        per_customer = results["memory"][str(count)]["bytes_per_customer"]
    results["seconds"] = time.perf_counter() - started
    raw = results["raw"]["events_per_s"]
    results["ratios"] = {"worker_raw": results["worker"]["events_per_s"] / raw if raw else float("nan"),
                         "floor_raw": results["faust_floor"]["events_per_s"] / raw if raw else float("nan"),
                         "worker_floor": results["worker"]["events_per_s"] / results["faust_floor"]["events_per_s"],
                         "engine_raw": results["engine"]["events_per_s_per_core"] / raw if raw else float("nan")}
    if "faust_batch_floor" in results:
        batch = results["faust_batch_floor"]["events_per_s"]
        results["ratios"]["batch_floor_raw"] = batch / raw if raw else float("nan")
        results["ratios"]["batch_floor_floor"] = batch / results["faust_floor"]["events_per_s"]
    return results


# ---- output ----------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The goal checks, then the two ratio lines (always the last two)."""
    engine = results["engine"]["events_per_s_per_core"]
    p99 = results["latency"]["p99_ms"]
    memory = results["memory"]
    largest = str(max(int(k) for k in memory)) if memory else None
    per_customer = memory[largest]["bytes_per_customer"] if largest else float("nan")
    ratios = results["ratios"]
    return [
        f"goal engine >= {GOAL_ENGINE_EPS:,.0f} events/s per core: {engine:,.0f} "
        f"-> {_verdict(engine >= GOAL_ENGINE_EPS)}",
        f"goal worker >= {GOAL_WORKER_RATIO:.0%} of raw pass-through: {ratios['worker_raw']:.2f} "
        f"-> {_verdict(ratios['worker_raw'] >= GOAL_WORKER_RATIO)}",
        f"goal p99 event -> change <= {GOAL_P99_MS:.0f} ms at half load: {p99:,.1f} ms "
        f"-> {_verdict(p99 <= GOAL_P99_MS)}",
        f"goal <= {GOAL_BYTES_PER_CUSTOMER:.0f} B per customer in the table ({int(largest or 0):,} customers): "
        f"{per_customer:,.0f} B -> {_verdict(per_customer <= GOAL_BYTES_PER_CUSTOMER)}",
        f"ratio faust floor/raw = {ratios['floor_raw']:.2f}  (the most any faust agent reaches here)",
        *([f"ratio faust batch floor/raw = {ratios['batch_floor_raw']:.2f}  (#20 prototype)",
           f"ratio faust batch floor/faust floor = {ratios['batch_floor_floor']:.2f}"]
          if "batch_floor_raw" in ratios else []),
        f"ratio worker/faust floor = {ratios['worker_floor']:.2f}",
        f"ratio worker/raw = {ratios['worker_raw']:.2f}  (goal >= {GOAL_WORKER_RATIO:.2f})",
        f"ratio engine/raw = {ratios['engine_raw']:.2f}",
    ]


def figure_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, value, detail) rows of the results table."""
    c, p, e, r, w, lat = (results[k] for k in ("config", "produce", "engine", "raw", "worker", "latency"))
    rows = [
        ("messages", f"{c['events']:,}", f"{c['customers']:,} customers, seed {c['seed']}, "
                                        f"{c['partitions']} partitions, produced once"),
        ("produce", f"{p['events_per_s']:,.0f} events/s", f"{p['seconds']:.1f} s, acks awaited"),
        ("engine (in process)", f"{e['events_per_s_per_core']:,.0f} events/s per core",
         f"{e['events_per_s_wall']:,.0f}/s wall; CustomerProcessor.handle, dict table; {e['trainings']} trainings "
         f"= {e['train_cpu_s']:.1f} of {e['cpu_s']:.1f} CPU s; {e['changes']:,} changes"),
        ("raw aiokafka pass-through", f"{r['events_per_s']:,.0f} events/s",
         f"{r['seconds']:.1f} s; consume -> produce, acks, commit per batch; {r['cpu_s']:.1f} CPU s"),
        ("faust floor (no-op agent)", f"{results['faust_floor']['events_per_s']:,.0f} events/s",
         f"{results['faust_floor']['seconds']:.1f} s; the worker's clients and batches, counting only; "
         f"{results['faust_floor']['cpu_s']:.1f} CPU s"),
        *[("faust batch floor (#20 prototype)", f"{bf['events_per_s']:,.0f} events/s",
           f"{bf['seconds']:.1f} s; the same agent, per-partition batches (streams.fixups.batch_delivery); "
           f"{bf['batches']:,} batches; {bf['cpu_s']:.1f} CPU s")
          for bf in results.get("faust_batch_floor", []) and [results["faust_batch_floor"]]],
        ("worker end to end", f"{w['events_per_s']:,.0f} events/s",
         f"{w['seconds']:.1f} s first to last applied; {w['events_per_cpu_s']:,.0f} events per worker CPU s; "
         f"batches of {w.get('mean_batch', float('nan')):,.0f} messages on average"),
        ("latency p50 / p99 / max", f"{lat['p50_ms']:,.1f} / {lat['p99_ms']:,.1f} / {lat['max_ms']:,.1f} ms",
         f"at {lat['achieved_rate']:,.0f} events/s (target {lat['target_rate']:,.0f}) for {lat['seconds']:.0f} s; "
         f"probes {lat['probes_seen']}/{lat['probes_sent']}; model v{lat.get('model_version')}"),
        ("  of which worker p50 / p99", f"{lat['worker_p50_ms']:,.1f} / {lat['worker_p99_ms']:,.1f} ms",
         "send -> change sent (the change record's timestamp): fetch, delivery, batching, processing"),
        ("  of which subscriber p50 / p99", f"{lat['subscriber_p50_ms']:,.1f} / {lat['subscriber_p99_ms']:,.1f} ms",
         "change sent -> consumed: the change's acknowledgement, the subscriber's fetch"),
    ]
    for count, m in results["memory"].items():
        rows.append((f"memory, {int(count):,} customers", f"{m['bytes_per_customer']:,.0f} B per customer",
                     f"RSS +{m['rss_increase_bytes'] / 2**20:,.1f} MiB; "
                     f"key + value {m['mean_key_value_bytes']:,.0f} B"))
    return rows


def to_json(results: dict[str, Any]) -> bytes:
    return orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
