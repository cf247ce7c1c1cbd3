"""Send contract JSONL files to the input topics (``segstream produce``)."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Iterator

import orjson
from aiokafka import AIOKafkaProducer

from streams.settings import Settings

log = logging.getLogger(__name__)


def route_line(line: bytes, topics: dict[str, str]) -> tuple[str, bytes] | None:
    """(topic, key) for one JSONL line, or None when it has no known type or no customer id.

    The worker validates the whole event; here we only need enough to route and key it.
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(obj, dict):
        return None
    topic = topics.get(obj.get("type"))
    customer = obj.get("customer_id")
    if topic is None or not isinstance(customer, str):
        return None
    return topic, customer.encode()


def iter_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if line:
                yield number, line


async def produce_jsonl(settings: Settings, path: Path, rate: float = 0.0) -> tuple[int, int]:
    topics = settings.topics.input_topics
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                                enable_idempotence=True)
    await producer.start()
    sent = skipped = 0
    started = time.monotonic()
    try:
        for number, line in iter_lines(path):
            routed = route_line(line, topics)
            if routed is None:
                skipped += 1
                log.warning("line %d: no known 'type' or no 'customer_id'; not sent", number)
                continue
            topic, key = routed
            await producer.send(topic, line, key=key)
            sent += 1
            if rate > 0:
                ahead = sent / rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        await producer.flush()
    finally:
        await producer.stop()
    return sent, skipped
