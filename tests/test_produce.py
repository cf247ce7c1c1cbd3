"""``segstream produce`` of a CDNOW file through the real CLI to a real broker; its
``--partitioner`` on a real broker; and librdkafka's partitioners (kcat) against ours."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from schemas.events import parse_event
from streams.kafka_admin import TopicSpec, ensure_topics
from streams.partitioning import (
    MIXED_PARTITIONERS,
    PARTITIONERS,
    Partitioner,
    crc32_partition,
    fnv1a_partition,
    home_partition,
)
from streams.producer import (
    Outgoing,
    Skipped,
    cdnow_record,
    iter_records,
    produce_file,
    resolve_format,
    topic_partitioners,
)
from streams.replay import iter_jsonl
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


def write_cdnow(tmp_path: Path, bom: bool = False) -> Path:
    path = tmp_path / "cdnow.txt"
    path.write_text("\n".join(CDNOW_LINES) + "\n", encoding="utf-8-sig" if bom else "utf-8")
    return path


def test_format_detection_and_conversion(tmp_path: Path) -> None:
    path = write_cdnow(tmp_path)
    assert resolve_format(path, "auto") == "cdnow"
    assert resolve_format(ROOT / "examples" / "events.jsonl", "auto") == "jsonl"
    assert resolve_format(path, "jsonl") == "jsonl"  # an explicit format wins
    assert cdnow_record(b"1 2 19970101 1 nan", 7, "t").reason.startswith("amount")  # type: ignore[union-attr]
    assert "5 columns" in cdnow_record(b"1 2 3", 8, "t").reason  # type: ignore[union-attr]


GOOD = b'{"type": "purchase", "event_id": "e1", "customer_id": "c1", "timestamp": "2026-01-05T00:00:00Z", "amount": 5}'


def records_of(tmp_path: Path, content: bytes) -> list[Outgoing | Skipped]:
    path = tmp_path / "events.jsonl"
    path.write_bytes(content)
    return [record for _, record in iter_records(path, "jsonl", Settings())]


def test_each_skipped_jsonl_line_says_what_is_wrong_with_it(tmp_path: Path) -> None:
    lines = [
        GOOD,                                                          # 1: sent
        GOOD[:-1] + b', "discount": NaN}',                             # 2: Python's json.dumps writes NaN
        GOOD[:-1] + b',}',                                             # 3: trailing comma
        GOOD[:40],                                                     # 4: cut off
        b'[' + GOOD + b']',                                            # 5: an array
        GOOD.replace(b'"purchase"', b'"refund"'),                      # 6: no such type
        GOOD.replace(b'"type": "purchase", ', b''),                    # 7: no type
        GOOD.replace(b'"customer_id": "c1", ', b''),                   # 8: no customer
        GOOD.replace(b'"c1"', b'42'),                                  # 9: customer id a number
        GOOD.replace(b'"e1"', b'"\xff"'),                              # 10: not UTF-8
        b'\xef\xbb\xbf' + GOOD,                                        # 11: a BOM inside the file
    ]
    records = records_of(tmp_path, b"\n".join(lines) + b"\n")

    assert isinstance(records[0], Outgoing) and records[0].key == b"c1"
    reasons = {r.line: r.reason for r in records if isinstance(r, Skipped)}
    nan_at, comma_at, bad_byte_at = len(GOOD) + 14, len(GOOD), GOOD.index(b'"e1"') + 2  # 1-based
    assert reasons == {
        2: f"not JSON: unexpected character, expected a JSON value at column {nan_at} "
           "(NaN is not a JSON number: write null or a number)",
        3: f"not JSON: trailing comma is not allowed at column {comma_at}",
        4: "not JSON: unexpected end of data at column 41",
        5: "not a JSON object but an array",
        6: "unknown 'type' 'refund' (expected purchase, engagement, feedback, profile)",
        7: "no 'type'",
        8: "no 'customer_id'",
        9: "'customer_id' is a number, not a string",
        10: f"not JSON: not valid UTF-8 (invalid start byte) at byte {bad_byte_at}",
        11: "not JSON: UTF-8 byte order mark (BOM) is not supported at column 1",
    }


def test_a_byte_order_mark_at_the_start_of_the_file_is_accepted(tmp_path: Path) -> None:
    """Windows editors save UTF-8 with a BOM: it is dropped, as the utf-8-sig codec drops it."""
    [first, second] = records_of(tmp_path, b"\xef\xbb\xbf" + GOOD + b"\r\n" + GOOD + b"\r\n")
    assert first == second == Outgoing("segstream.purchases", b"c1", GOOD)
    assert [line for _, line in iter_jsonl(tmp_path / "events.jsonl")] == [GOOD, GOOD]  # segstream replay too
    assert resolve_format(write_cdnow(tmp_path, bom=True), "auto") == "cdnow"
    [record, *_] = [r for _, r in iter_records(write_cdnow(tmp_path, bom=True), "cdnow", Settings())]
    assert isinstance(record, Outgoing)


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
    assert "sent 4 events (cdnow); 1 line skipped" in done.stdout
    records = run(consume(kafka_bootstrap, settings.topics.name("purchases"), 4, timeout_s=30))
    assert len(records) == 4
    events = [parse_event(r.value, expected_type="purchase") for r in records]
    assert all(r.key == e.customer_id.encode() for r, e in zip(records, events))
    assert sorted(e.customer_id for e in events) == ["cdnow-0001", "cdnow-0001", "cdnow-0002", "cdnow-0004"]
    assert sorted(e.amount for e in events) == [10.0, 14.96, 29.33, 29.73]


def produce_cli(bootstrap: str, prefix: str, *args: str) -> subprocess.CompletedProcess:
    """``segstream produce ARGS`` against topics of ``prefix`` (created first)."""
    run(ensure_topics(bootstrap, topic_specs(Settings(topics=TopicSettings(prefix=prefix)))))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "SEGSTREAM_TOPICS__PREFIX": prefix}
    return subprocess.run([sys.executable, "-m", "streams.cli", "produce", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.kafka
def test_produce_limit(kafka_bootstrap: str, unique_prefix: str, tmp_path: Path) -> None:
    done = produce_cli(kafka_bootstrap, unique_prefix, "--limit", "2", str(write_cdnow(tmp_path)))

    assert done.returncode == 0, done.stderr
    assert "sent 2 events" in done.stdout


# --- partitioners -------------------------------------------------------------------------------

# A few hundred distinct keys: enough that any two of the partitioners disagree on many of them.
KEYS = [f"cust-{i:05d}".encode() for i in range(300)]


def write_events(tmp_path: Path) -> Path:
    """One event of each input type for every key in KEYS (routed by 'type', keyed by customer_id)."""
    path = tmp_path / "events.jsonl"
    with path.open("wb") as f:
        for i, key in enumerate(KEYS):
            for etype in MIXED_PARTITIONERS:
                f.write(orjson.dumps({"type": etype, "event_id": f"{etype}-{i}", "customer_id": key.decode()}) + b"\n")
    return path


def placements(bootstrap: str, topic: str, count: int) -> dict[bytes, int]:
    """Key -> partition of every record of ``topic``, read back from the broker (``count`` records)."""
    records = run(consume(bootstrap, topic, count, timeout_s=30))
    assert len(records) == count
    return {r.key: r.partition for r in records}


def assert_placed_by(placed: dict[bytes, int], partitioner: Partitioner, partitions: int) -> None:
    """Every key sits where ``partitioner`` puts it, and no other partitioner would have put them
    all there (the check tells the partitioners apart)."""
    assert placed == {key: partitioner(key, partitions) for key in placed}
    for other in PARTITIONERS.values():
        if other is not partitioner:
            assert any(other(key, partitions) != p for key, p in placed.items()), other.__name__


def test_topic_partitioners_mixed_uses_one_per_input_topic() -> None:
    topics = TopicSettings().input_topics
    assert topic_partitioners(None, topics) == {}  # the client's own partitioner
    assert topic_partitioners("crc32", topics) == {topic: crc32_partition for topic in topics.values()}
    assert topic_partitioners("mixed", topics) == {topics["purchase"]: home_partition,
                                                   topics["engagement"]: crc32_partition,
                                                   topics["feedback"]: fnv1a_partition,
                                                   topics["profile"]: crc32_partition}


@pytest.mark.kafka
def test_produce_with_partitioner_crc32_puts_each_message_on_crc32_of_its_key(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    settings = Settings(topics=TopicSettings(prefix=unique_prefix))
    done = produce_cli(kafka_bootstrap, unique_prefix, "--partitioner", "crc32", str(write_events(tmp_path)))

    assert done.returncode == 0, done.stderr
    assert f"sent {len(MIXED_PARTITIONERS) * len(KEYS):,} events (jsonl)" in done.stdout
    for topic in settings.topics.input_topics.values():
        assert_placed_by(placements(kafka_bootstrap, topic, len(KEYS)), crc32_partition, settings.topics.partitions)


@pytest.mark.kafka
def test_produce_with_partitioner_mixed_uses_each_topics_partitioner_over_its_real_partition_count(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    # The topics have 6 partitions, the settings say 4: the producer must hash over the real 6.
    settings = Settings(topics=TopicSettings(prefix=unique_prefix, partitions=4))
    settings = settings.model_copy(update={"bootstrap_servers": kafka_bootstrap})
    topics = settings.topics.input_topics
    run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, 6) for topic in topics.values()]))

    report = run(produce_file(settings, write_events(tmp_path), "jsonl", partitioner="mixed"))

    assert report.sent == len(MIXED_PARTITIONERS) * len(KEYS) and report.skipped == []
    for etype, topic in topics.items():
        expected = PARTITIONERS[MIXED_PARTITIONERS[etype]]
        assert_placed_by(placements(kafka_bootstrap, topic, len(KEYS)), expected, 6)


def kcat() -> str:
    exe = shutil.which("kcat")
    if exe is None:
        pytest.fail("kcat is not installed: run scripts/install-system-deps.sh (Debian package 'kcat')")
    return exe


@pytest.mark.kafka
@pytest.mark.parametrize(("options", "partitioner"), [
    ([], crc32_partition),  # librdkafka's default, consistent_random: crc32 for a non-empty key
    (["-X", "partitioner=murmur2"], home_partition),
    (["-X", "partitioner=fnv1a"], fnv1a_partition),
], ids=["default", "murmur2", "fnv1a"])
def test_kcat_puts_keys_where_our_partitioners_say(
    kafka_bootstrap: str, unique_prefix: str, options: list[str], partitioner: Partitioner
) -> None:
    """Our functions are librdkafka's: what the worker computes for a key is where kcat,
    confluent-kafka & co. really put it."""
    topic, partitions = f"{unique_prefix}kcat", 6
    run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, partitions)]))
    lines = "".join(f"{key.decode()}:v{i}\n" for i, key in enumerate(KEYS))

    done = subprocess.run([kcat(), "-P", "-b", kafka_bootstrap, "-t", topic, "-K:", *options],
                          input=lines, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert_placed_by(placements(kafka_bootstrap, topic, len(KEYS)), partitioner, partitions)
