"""Helpers for integration tests on the real broker (plain aiokafka, no mocks)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

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


def start_worker(env_overrides: dict[str, str], log_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, **env_overrides, "PYTHONUNBUFFERED": "1"}
    log = open(log_path, "wb")
    return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", *args], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)


def wait_for_log(log_path: Path, needle: str, timeout_s: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if needle in log_path.read_text(errors="replace"):
            return
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"{needle!r} not in worker log after {timeout_s}s:\n{log_path.read_text()[-3000:]}")


def stop_worker(proc: subprocess.Popen, timeout_s: float = 30.0) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("worker did not stop within 30s of SIGTERM")


def run(coro):
    return asyncio.run(coro)
