"""Helpers for integration tests on the real broker (plain aiokafka, no mocks)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from monitoring.exposition import metric_sum
from streams import worker_process

ROOT = Path(__file__).resolve().parent.parent


async def produce(bootstrap: str, messages: list[tuple[str, bytes | None, bytes]]) -> None:
    """messages: (topic, key, value)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for topic, key, value in messages:
            await producer.send(topic, value, key=key)
        await producer.flush()
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, timeout_s: float = 60.0) -> list:
    """Read `count` records from the start of `topic` (all partitions) or fail after timeout."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, group_id=None)
    await consumer.start()
    records: list = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(records) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                records.extend(recs)
    finally:
        await consumer.stop()
    return records


def run(coro):
    return asyncio.run(coro)


class WorkerProcess:
    """A `segstream worker` subprocess with its web API, for end-to-end tests: started, waited for
    and stopped by :mod:`streams.worker_process` (the helper `segstream run` and the harnesses use)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        from streams.local_kafka import free_port

        self.port = int(env.get("SEGSTREAM_WORKER__WEB_PORT") or free_port())
        self.env = {**os.environ, **env, "SEGSTREAM_WORKER__WEB_PORT": str(self.port), "PYTHONUNBUFFERED": "1"}
        self.log_path = log_path
        self.proc = worker_process.start(self.env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, path: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, object]:
        import json
        import urllib.error
        import urllib.request

        req = urllib.request.Request(self.url + path, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                body = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            body, status = exc.read(), exc.code
        if path == "/metrics":
            return status, body.decode()
        return status, json.loads(body) if body else None

    def get(self, path: str) -> object:
        status, doc = self.request(path)
        assert status == 200, (path, status, doc)
        return doc

    def wait_ready(self, timeout_s: float = 90.0) -> dict:
        try:
            return worker_process.wait_ready(self.proc, self.port, self.log_path, timeout_s)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        _, text = self.request("/metrics")
        return metric_sum(str(text), name, **labels)

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> int:
        return worker_process.stop(self.proc, timeout_s=60)


def wait_until(predicate, timeout_s: float, what: str, interval_s: float = 0.5):  # noqa: ANN001, ANN201
    """Poll ``predicate`` until it returns a truthy value; fail with ``what`` after the timeout."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last: {last!r})")


def start_pair(env: dict[str, str], work_dir: Path, name: str = "") -> tuple[WorkerProcess, WorkerProcess]:
    """Two workers of one group (data directories ``<name>a`` and ``<name>b``), both ready."""
    a = WorkerProcess({**env, "SEGSTREAM_WORKER__DATA_DIR": str(work_dir / f"{name}a")}, work_dir / f"{name}a.log")
    b = WorkerProcess({**env, "SEGSTREAM_WORKER__DATA_DIR": str(work_dir / f"{name}b")}, work_dir / f"{name}b.log")
    try:
        for worker in (a, b):
            worker.wait_ready()
    except BaseException:
        for worker in (a, b):
            if worker.proc.poll() is None:
                worker.proc.kill()
                worker.proc.wait()
        raise
    return a, b


def wait_split(a: WorkerProcess, b: WorkerProcess, partitions: int = 4) -> tuple[list[int], list[int]]:
    """The partitions of each once the group has split all ``partitions`` between them."""
    def split() -> tuple[list[int], list[int]] | None:
        pa, pb = a.get("/ready")["partitions"], b.get("/ready")["partitions"]  # type: ignore[index]
        return (pa, pb) if pa and pb and sorted(pa + pb) == list(range(partitions)) else None
    return wait_until(split, 90, "the partitions to be split between the workers")


def wait_settled(worker: WorkerProcess, metric: str, what: str, timeout_s: float = 60.0) -> None:
    """Wait until ``metric`` (summed over its series) is the same two polls in a row, 3 s apart."""
    last = [-1.0]

    def settled() -> bool:
        now = worker.metric(metric)
        done, last[0] = now == last[0], now
        return done
    wait_until(settled, timeout_s, what, interval_s=3.0)
