"""`segstream run` (the README's run command): worker, history replayed through Kafka, live changes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams.local_kafka import free_port

pytestmark = pytest.mark.kafka

ROOT = Path(__file__).resolve().parent.parent


def test_run_replays_cdnow_and_prints_segment_changes_live(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SEGSTREAM_TOPICS__PREFIX": unique_prefix,
           "SEGSTREAM_WORKER__APP_ID": f"{unique_prefix}app", "SEGSTREAM_WORKER__WEB_PORT": str(free_port()),
           "SEGSTREAM_WORKER__DATA_DIR": str(tmp_path / "data"), "SEGSTREAM_WORKER__TRAIN_INTERVAL_S": "1",
           "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    out = (tmp_path / "out.txt").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "--rate", "0", "--run-dir", str(tmp_path)],
                            cwd=ROOT, env=env, stdout=out, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 150
        lines: list[str] = []
        while time.monotonic() < deadline and proc.poll() is None:
            lines = (tmp_path / "out.txt").read_text().splitlines()
            if sum("rule" in line for line in lines) >= 5 and sum("cluster" in line for line in lines) >= 200:
                break
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err.decode()
    assert proc.returncode == 0, stderr[-3000:]
    assert "replayed 6919 events" in stderr and "Stopping the worker" in stderr
    changes = [line for line in lines if "cdnow-" in line]
    assert len(changes) >= 200, (tmp_path / "worker.log").read_text()[-3000:]
    # Enters with the reason and model version; rule segments from examples/segments.toml.
    assert any("first_assignment" in line and "model v" in line for line in changes)
    assert any("rule_entered" in line for line in changes)
