"""Soak and burst (``segstream soak``): a worker under a steady stream for a long time, then a
burst of ten times the rate; memory sampled all along, the backlog watched until it drains, and
every customer checked against what was sent.

The stream cycles through a synthetic population's events with fresh event ids, so the set of
customers is fixed and their states stop growing once each has seen its history: a worker whose
memory still climbs after that leaks. The backlog is what was sent minus what the worker has
consumed (its ``segstream_events_total``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson

from streams import worker_process
from streams.settings import Settings
from schemas.errors import SetupError

Log = Callable[[str], None]


@dataclass(frozen=True)
class SoakPlan:
    minutes: float = 30.0
    rate: float = 300.0  # events per second, steady
    burst_factor: float = 10.0
    burst_seconds: float = 30.0
    customers: int = 300  # their whole history is cycled within the warm-up (~50k events)
    sample_s: float = 30.0  # memory and backlog sampled this often
    drain_timeout_s: float = 600.0
    seed: int = 5


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    sent: int
    consumed: int
    phase: str

    @property
    def backlog(self) -> int:
        return self.sent - self.consumed


@dataclass
class SoakReport:
    plan: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    sent: int = 0
    burst_peak_backlog: int = 0
    drained_after_burst_s: float | None = None
    mismatched_customers: list[str] = field(default_factory=list)
    worker_alive: bool = True
    seconds: float = 0.0

    def rss_growth(self) -> tuple[float, float, float]:
        """(RSS after warm-up, RSS at the end of the steady phase, growth in %): warm-up is the
        first quarter of the steady phase, while customers still see their history for the first time."""
        steady = [s for s in self.samples if s.phase == "steady"]
        if len(steady) < 2:
            return float("nan"), float("nan"), float("nan")
        start = steady[len(steady) // 4].rss_mb
        end = steady[-1].rss_mb
        return start, end, (end - start) / start * 100

    @property
    def ok(self) -> bool:
        growth = self.rss_growth()[2]
        return (self.worker_alive and not self.mismatched_customers and self.drained_after_burst_s is not None
                and not growth > 10.0)

    def lines(self) -> list[str]:
        start, end, growth = self.rss_growth()
        out = ["  t (s)  phase    RSS (MB)    sent        backlog"]
        out += [f"{s.t_s:7.0f}  {s.phase:7}  {s.rss_mb:8.1f}  {s.sent:10,}  {s.backlog:10,}" for s in self.samples]
        out += [
            f"sent {self.sent:,} events in {self.seconds:.0f} s",
            (f"memory: {start:.1f} MB after warm-up -> {end:.1f} MB at the end of the steady phase ({growth:+.1f} %)"
             if growth == growth else  # NaN: too few samples to compare
             "memory: not judged: the steady phase had fewer than 2 samples (a longer --minutes, or a shorter "
             "--sample-seconds)"),
            f"burst x{self.plan['burst_factor']:.0f} for {self.plan['burst_seconds']:.0f} s: peak backlog "
            f"{self.burst_peak_backlog:,}, drained "
            + (f"{self.drained_after_burst_s:.0f} s after the burst ended" if self.drained_after_burst_s is not None
               else "NOT within the timeout"),
            f"customers differing from what was sent: {len(self.mismatched_customers)}",
            f"soak: {'PASSED' if self.ok else 'FAILED'}",
        ]
        return out

    def to_json(self) -> bytes:
        doc = asdict(self)
        doc["ok"] = self.ok
        return orjson.dumps(doc, option=orjson.OPT_INDENT_2)


class Truth:
    """Per customer: purchases and net spend of everything sent (what the worker must end with)."""

    def __init__(self) -> None:
        self.purchases: dict[str, int] = defaultdict(int)
        self.spend_micros: dict[str, int] = defaultdict(int)

    def add(self, etype: str, doc: dict[str, Any]) -> None:
        if etype != "purchase":
            return
        cid, amount = doc["customer_id"], doc["amount"]
        self.spend_micros[cid] += round(amount * 1_000_000)
        if amount >= 0:
            self.purchases[cid] += 1


class SteadyProducer(threading.Thread):
    """Cycles through the population's events with fresh ids at ``rate`` (changeable on the fly)."""

    def __init__(self, settings: Settings, templates: list[tuple[str, bytes, dict]], rate: float):
        super().__init__(name="soak-producer", daemon=True)
        self.settings, self.templates, self.rate = settings, templates, rate
        self.sent = 0
        self.truth = Truth()
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._produce())
        except BaseException as exc:
            self.error = exc

    async def _produce(self) -> None:
        from aiokafka import AIOKafkaProducer

        topics = self.settings.topics.input_topics
        producer = AIOKafkaProducer(bootstrap_servers=self.settings.bootstrap_servers, enable_idempotence=True,
                                    linger_ms=5, **self.settings.kafka_client_kwargs())
        await producer.start()
        try:
            n = len(self.templates)
            window_start, window_sent, rate = time.monotonic(), 0, self.rate
            pending = []
            while not self.stop.is_set():
                if self.rate != rate:  # a new rate: pace from here on
                    window_start, window_sent, rate = time.monotonic(), 0, self.rate
                etype, key, doc = self.templates[self.sent % n]
                doc = {**doc, "event_id": f"{doc['event_id']}~s{self.sent // n}"}
                pending.append(await producer.send(topics[etype], orjson.dumps(doc), key=key))
                self.truth.add(etype, doc)
                self.sent += 1
                window_sent += 1
                if len(pending) >= 500:
                    await asyncio.gather(*pending)
                    pending.clear()
                ahead = window_sent / rate - (time.monotonic() - window_start)
                if ahead > 0:
                    await asyncio.sleep(ahead)
            await asyncio.gather(*pending)
        finally:
            await producer.stop()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run(plan: SoakPlan, work_dir: Path, log: Log = print, base: Settings | None = None) -> SoakReport:
    from models.synthetic import generate_population
    from streams.harnesses.bench import bench_settings, broker, create_topics, events_counted
    from streams.local_kafka import free_port

    base = base or Settings()
    started = time.monotonic()
    report = SoakReport(plan=asdict(plan))
    pop = generate_population(plan.customers, seed=plan.seed, end=time.time() - 86_400)
    templates = [(e["type"], e["customer_id"].encode(), e) for e in pop.events]
    log(f"population: {plan.customers} customers, {len(templates):,} distinct events cycled with fresh ids")
    with broker(base, work_dir, log) as bootstrap:
        settings = bench_settings(bootstrap, f"soak{int(time.time())}.", 4, base)
        asyncio.run(create_topics(settings))
        port = free_port()
        log_file = work_dir / "worker.log"
        env = worker_process.env_for(settings, port, work_dir / "worker-data", SEGSTREAM_WORKER__SWEEP_PERIOD_S="60")
        proc = worker_process.start(env, log_file)
        try:
            worker_process.wait_ready(proc, port, log_file)
            producer = SteadyProducer(settings, templates, plan.rate)
            producer.start()

            def sample(phase: str) -> Sample:
                worker_process.check_alive(proc, log_file)
                s = Sample(time.monotonic() - started, rss_mb(proc.pid), producer.sent,
                           int(events_counted(port) or 0), phase)
                report.samples.append(s)
                return s

            steady_end = time.monotonic() + plan.minutes * 60
            next_log = 0.0
            while time.monotonic() < steady_end:
                s = sample("steady")
                if s.t_s >= next_log:
                    log(f"{s.t_s:6.0f} s  RSS {s.rss_mb:7.1f} MB  sent {s.sent:,}  backlog {s.backlog:,}")
                    next_log = s.t_s + 60
                time.sleep(min(plan.sample_s, max(steady_end - time.monotonic(), 0.1)))
            log(f"burst: {plan.rate * plan.burst_factor:.0f} events/s for {plan.burst_seconds:.0f} s")
            producer.rate = plan.rate * plan.burst_factor
            burst_end = time.monotonic() + plan.burst_seconds
            while time.monotonic() < burst_end:
                report.burst_peak_backlog = max(report.burst_peak_backlog, sample("burst").backlog)
                time.sleep(1.0)
            producer.rate = plan.rate
            drain_deadline = time.monotonic() + plan.drain_timeout_s
            while time.monotonic() < drain_deadline:
                s = sample("drain")
                report.burst_peak_backlog = max(report.burst_peak_backlog, s.backlog)
                if s.backlog <= plan.rate:  # at most a second of steady traffic in flight
                    report.drained_after_burst_s = time.monotonic() - burst_end
                    break
                time.sleep(1.0)
            log(f"backlog after the burst: peak {report.burst_peak_backlog:,}, drained after "
                f"{report.drained_after_burst_s if report.drained_after_burst_s is not None else float('nan'):.0f} s")
            producer.stop.set()
            producer.join(timeout=120)
            if producer.error is not None:
                raise SetupError(f"the producer failed: {producer.error!r}")
            report.sent = producer.sent
            deadline = time.monotonic() + plan.drain_timeout_s
            while (events_counted(port) or 0) < report.sent and time.monotonic() < deadline:
                time.sleep(1.0)
            sample("end")
            for customer_id in sorted(pop.personas):
                raw = worker_process.http_get(port, f"/customers/{customer_id}", timeout=10)
                profile = orjson.loads(raw) if raw else {}
                purchases = producer.truth.purchases.get(customer_id, 0)
                spend = producer.truth.spend_micros.get(customer_id, 0) / 1_000_000
                if raw is None and purchases == 0 and customer_id not in producer.truth.spend_micros:
                    continue  # a customer whose events were never reached in the cycle
                if profile.get("purchase_count") != purchases or abs(profile.get("total_spend", 0) - spend) > 0.01:
                    report.mismatched_customers.append(customer_id)
            report.worker_alive = proc.poll() is None
        finally:
            worker_process.stop(proc)
    report.seconds = time.monotonic() - started
    return report
