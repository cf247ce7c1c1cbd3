"""Worker restart to ready with N customers in the table (issue #20), on a real broker.

1. **fill**: the customers table's changelog topic (``<app id>-customers-changelog``, created as
   faust creates it: compacted, one partition per input partition) gets N customer states, produced
   directly with aiokafka. The states are real: ``CustomerState.to_bytes()`` of the customers of a
   small synthetic population run through the worker's own code (:func:`streams.harnesses.bench.run_engine`),
   each copied under new ids ``cust-0000000``...; every record goes to its customer's home partition
   (:func:`streams.partitioning.home_partition`), where the worker itself writes it. The engine run
   reads topics of another prefix than the worker's inputs, so the positions the states hold (the
   offsets they applied, see :mod:`models.state`) never make a new event look redelivered.
2. **runs**, one after the other, with one fixed static-member id (a restart rejoins at once):

   * ``baseline``: a worker with another app id (an empty table): its RSS once ready;
   * ``memory://``: replays the whole changelog into a dict;
   * ``rocksdb:// cold``: an empty data directory: the whole changelog into RocksDB;
   * ``rocksdb:// warm``: the same data directory again: only what the last run wrote.

   Each run: one input event for an existing customer is produced first, then the worker starts;
   timed from the process start to its web server answering (``/health``), to ``/ready`` 200 (the
   table recovered, the model feed started) and to the first input event consumed (its
   ``/metrics``); then the worker's RSS, a check of the table by lookups (``/customers/{id}``: a
   sample of the filled ids must be found, one never filled must not), and SIGTERM, timed to exit.

The worker logs of every run stay in the work directory (faust logs its recovery there).
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import orjson

from streams import worker_process
from streams.harnesses.bench import bench_settings, broker, build_messages, events_total, run_engine, worker_env
from streams.partitioning import home_partition
from streams.settings import Settings

GOAL_READY_S = 30.0
GOAL_BYTES_PER_CUSTOMER = 1024.0

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class RestartConfig:
    customers: int = 100_000
    partitions: int = 4
    template_customers: int = 1000  # the synthetic population whose states are copied
    seed: int = 1
    runs: tuple[str, ...] = ("baseline", "memory", "rocksdb-cold", "rocksdb-warm")
    lookups: int = 500  # filled ids looked up after each run's recovery (0: every one of them)
    ready_timeout_s: float = 1800.0
    work_dir: Path | None = None
    worker_env: dict[str, str] = field(default_factory=dict)  # more SEGSTREAM_ variables for every run
    raw_restore: bool = True  # also read the changelog with a plain aiokafka consumer (a ceiling)
    py_spy: str | None = None  # a py-spy binary: each run's worker is sampled from its start to ready


RUN_STORES = {"baseline": "memory://", "memory": "memory://", "rocksdb-cold": "rocksdb://",
              "rocksdb-warm": "rocksdb://"}


def changelog_topic(app_id: str) -> str:
    """The customers table's changelog topic, as faust names it (``<app id>-<table>-changelog``)."""
    return f"{app_id}-customers-changelog"


def customer_id(i: int) -> str:
    return f"cust-{i:07d}"


# ---- fill ------------------------------------------------------------------------------------


def state_templates(settings: Settings, customers: int, seed: int) -> list[bytes]:
    """The table of a synthetic population of ``customers`` after the worker's own code processed
    its events (in process, no Kafka): one state per customer."""
    messages = build_messages(customers, seed)
    _, table = run_engine(settings, messages)
    return list(table.values())


async def fill_changelog(settings: Settings, topic: str, templates: list[bytes], count: int,
                         log: Log = _stderr) -> dict[str, Any]:
    """``count`` customers into ``topic``, each a template state under its own id, on its home
    partition; waits for every acknowledgement."""
    from aiokafka import AIOKafkaProducer

    from models.state import CustomerState

    partitions = settings.topics.partitions
    states = [CustomerState.from_bytes(t) for t in templates]
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=50,
                                max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024,
                                **settings.kafka_client_kwargs())
    await producer.start()
    total_bytes = 0
    per_partition = [0] * partitions
    started = time.perf_counter()
    try:
        for i in range(count):
            state = states[i % len(states)]
            state.customer_id = customer_id(i)
            key = state.customer_id.encode()
            home = home_partition(key, partitions)
            # where the worker keeps this customer, its positions are positions of that partition
            positions = state.positions
            state.positions = {(tag, home): offset for (tag, _), offset in positions.items()}
            value = state.to_bytes()
            state.positions = positions
            await producer.send(topic, value, key=key, partition=home)
            total_bytes += len(key) + len(value)
            per_partition[home] += 1
            if (i + 1) % 100_000 == 0:
                log(f"  fill: {i + 1:,} of {count:,} ({time.perf_counter() - started:.1f}s)")
        await producer.flush()
        seconds = time.perf_counter() - started
    finally:
        await producer.stop()
    return {"customers": count, "seconds": seconds, "records_per_s": count / seconds,
            "mean_key_value_bytes": total_bytes / count, "per_partition": per_partition}


async def end_offsets(settings: Settings, topic: str) -> int:
    """Records in ``topic`` (the sum of its partitions' end offsets)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_kwargs())
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        return sum((await consumer.end_offsets(tps)).values())
    finally:
        await consumer.stop()


async def produce_probe(settings: Settings, cid: str, tag: str) -> None:
    """One purchase of an existing customer, to its home partition of the purchases topic."""
    from aiokafka import AIOKafkaProducer

    key = cid.encode()
    value = orjson.dumps({"type": "purchase", "event_id": f"{cid}-restart-{tag}", "customer_id": cid,
                          "timestamp": datetime.now(timezone.utc).isoformat(), "amount": 42.0, "currency": "USD"})
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, **settings.kafka_client_kwargs())
    await producer.start()
    try:
        await producer.send_and_wait(settings.topics.input_topics["purchase"], value, key=key,
                                     partition=home_partition(key, settings.topics.partitions))
    finally:
        await producer.stop()


async def raw_restore(settings: Settings, topic: str) -> dict[str, Any]:
    """The changelog read into a dict by a plain aiokafka consumer, in fetched batches (what a
    restore without faust's per-message machinery costs): the ceiling of any restore here."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    started = time.perf_counter()
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024,
                                **settings.kafka_client_kwargs())
    await consumer.start()
    table: dict[bytes, bytes] = {}
    records = 0
    try:
        tps = [TopicPartition(topic, p) for p in range(settings.topics.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            for tp, batch in (await consumer.getmany(*left, timeout_ms=1000, max_records=10_000)).items():
                for r in batch:
                    if r.value is None:
                        table.pop(r.key, None)
                    else:
                        table[r.key] = r.value
                records += len(batch)
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
    finally:
        await consumer.stop()
    seconds = time.perf_counter() - started
    return {"records": records, "customers": len(table), "seconds": seconds, "records_per_s": records / seconds}


# ---- one worker run --------------------------------------------------------------------------


def rss_bytes(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def lookup_status(port: int, cid: str, timeout: float = 10.0) -> int:
    """The HTTP status of ``GET /customers/{cid}`` on the worker."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/customers/{cid}", timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def readiness(port: int) -> dict | None:
    """The worker's /ready document, 200 or 503 (None when it does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as resp:
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return orjson.loads(exc.read()) if exc.code == 503 else None
    except OSError:
        return None


def check_table(port: int, count: int, lookups: int) -> dict[str, Any]:
    """Look up ``lookups`` filled ids spread over the table (every one with 0) and one never filled."""
    step = 1 if lookups <= 0 or lookups >= count else count / lookups
    ids = sorted({min(count - 1, int(k * step)) for k in range(count if step == 1 else lookups)} | {count - 1})
    missing = [customer_id(i) for i in ids if lookup_status(port, customer_id(i)) != 200]
    beyond = lookup_status(port, customer_id(count))
    return {"looked_up": len(ids), "found": len(ids) - len(missing), "missing": missing[:10],
            "never_filled_status": beyond}


def worker_log_lines(log_path: Path, start: int) -> list[str]:
    """faust's recovery milestones in the log written since byte ``start``."""
    wanted = ("Restoring state", "Done reading", "Recovery complete", "Worker ready", "Highwater",
              "Restore complete", "Starting standby", "recovery", "Elected", "assigned")
    with log_path.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    return [line for line in text.splitlines() if any(w in line for w in wanted)][:40]


def start_py_spy(py_spy: str, pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling ``pid`` (every thread, without pausing it) into ``out`` (collapsed stacks)."""
    return subprocess.Popen([py_spy, "record", "--pid", str(pid), "--format", "raw", "--threads", "--nonblocking",
                             "--rate", "50", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)  # py-spy writes its file on SIGINT
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_worker(settings: Settings, name: str, env: dict[str, str], log_path: Path, expect_customers: int,
               lookups: int, timeout_s: float, log: Log = _stderr, poll_s: float = 0.1,
               py_spy: str | None = None) -> dict[str, Any]:
    """Start a worker, time it to web / ready / consuming, measure and check it, stop it (SIGTERM).
    With ``py_spy``, the worker is profiled from its start to ready (``<log>.py-spy.txt``)."""
    log_start = log_path.stat().st_size if log_path.exists() else 0
    started = time.perf_counter()
    proc = worker_process.start(env, log_path)
    spy = start_py_spy(py_spy, proc.pid, log_path.with_suffix(".py-spy.txt")) if py_spy else None
    port = int(env["SEGSTREAM_WORKER__WEB_PORT"])
    result: dict[str, Any] = {"run": name, "store": env["SEGSTREAM_WORKER__STORE"], "pid": proc.pid,
                              "started_at": time.time() - (time.perf_counter() - started),
                              "load_at_start": os.getloadavg()[0]}
    try:
        deadline = time.monotonic() + timeout_s
        web_s = ready_s = consuming_s = None
        last_said = started
        while ready_s is None or consuming_s is None:
            worker_process.check_alive(proc, log_path)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{name}: not ready and consuming after {timeout_s:.0f}s; log {log_path}")
            now = time.perf_counter()
            if web_s is None and worker_process.http_get(port, "/health", timeout=1) is not None:
                web_s = now - started
            if web_s is not None and ready_s is None and worker_process.ready(port) is not None:
                ready_s = now - started
                if spy is not None:
                    stop_py_spy(spy)
                    spy = None
            if ready_s is not None and consuming_s is None:
                raw = worker_process.http_get(port, "/metrics", timeout=2)
                if raw is not None and events_total(raw.decode()) >= 1:
                    consuming_s = time.perf_counter() - started
            if now - last_said > 10:
                rss, _ = rss_bytes(proc.pid)
                doc = readiness(port) if web_s and not ready_s else None
                remaining = f" ({doc['changelog_remaining']:,} changelog records to go)" if doc else ""
                log(f"  {name}: {now - started:.0f}s, web {'up' if web_s else 'down'}, "
                    f"{'ready' if ready_s else 'recovering'}{remaining}, RSS {rss / 2**20:,.0f} MiB")
                last_said = now
            time.sleep(poll_s)
        result.update(web_s=web_s, ready_s=ready_s, consuming_s=consuming_s, load_at_ready=os.getloadavg()[0])
        time.sleep(1.0)  # what recovery left behind settles (faust's buffers, the first sweep tick)
        result["rss_bytes"], result["peak_rss_bytes"] = rss_bytes(proc.pid)
        result["ready"] = worker_process.ready(port)
        if expect_customers:
            result["table"] = check_table(port, expect_customers, lookups)
    finally:
        if spy is not None:
            stop_py_spy(spy)
        stop_started = time.perf_counter()
        result["exit_code"] = worker_process.stop(proc, timeout_s=120)
        result["shutdown_s"] = time.perf_counter() - stop_started
    result["milestones"] = worker_log_lines(log_path, log_start)
    return result


# ---- the whole run ---------------------------------------------------------------------------


def run(config: RestartConfig, log: Log = _stderr, base: Settings | None = None) -> dict[str, Any]:
    from streams.harnesses.bench import create_topics
    from streams.kafka_admin import TopicSpec, ensure_topics
    from streams.local_kafka import free_port

    base = base or Settings()
    work_dir = config.work_dir or Path(tempfile.mkdtemp(prefix="segstream-restart-"))
    work_dir.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    prefix = f"restart{tag}."
    results: dict[str, Any] = {"config": {
        "customers": config.customers, "partitions": config.partitions, "seed": config.seed,
        "template_customers": config.template_customers, "runs": list(config.runs), "lookups": config.lookups,
        "topic_prefix": prefix, "work_dir": str(work_dir), "cpus": os.cpu_count(),
        "worker_env": config.worker_env}}
    started = time.perf_counter()
    with broker(base, work_dir, log) as bootstrap:
        settings = bench_settings(bootstrap, prefix, config.partitions, base)
        asyncio.run(create_topics(settings))
        app_id = f"{prefix}app"
        topic = changelog_topic(app_id)
        # as faust declares it (faust.tables.base: compacting, the table's partitions)
        asyncio.run(ensure_topics(bootstrap, [TopicSpec(topic, config.partitions, settings.topics.replication_factor,
                                                        (("cleanup.policy", "compact"),))],
                                  **settings.kafka_client_kwargs()))

        log(f"state templates: {config.template_customers:,} synthetic customers through the engine...")
        t0 = time.perf_counter()
        other = bench_settings(bootstrap, f"tmpl{tag}.", config.partitions, base)  # positions of other topics
        templates = state_templates(other, config.template_customers, config.seed)
        results["templates"] = {"states": len(templates), "seconds": time.perf_counter() - t0,
                                "mean_bytes": sum(map(len, templates)) / len(templates)}
        log(f"{len(templates):,} templates, {results['templates']['mean_bytes']:,.0f} B on average; "
            f"filling {topic} with {config.customers:,} customers...")
        results["fill"] = asyncio.run(fill_changelog(settings, topic, templates, config.customers, log))
        log(f"fill: {results['fill']['seconds']:.1f}s ({results['fill']['records_per_s']:,.0f} records/s)")

        if config.raw_restore:
            results["raw_restore"] = asyncio.run(raw_restore(settings, topic))
            log(f"raw restore (plain aiokafka into a dict): {results['raw_restore']['seconds']:.1f}s "
                f"({results['raw_restore']['records_per_s']:,.0f} records/s)")
        port = free_port()
        results["runs"] = {}
        for name in config.runs:
            store = RUN_STORES[name]
            data_dir = work_dir / ("data-rocksdb" if store == "rocksdb://" else f"data-{name}")
            env = worker_env(settings, port, data_dir)
            env.update({"SEGSTREAM_WORKER__STORE": store,
                        # one static member across the runs: a restart gets its partitions back at once
                        "SEGSTREAM_WORKER__GROUP_INSTANCE_ID": f"restart-{tag}",
                        **config.worker_env})
            expect = config.customers
            if name == "baseline":  # another app id: its own group and an empty table
                env["SEGSTREAM_WORKER__APP_ID"] = f"{prefix}empty"
                env["SEGSTREAM_WORKER__GROUP_INSTANCE_ID"] = f"restart-{tag}-empty"
                expect = 0
            records = asyncio.run(end_offsets(settings, topic)) if expect else 0
            asyncio.run(produce_probe(settings, customer_id(0), name))
            log(f"{name} ({store}): {records:,} changelog records; starting the worker...")
            r = run_worker(settings, name, env, work_dir / f"worker-{name}.log", expect, config.lookups,
                           config.ready_timeout_s, log, py_spy=config.py_spy)
            r["changelog_records"] = records
            results["runs"][name] = r
            log(f"{name}: web {r['web_s']:.1f}s, ready {r['ready_s']:.1f}s, consuming {r['consuming_s']:.1f}s, "
                f"RSS {r['rss_bytes'] / 2**20:,.0f} MiB (peak {r['peak_rss_bytes'] / 2**20:,.0f}), "
                f"shutdown {r['shutdown_s']:.1f}s (exit {r['exit_code']})"
                + (f", lookups {r['table']['found']}/{r['table']['looked_up']} found" if "table" in r else ""))
    results["seconds"] = time.perf_counter() - started
    runs = results["runs"]
    if "baseline" in runs and "memory" in runs:
        grown = runs["memory"]["rss_bytes"] - runs["baseline"]["rss_bytes"]
        results["memory_bytes_per_customer"] = grown / config.customers
    return results


# ---- output ----------------------------------------------------------------------------------


def figure_rows(results: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    """(run, changelog records, web s, ready s, consuming s, RSS MiB / shutdown s) rows."""
    rows = []
    for name, r in results["runs"].items():
        rows.append((name, f"{r['changelog_records']:,}", f"{r['web_s']:.1f}", f"{r['ready_s']:.1f}",
                     f"{r['consuming_s']:.1f}",
                     f"{r['rss_bytes'] / 2**20:,.0f} MiB (peak {r['peak_rss_bytes'] / 2**20:,.0f}); "
                     f"shutdown {r['shutdown_s']:.1f}s exit {r['exit_code']}; "
                     f"load {r['load_at_start']:.1f} -> {r['load_at_ready']:.1f}"))
    return rows


def summary_lines(results: dict[str, Any]) -> list[str]:
    c, fill, runs = results["config"], results["fill"], results["runs"]
    lines = [f"{c['customers']:,} customers, {c['partitions']} partitions; fill {fill['seconds']:.1f}s "
             f"({fill['records_per_s']:,.0f} records/s, key + value {fill['mean_key_value_bytes']:,.0f} B)",
             f"{'run':<14} {'records':>10} {'web s':>7} {'ready s':>8} {'consume s':>10}  RSS / shutdown"]
    for row in figure_rows(results):
        lines.append(f"{row[0]:<14} {row[1]:>10} {row[2]:>7} {row[3]:>8} {row[4]:>10}  {row[5]}")
    if "raw_restore" in results:
        raw = results["raw_restore"]
        lines.append(f"raw restore (plain aiokafka consumer into a dict, in this process): {raw['seconds']:.1f}s, "
                     f"{raw['records_per_s']:,.0f} records/s")
    ready = {name: r["ready_s"] for name, r in runs.items() if name != "baseline"}
    if "memory" in ready and "rocksdb-cold" in ready:
        lines.append(f"ratio rocksdb cold / memory ready = {ready['rocksdb-cold'] / ready['memory']:.2f}")
    if "memory" in ready and "rocksdb-warm" in ready:
        lines.append(f"ratio rocksdb warm / memory ready = {ready['rocksdb-warm'] / ready['memory']:.2f}")
    if "memory_bytes_per_customer" in results:
        per = results["memory_bytes_per_customer"]
        lines.append(f"goal <= {GOAL_BYTES_PER_CUSTOMER:.0f} B per customer (worker RSS after memory:// recovery "
                     f"- empty worker): {per:,.0f} B -> {'MET' if per <= GOAL_BYTES_PER_CUSTOMER else 'MISSED'}")
    if ready:
        best = min(ready, key=lambda k: ready[k])
        lines.append(f"goal restart to ready < {GOAL_READY_S:.0f}s (the faster: {best}): {ready[best]:.1f}s -> "
                     f"{'MET' if ready[best] < GOAL_READY_S else 'MISSED'}")
    return lines


def to_json(results: dict[str, Any]) -> bytes:
    return orjson.dumps(results, option=orjson.OPT_INDENT_2)
