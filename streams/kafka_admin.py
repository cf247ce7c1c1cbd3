"""Small admin helpers over aiokafka: readiness probe and topic creation with sensible settings."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from schemas.errors import SetupError
from streams.wording import plural

log = logging.getLogger("segstream.kafka")


async def _list_topics(bootstrap: str, timeout_s: float, **client_kwargs: object) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000),
                                **client_kwargs)
    try:
        await asyncio.wait_for(admin.start(), timeout_s)
        return list(await asyncio.wait_for(admin.list_topics(), timeout_s))
    finally:
        with contextlib.suppress(Exception):
            await admin.close()


def _port_open(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=0.5):
            return True
    except OSError:
        return False


def broker_answers(bootstrap: str, timeout_s: float = 2.0, **client_kwargs: object) -> bool:
    """True when the broker answers a metadata request (``client_kwargs``: security settings)."""
    # Probe the port first: aiokafka logs an ERROR for every refused connection.
    if not _port_open(bootstrap):
        return False
    try:
        asyncio.run(_list_topics(bootstrap, timeout_s, **client_kwargs))
        return True
    except Exception:  # any failure means "not yet"; the caller retries until its deadline
        return False


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int = 1
    config: tuple[tuple[str, str], ...] = ()


class TopicMismatch(SetupError):
    """An existing topic has another partition count than configured: co-partitioning is broken."""


async def ensure_topics(bootstrap: str, specs: list[TopicSpec], **client_kwargs: object) -> None:
    """Create the topics that do not exist yet; existing ones are left untouched, but must have the
    configured partition count (raises :class:`TopicMismatch` otherwise)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **client_kwargs)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        await _check_partitions(admin, [s for s in specs if s.name in existing])
        new = [
            NewTopic(s.name, s.partitions, s.replication_factor, topic_configs=dict(s.config))
            for s in specs
            if s.name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(new)
            log.info("created topics: %s", ", ".join(t.name for t in new))
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, specs: list[TopicSpec]) -> None:
    if not specs:
        return
    described = await admin.describe_topics([s.name for s in specs])
    actual = {d["topic"]: len(d["partitions"]) for d in described}
    wrong = [f"{s.name} has {plural(actual[s.name], 'partition')}, configured {s.partitions}"
             for s in specs if s.name in actual and actual[s.name] != s.partitions]
    if wrong:
        raise TopicMismatch("existing topics do not match the configuration (the customer topics and "
                            "the table must be co-partitioned): " + "; ".join(wrong))
