"""The crash test (``segstream crash-test``): a known stream, a worker SIGKILLed at random points
and restarted, the broker stopped and restarted mid-stream; then every customer is checked
against the ground truth and every segment change against its duplicates.

It runs its own single-node broker (the broker restart must not disturb anything else):

1. a producer sends a synthetic population's events at a steady rate, in the background, with
   an idempotent producer that rides out the broker restart;
2. meanwhile the worker is killed with SIGKILL ``kills`` times, each time after a random stretch
   of processing, and restarted at once; halfway through, the broker is stopped and restarted;
3. once the stream is in, the worker must catch up: every customer's ``purchase_count`` and
   ``total_spend`` (and the other counters) equal the ground truth computed by the pure engine;
4. the worker is stopped and the segment-changes topic is read back: a ``change_id`` seen twice
   is a change re-emitted after a crash (at-least-once). It is harmless to a consumer that drops
   repeated ids if both copies carry the same decision (kind, segment, previous segment, reason):
   that is checked for every duplicate, and the consumer's deduplicated view must end where the
   worker's state is (the table's changelog, read back too: the last state of each customer).

Recovery times are measured from each restart to ``/ready`` and to the first newly applied event.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from models.config import ValueConfig
from models.state import CustomerState
from schemas.events import parse_event
from streams import worker_process
from streams.delivery_guard import HOLE_LOGGED
from streams.partitioning import MIXED_PARTITIONERS, PARTITIONER_CHOICES, PartitionerName, partitioner_for
from streams.settings import Settings
from streams.wording import plural
from schemas.errors import ConfigurationError, SetupError

Log = Callable[[str], None]


@dataclass(frozen=True)
class CrashPlan:
    customers: int = 300
    kills: int = 10
    broker_restarts: int = 1
    rate: float = 0.0  # events per second produced; 0: spread the stream over the planned kills
    seed: int = 7
    store: str = "memory://"
    min_run_s: float = 1.0  # a worker processes for a random time in [min_run_s, max_run_s] before its kill
    max_run_s: float = 5.0
    catch_up_timeout_s: float = 300.0
    # How the test's producer partitions (see streams.partitioning): anything but murmur2 sends
    # messages off their customer's home partition, which the worker must forward.
    partitioner: PartitionerName = "murmur2"
    # Customers erased through the API while the kills go on, each once all its events are sent
    # (customers who stopped early, then asked to be forgotten): after the test each must be gone,
    # however many of its events Kafka redelivered after the request.
    erasures: int = 10

    def __post_init__(self) -> None:
        if self.partitioner not in PARTITIONER_CHOICES:
            raise ConfigurationError(f"unknown partitioner {self.partitioner!r}; "
                             f"expected one of {', '.join(PARTITIONER_CHOICES)}")

    def rate_for(self, events: int) -> float:
        """The rate at which the stream lasts about as long as the kills (a restart takes ~7 s)."""
        if self.rate > 0:
            return self.rate
        planned_s = self.kills * ((self.min_run_s + self.max_run_s) / 2 + 7.0) + self.broker_restarts * 15.0
        return max(events / max(planned_s, 10.0), 50.0)


@dataclass
class Recovery:
    what: str  # "worker" or "broker"
    at_s: float  # seconds into the test
    ready_s: float | None = None  # restart -> /ready (worker) or -> answering (broker)
    resumed_s: float | None = None  # restart -> the worker consumes events again


@dataclass
class CrashReport:
    events: int
    customers: int
    kills: int = 0
    broker_restarts: int = 0
    recoveries: list[Recovery] = field(default_factory=list)
    mismatched_customers: list[str] = field(default_factory=list)
    missing_customers: list[str] = field(default_factory=list)
    erased_customers: int = 0
    erasures_not_applied: list[str] = field(default_factory=list)  # still answered, or status not applied
    changes: int = 0
    duplicate_change_ids: int = 0
    conflicting_duplicates: int = 0
    differing_duplicates: int = 0  # copies not byte-identical (a change re-decided instead of resent as saved)
    final_view_mismatches: list[str] = field(default_factory=list)
    delivery_holes: int = 0  # offsets faust skipped that the workers' delivery guard re-read
    seconds: float = 0.0
    partitioner: str = "murmur2"  # how the test's producer partitioned the stream
    delivery: str = "faust, write-behind on"  # the worker's delivery path and write mode (SEGSTREAM_WORKER__*)

    @property
    def ok(self) -> bool:
        return not (self.mismatched_customers or self.missing_customers or self.erasures_not_applied
                    or self.conflicting_duplicates
                    or self.differing_duplicates or self.final_view_mismatches)

    def recovery_times(self, what: str, attr: str) -> list[float]:
        return [getattr(r, attr) for r in self.recoveries if r.what == what and getattr(r, attr) is not None]

    def lines(self) -> list[str]:
        def spread(values: list[float]) -> str:
            if not values:
                return "n/a"
            return f"median {sorted(values)[len(values) // 2]:.1f} s, max {max(values):.1f} s (n={len(values)})"

        return [
            f"partitioner: {describe_partitioner(self.partitioner)}",
            f"worker delivery: {self.delivery}",
            f"stream: {plural(self.events, 'event')} for {plural(self.customers, 'customer')}; "
            f"{plural(self.kills, 'SIGKILL')}, {plural(self.broker_restarts, 'broker restart')}; {self.seconds:.0f} s",
            f"worker restart -> ready: {spread(self.recovery_times('worker', 'ready_s'))}",
            f"worker restart -> consuming again: {spread(self.recovery_times('worker', 'resumed_s'))}",
            f"broker restart -> answering: {spread(self.recovery_times('broker', 'ready_s'))}; "
            f"-> worker consuming again: {spread(self.recovery_times('broker', 'resumed_s'))}",
            f"customers differing from the ground truth: {len(self.mismatched_customers)} "
            f"(missing: {len(self.missing_customers)})",
            f"customers erased through the API during the kills: {self.erased_customers}; "
            f"with data left or not applied: {len(self.erasures_not_applied)}",
            f"offsets faust skipped, re-read by the delivery guard: {self.delivery_holes}",
            f"segment changes: {self.changes}; change_ids delivered twice: {self.duplicate_change_ids}, "
            f"of which with a different decision: {self.conflicting_duplicates}, not byte-identical: "
            f"{self.differing_duplicates}; "
            f"deduplicated view != worker state: {len(self.final_view_mismatches)}",
            f"crash test: {'PASSED' if self.ok else 'FAILED'}",
        ]

    def to_json(self) -> bytes:
        return orjson.dumps({**asdict(self), "ok": self.ok}, option=orjson.OPT_INDENT_2)


def describe_partitioner(name: str) -> str:
    """``name`` for the report, with the partitioner of each event type spelled out for ``mixed``."""
    if name != "mixed":
        return name
    return f"mixed ({', '.join(f'{etype}: {p}' for etype, p in MIXED_PARTITIONERS.items())})"


# ---- the stream and its ground truth ----------------------------------------------------------


def build_stream(customers: int, seed: int) -> tuple[list[tuple[str, bytes, bytes]], dict[str, CustomerState]]:
    """(event type, key, value) in time order, and each customer's state after all of them."""
    from models.synthetic import generate_population

    pop = generate_population(customers, seed=seed, end=time.time() - 86_400)
    messages = [(e["type"], e["customer_id"].encode(), orjson.dumps(e)) for e in pop.events]
    config = ValueConfig()
    truth: dict[str, CustomerState] = {}
    for _, _, value in messages:
        event = parse_event(value)
        truth.setdefault(event.customer_id, CustomerState(event.customer_id)).apply(event, config)
    return messages, truth


def matches(profile: dict[str, Any], state: CustomerState) -> bool:
    return (profile.get("purchase_count") == state.purchase_count
            and abs(profile.get("total_spend", float("nan")) - state.total_spend) < 0.006
            and profile.get("refund_count") == state.refund_count
            and profile.get("support_tickets") == state.ticket_count
            and profile.get("complaints") == state.complaint_count)


class BackgroundProducer(threading.Thread):
    """Sends the messages at ``rate`` per second with an idempotent producer (no duplicates when
    it retries across the broker restart); ``sent`` counts acknowledged sends. The last tenth
    waits for ``release``, so that every kill happens while events still flow.

    Each message goes to the partition ``partitioner`` gives its key (``partitioner_for``), out of
    ``settings.topics.partitions``: explicit even for murmur2, so that the test, not the client's
    default, decides where the messages land."""

    def __init__(self, settings: Settings, messages: list[tuple[str, bytes, bytes]], rate: float,
                 partitioner: PartitionerName = "murmur2"):
        super().__init__(name="crash-test-producer", daemon=True)
        self.settings, self.messages, self.rate = settings, messages, rate
        self.partitioner = partitioner
        self.sent = 0
        self.error: BaseException | None = None
        self.release = threading.Event()

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:  # reported by the test, never swallowed
            self.error = exc

    async def _produce(self) -> None:
        from aiokafka import AIOKafkaProducer

        topics = self.settings.topics.input_topics
        partitions = self.settings.topics.partitions
        partition_of = {etype: partitioner_for(self.partitioner, etype) for etype in topics}
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, enable_idempotence=True,
                                    linger_ms=5, request_timeout_ms=120_000, retry_backoff_ms=500,
                                    **self.settings.kafka_client_kwargs())
        await producer.start()
        started = time.monotonic()
        hold_at = len(self.messages) * 9 // 10
        try:
            pending = []
            for i, (etype, key, value) in enumerate(self.messages, 1):
                if i == hold_at:
                    while not self.release.is_set():
                        await asyncio.sleep(0.1)
                    started = time.monotonic() - i / self.rate
                partition = partition_of[etype](key, partitions)
                pending.append(await producer.send(topics[etype], value, key=key, partition=partition))
                if len(pending) >= 200:
                    await asyncio.gather(*pending)
                    self.sent += len(pending)
                    pending.clear()
                ahead = i / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await asyncio.gather(*pending)
            self.sent += len(pending)
        finally:
            await producer.stop()


# ---- the worker and the broker ----------------------------------------------------------------


def _consumed(port: int) -> float | None:
    """Input events this worker process has taken in (applied, duplicate or dead-lettered)."""
    from streams.harnesses.bench import events_counted

    return events_counted(port)


def _wait_consuming(port: int, proc: Any, log_file: Path, timeout_s: float, baseline: float = 0.0) -> float | None:
    """Seconds until the worker's consumed count passes ``baseline`` (None: not within the timeout)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        worker_process.check_alive(proc, log_file)
        consumed = _consumed(port)
        if consumed is not None and consumed > baseline:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


class Worker:
    """The worker under test: one web port and data directory across all its restarts."""

    def __init__(self, env: dict[str, str], port: int, work_dir: Path):
        self.env, self.port, self.work_dir = env, port, work_dir
        self.proc: Any = None
        self.starts = 0

    @property
    def log_file(self) -> Path:
        return self.work_dir / f"worker-{self.starts}.log"

    def start(self) -> Recovery:
        """Start and wait until it is ready and consuming events."""
        self.starts += 1
        t0 = time.monotonic()
        self.proc = worker_process.start(self.env, self.log_file)
        rec = Recovery("worker", at_s=0.0)
        worker_process.wait_ready(self.proc, self.port, self.log_file, timeout_s=180)
        rec.ready_s = time.monotonic() - t0
        resumed = _wait_consuming(self.port, self.proc, self.log_file, timeout_s=120)
        rec.resumed_s = None if resumed is None else time.monotonic() - t0
        return rec

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> int:
        return worker_process.stop(self.proc)


def restart_broker(kafka: Any, worker: Worker) -> Recovery:
    """Stop the broker (a controlled shutdown), start it again on the same port and data."""
    kafka.stop()
    time.sleep(2.0)  # clients see the outage, not just a blip
    t0 = time.monotonic()
    kafka.start()
    rec = Recovery("broker", at_s=0.0, ready_s=time.monotonic() - t0)
    baseline = _consumed(worker.port) or 0.0
    resumed = _wait_consuming(worker.port, worker.proc, worker.log_file, timeout_s=180, baseline=baseline)
    rec.resumed_s = None if resumed is None else time.monotonic() - t0
    return rec


# ---- the checks -------------------------------------------------------------------------------


def pick_erased(messages: list[tuple[str, bytes, bytes]], count: int, rng: random.Random) -> dict[str, int]:
    """Up to ``count`` customers whose last event comes in the first 80 % of the stream, each with
    the number of messages after which all its events are sent."""
    last: dict[str, int] = {}
    for i, (_, key, _) in enumerate(messages, 1):
        last[key.decode()] = i
    early = sorted(c for c, i in last.items() if i < len(messages) * 8 // 10)
    return {c: last[c] for c in rng.sample(early, min(count, len(early)))}


class Erasures:
    """``DELETE /customers/{id}`` for each picked customer once its events are all sent, retried
    while the worker is down; afterwards each must answer 404 and its request be applied."""

    def __init__(self, port: int, due: dict[str, int]):
        self.port = port
        self.due = dict(sorted(due.items(), key=lambda item: item[1]))
        self.sent: dict[str, str] = {}  # customer id -> status URL

    def send_due(self, sent_messages: int, until_done: bool = False, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        for customer_id, after in list(self.due.items()):
            if after > sent_messages:
                continue
            while True:
                accepted = self._delete(customer_id)
                if accepted is not None:
                    self.sent[customer_id] = accepted["status_url"]
                    del self.due[customer_id]
                    break
                if not until_done or time.monotonic() > deadline:
                    return  # the worker is restarting: after the next restart
                time.sleep(1.0)

    def _delete(self, customer_id: str) -> dict[str, Any] | None:
        import urllib.request

        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/customers/{customer_id}", method="DELETE")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return orjson.loads(resp.read()) if resp.status == 202 else None
        except OSError:
            return None

    def not_applied(self) -> list[str]:

        left = []
        for customer_id, status_url in self.sent.items():
            status = worker_process.http_get(self.port, status_url, timeout=10)
            if worker_process.http_get(self.port, f"/customers/{customer_id}", timeout=10) is not None \
                    or status is None or not orjson.loads(status)["applied"]:
                left.append(customer_id)
        return left + list(self.due)


def check_customers(port: int, truth: dict[str, CustomerState]) -> tuple[list[str], list[str], dict[str, dict]]:
    """(mismatched ids, missing ids, profiles)."""

    mismatched, missing, profiles = [], [], {}
    for customer_id, state in truth.items():
        raw = worker_process.http_get(port, f"/customers/{customer_id}", timeout=10)
        if raw is None:
            missing.append(customer_id)
            continue
        profile = profiles[customer_id] = orjson.loads(raw)
        if not matches(profile, state):
            mismatched.append(customer_id)
    return mismatched, missing, profiles


async def read_topic(settings: Settings, topic: str, partitions: int | None = None) -> list[Any]:
    """Every record of ``topic`` (``partitions``: default the input topics' count) up to its current end."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                **settings.kafka_client_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions or settings.topics.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        records: list[Any] = []
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            for tp, recs in (await consumer.getmany(*remaining, timeout_ms=1000)).items():
                records.extend(recs)
                if recs and recs[-1].offset >= ends[tp] - 1:
                    remaining.discard(tp)
        return records
    finally:
        await consumer.stop()


def _decision(change: dict[str, Any]) -> tuple:
    seg, prev = change.get("segment") or {}, change.get("previous_segment") or {}
    return change["kind"], seg.get("id"), prev.get("id"), change["reason"]["code"]


def final_states(changelog: list[Any]) -> dict[str, CustomerState]:
    """The table as its changelog leaves it: the last value of each key (tombstones removed)."""
    latest: dict[bytes, bytes | None] = {}
    for record in changelog:
        latest[record.key] = record.value
    return {key.decode(): CustomerState.from_bytes(value) for key, value in latest.items() if value is not None}


def check_changes(records: list[Any], held: dict[str, CustomerState]) -> tuple[int, int, int, int, list[str]]:
    """(changes, duplicate ids, duplicates with another decision, duplicates not byte-identical,
    final-view mismatches).

    The consumer modelled here keeps the first copy of each ``change_id`` and follows each
    customer's cluster through ``entered``/``moved``/``left`` changes, in partition order.
    """
    first: dict[str, tuple[tuple, bytes]] = {}
    duplicates = conflicting = differing = 0
    cluster: dict[str, str | None] = {}
    for record in records:
        change = orjson.loads(record.value)
        decision = _decision(change)
        seen = first.get(change["change_id"])
        if seen is not None:
            duplicates += 1
            conflicting += seen[0] != decision
            differing += seen[1] != record.value
            continue
        first[change["change_id"]] = (decision, record.value)
        if change["kind"] == "cluster":
            cluster[change["customer_id"]] = decision[1]
    mismatches = []
    for customer_id, state in held.items():
        if cluster.get(customer_id) != state.cluster:
            mismatches.append(f"{customer_id}: changes say {cluster.get(customer_id)}, the worker holds {state.cluster}")
        if state.outbox:
            mismatches.append(f"{customer_id}: {len(state.outbox)} changes left unsent in the outbox")
    return len(records), duplicates, conflicting, differing, mismatches


# ---- the whole test ---------------------------------------------------------------------------


def crash_env(settings: Settings, port: int, data_dir: Path, store: str) -> dict[str, str]:
    return worker_process.env_for(
        settings, port, data_dir, SEGSTREAM_WORKER__STORE=store,
        # Static membership is the default (streams.group_member): the restarted worker, on the
        # same data directory and port, takes its partitions back at once.
        SEGSTREAM_WORKER__TRAIN_INTERVAL_S="5",  # new models keep arriving during the test
        SEGSTREAM_WORKER__SWEEP_PERIOD_S="5",
        SEGSTREAM_ENGINE__SEGMENTATION__MIN_CUSTOMERS_TO_TRAIN="40",
        SEGSTREAM_ENGINE__VALUE__MIN_CUSTOMERS_FOR_FIT="30")


def run(plan: CrashPlan, work_dir: Path, log: Log = print, base: Settings | None = None) -> CrashReport:
    from streams.harnesses.bench import bench_settings, create_topics
    from streams.local_kafka import LocalKafka, free_port

    base = base or Settings()
    started = time.monotonic()
    rng = random.Random(plan.seed)
    messages, truth = build_stream(plan.customers, plan.seed)
    report = CrashReport(events=len(messages), customers=len(truth), partitioner=plan.partitioner,
                         delivery=f"{base.worker.delivery}, write-behind {'on' if base.worker.write_behind else 'off'}")
    rate = plan.rate_for(len(messages))
    log(f"stream: {len(messages)} events for {len(truth)} customers at {rate:.0f}/s (~{len(messages) / rate:.0f} s)")
    kafka = LocalKafka.from_settings(base.local_kafka, run_dir=work_dir / "kafka")
    kafka.start()
    try:
        settings = bench_settings(kafka.bootstrap_servers, "crash.", 4, base)
        asyncio.run(create_topics(settings))
        port = free_port()
        worker = Worker(crash_env(settings, port, work_dir / "worker-data", plan.store), port, work_dir)
        producer = BackgroundProducer(settings, messages, rate, plan.partitioner)
        producer.start()
        worker.start()
        broker_after = {plan.kills * (i + 1) // (plan.broker_restarts + 1) for i in range(plan.broker_restarts)}
        erasures = Erasures(port, pick_erased(messages, plan.erasures, rng))
        for k in range(plan.kills):
            time.sleep(rng.uniform(plan.min_run_s, plan.max_run_s))
            erasures.send_due(producer.sent)
            worker.kill()
            report.kills += 1
            rec = worker.start()
            rec.at_s = time.monotonic() - started
            report.recoveries.append(rec)
            log(f"SIGKILL {report.kills}/{plan.kills}: ready in {rec.ready_s:.1f} s, consuming again after "
                f"{rec.resumed_s if rec.resumed_s is not None else float('nan'):.1f} s "
                f"({producer.sent}/{len(messages)} sent)")
            if k + 1 in broker_after:
                rec = restart_broker(kafka, worker)
                rec.at_s = time.monotonic() - started
                report.broker_restarts += 1
                report.recoveries.append(rec)
                log(f"broker restarted: answering after {rec.ready_s:.1f} s, worker consuming again after "
                    f"{rec.resumed_s if rec.resumed_s is not None else float('nan'):.1f} s")
        erasures.send_due(producer.sent)
        producer.release.set()
        producer.join(timeout=plan.catch_up_timeout_s + len(messages) / rate)
        erasures.send_due(producer.sent, until_done=True)
        for customer_id in erasures.sent:
            truth.pop(customer_id, None)
        report.erased_customers = len(erasures.sent)
        if producer.error is not None or producer.is_alive():
            raise SetupError(f"the producer did not finish: {producer.error!r}")
        log(f"stream sent ({producer.sent} events); waiting for the worker to catch up")
        deadline = time.monotonic() + plan.catch_up_timeout_s
        while True:
            worker_process.check_alive(worker.proc, worker.log_file)
            mismatched, missing, profiles = check_customers(port, truth)
            if not (mismatched or missing or erasures.not_applied()) or time.monotonic() > deadline:
                break
            time.sleep(2.0)
        time.sleep(3.0)  # nothing may change any more: a late duplicate would show now
        mismatched, missing, _ = check_customers(port, truth)
        report.mismatched_customers, report.missing_customers = mismatched, missing
        report.erasures_not_applied = erasures.not_applied()
        # The model keeps retraining and the sweep keeps re-deciding: compare the changes with
        # the states once the worker has stopped, both read from Kafka (no race with a live worker).
        if worker.stop() != 0:
            log(f"warning: the worker did not exit cleanly; log {worker.log_file}")
        records = asyncio.run(read_topic(settings, settings.topics.name("segment_changes")))
        held = final_states(asyncio.run(read_topic(settings, f"{settings.topics.prefix}app-customers-changelog")))
        (report.changes, report.duplicate_change_ids, report.conflicting_duplicates, report.differing_duplicates,
         report.final_view_mismatches) = check_changes(records, held)
    finally:
        if "worker" in locals() and worker.proc is not None and worker.proc.poll() is None:
            worker.kill()
        kafka.stop()
    report.delivery_holes = sum(log_file.read_text(errors="replace").count(HOLE_LOGGED)
                                for log_file in work_dir.glob("worker-*.log"))
    report.seconds = time.monotonic() - started
    return report

