"""A misconfiguration is one line per setting, named by its environment variable, and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def segstream(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_invalid_settings_are_named_one_line_each_and_exit_2(tmp_path: Path) -> None:
    done = segstream("worker", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9", SEGSTREAM_WORKER__CLOCK="bogus",
                     SEGSTREAM_WORKER__BATCH_MAX="0", SEGSTREAM_WORKER__DATA_DIR=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "invalid configuration: SEGSTREAM_WORKER__CLOCK: String should match pattern '^(wall|event)$' (got 'bogus')",
        "invalid configuration: SEGSTREAM_WORKER__BATCH_MAX: Input should be greater than or equal to 1 (got '0')",
    ]


def test_exactly_once_is_refused_at_start_not_silently_ignored(tmp_path: Path) -> None:
    done = segstream("worker", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9", SEGSTREAM_WORKER__DATA_DIR=str(tmp_path),
                     SEGSTREAM_WORKER__PROCESSING_GUARANTEE="exactly_once")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("invalid configuration: SEGSTREAM_WORKER__PROCESSING_GUARANTEE: ")
    assert "exactly_once is not supported" in line and "at_least_once" in line


def test_secrets_are_not_echoed() -> None:
    done = segstream("topics", SEGSTREAM_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
                     SEGSTREAM_KAFKA__SASL_PASSWORD="hunter2-secret")
    assert done.returncode == 2
    assert "hunter2-secret" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("invalid configuration: SEGSTREAM_KAFKA: ")


def test_a_broker_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    done = segstream("topics", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("cannot connect to Kafka at 127.0.0.1:9 (KAFKA_BOOTSTRAP_SERVERS): ")
    assert "Errno 111" in line  # why, as the client saw it (connection refused)


@pytest.mark.kafka
def test_topics_with_another_partition_count_are_refused_in_one_line(kafka_bootstrap: str,
                                                                     unique_prefix: str) -> None:
    assert segstream("topics", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                     SEGSTREAM_TOPICS__PREFIX=unique_prefix).returncode == 0
    done = segstream("topics", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SEGSTREAM_TOPICS__PREFIX=unique_prefix,
                     SEGSTREAM_TOPICS__PARTITIONS="8")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert line.startswith("existing topics do not match the configuration")
