"""SIGTERM with the broker gone: the worker exits within its shutdown deadline instead of hanging
in aiokafka's reconnect loop (nothing is lost: uncommitted messages are redelivered)."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from streams.local_kafka import LocalKafka
from streams.settings import Settings
from tests.kafka_helpers import WorkerProcess
from tests.test_worker_e2e import worker_env

pytestmark = pytest.mark.kafka


def test_sigterm_while_the_broker_is_down_ends_the_worker_by_its_deadline(tmp_path: Path) -> None:
    kafka = LocalKafka.from_settings(Settings().local_kafka, run_dir=tmp_path / "kafka")
    kafka.start()
    worker = None
    try:
        env = worker_env(kafka.bootstrap_servers, "down.", tmp_path / "data", SEGSTREAM_WORKER__SHUTDOWN_TIMEOUT_S="5")
        worker = WorkerProcess(env, tmp_path / "worker.log")
        worker.wait_ready()
        kafka.kill()
        time.sleep(2)
        worker.proc.send_signal(signal.SIGTERM)
        try:
            code = worker.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            pytest.fail("the worker hung after SIGTERM with the broker down")
        assert code == 1  # not a clean stop, and it says so
        assert "exiting now: graceful stop did not finish within 5s" in worker.log_path.read_text()
    finally:
        if worker is not None and worker.proc.poll() is None:
            worker.proc.kill()
        kafka.stop()
