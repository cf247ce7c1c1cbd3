"""Shared fixtures. Integration tests run against a real Apache Kafka: the one named by
KAFKA_BOOTSTRAP_SERVERS, or a single-node KRaft broker started once for the session."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
        return
    from streams.local_kafka import LocalKafka

    kafka = LocalKafka.from_settings(Settings().local_kafka, run_dir=tmp_path_factory.mktemp("kafka"))
    kafka.start()
    print(f"\nlocal Kafka on {kafka.bootstrap_servers}, started in {kafka.started_in_s:.1f}s, log {kafka.log_file}")
    try:
        yield kafka.bootstrap_servers
    finally:
        kafka.stop()


@pytest.fixture
def unique_prefix() -> str:
    """A topic prefix of its own for each test, so tests never see each other's messages."""
    return f"t{uuid.uuid4().hex[:10]}."
