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


def run_env(bootstrap: str, prefix: str, tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SEGSTREAM_TOPICS__PREFIX": prefix,
            "SEGSTREAM_WORKER__APP_ID": f"{prefix}app", "SEGSTREAM_WORKER__WEB_PORT": str(free_port()),
            "SEGSTREAM_WORKER__DATA_DIR": str(tmp_path / "data"), "SEGSTREAM_WORKER__TRAIN_INTERVAL_S": "1",
            "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}


def test_run_replays_cdnow_and_prints_segment_changes_live(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    env = run_env(kafka_bootstrap, unique_prefix, tmp_path)
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
    assert proc.returncode == 130, stderr[-3000:]  # Ctrl-C: the shell's convention, after the graceful stop
    assert "replayed 6,919 events" in stderr and "Stopping the worker" in stderr
    changes = [line for line in lines if "cdnow-" in line]
    assert len(changes) >= 200, (tmp_path / "worker.log").read_text()[-3000:]
    # Enters with the reason and model version; rule segments from examples/segments.toml.
    assert any("first_assignment" in line and "model v" in line for line in changes)
    assert any("rule_entered" in line for line in changes)


def test_ctrl_c_during_the_replay_stops_it_at_once(kafka_bootstrap: str, unique_prefix: str, tmp_path: Path) -> None:
    """At 100 events/s the CDNOW replay would take 70 s, and the wait for the worker more: Ctrl-C
    must not wait for either."""
    env = run_env(kafka_bootstrap, unique_prefix, tmp_path)
    err_path = tmp_path / "err.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "run", "--rate", "100", "--run-dir",
                                 str(tmp_path)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and "segment changes follow" not in err_path.read_text():
            assert proc.poll() is None, err_path.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)
        proc.send_signal(signal.SIGINT)
        stopping = time.monotonic()
        code = proc.wait(timeout=60)
        took = time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr = err_path.read_text()
    assert code == 130, stderr[-3000:]
    assert "replayed 6,919 events" not in stderr and "Stopping the worker" in stderr
    assert took < 30, stderr[-3000:]  # the worker's graceful stop, not the rest of the replay


def test_a_contract_history_is_replayed_in_time_order(tmp_path: Path) -> None:
    """`segstream run --events FILE` replays in time order, as the README says (the new user's
    report: shared/cases 12b unsorted gave another live change stream than its sorted copy);
    invalid lines keep going to the dead-letter topic, last."""
    from streams.demo import history_in_time_order

    events = [b'{"type":"purchase","event_id":"b","customer_id":"c1","timestamp":"2026-04-10T10:00:00Z","amount":4.0}',
              b'{"type":"purchase","event_id":"a","customer_id":"c1","timestamp":"2026-01-10T10:00:00Z","amount":4.0}',
              b'{"type":"purchase","event_id":"c","customer_id":"c2","timestamp":"2026-02-01T10:00:00Z","amount":4.0}']
    source = tmp_path / "unsorted.jsonl"
    source.write_bytes(b"\n".join([b"not an event", *events]) + b"\n")
    ordered = history_in_time_order(source, tmp_path).read_bytes().splitlines()
    assert ordered == [events[1], events[2], events[0], b"not an event"]
