"""``segstream produce`` of a CDNOW file through the real CLI to a real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from schemas.events import parse_event
from streams.kafka_admin import ensure_topics
from streams.producer import cdnow_record, resolve_format
from streams.settings import Settings, TopicSettings
from streams.topics import topic_specs
from tests.kafka_helpers import ROOT, consume, run

CDNOW_LINES = [
    " 00004 0001 19970101  2   29.33",
    " 00004 0001 19970118  2   29.73",
    " 00018 0002 19970112  1   14.96",
    " 00021 0003 1997013x  1   11.77",  # line 4: not a date
    " 00050 0004 19970101  1   10.00",
]


def write_cdnow(tmp_path: Path) -> Path:
    path = tmp_path / "cdnow.txt"
    path.write_text("\n".join(CDNOW_LINES) + "\n")
    return path


def test_format_detection_and_conversion(tmp_path: Path) -> None:
    path = write_cdnow(tmp_path)
    assert resolve_format(path, "auto") == "cdnow"
    assert resolve_format(ROOT / "examples" / "events.jsonl", "auto") == "jsonl"
    assert resolve_format(path, "jsonl") == "jsonl"  # an explicit format wins
    assert cdnow_record(b"1 2 19970101 1 nan", 7, "t").reason.startswith("amount")  # type: ignore[union-attr]
    assert "5 columns" in cdnow_record(b"1 2 3", 8, "t").reason  # type: ignore[union-attr]


@pytest.mark.kafka
def test_produce_cdnow_file_sends_purchases_and_reports_bad_lines(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(topics=TopicSettings(prefix=unique_prefix))
    # Create the topics like the worker would: auto-creation would give them 1 partition, not 4.
    run(ensure_topics(kafka_bootstrap, topic_specs(settings)))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SEGSTREAM_TOPICS__PREFIX": unique_prefix}

    done = subprocess.run([sys.executable, "-m", "streams.cli", "produce", str(write_cdnow(tmp_path))],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    assert "line 4" in done.stderr
    assert "sent 4 events (cdnow); 1 lines skipped" in done.stdout
    records = run(consume(kafka_bootstrap, settings.topics.name("purchases"), 4, timeout_s=30))
    assert len(records) == 4
    events = [parse_event(r.value, expected_type="purchase") for r in records]
    assert all(r.key == e.customer_id.encode() for r, e in zip(records, events))
    assert sorted(e.customer_id for e in events) == ["cdnow-0001", "cdnow-0001", "cdnow-0002", "cdnow-0004"]
    assert sorted(e.amount for e in events) == [10.0, 14.96, 29.33, 29.73]


@pytest.mark.kafka
def test_produce_limit(kafka_bootstrap: str, unique_prefix: str, tmp_path: Path) -> None:
    settings = Settings(topics=TopicSettings(prefix=unique_prefix))
    run(ensure_topics(kafka_bootstrap, topic_specs(settings)))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SEGSTREAM_TOPICS__PREFIX": unique_prefix}

    done = subprocess.run([sys.executable, "-m", "streams.cli", "produce", "--limit", "2",
                           str(write_cdnow(tmp_path))], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)

    assert done.returncode == 0, done.stderr
    assert "sent 2 events" in done.stdout
