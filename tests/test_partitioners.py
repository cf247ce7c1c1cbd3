"""Producers with any partitioner, on the real broker, with two workers splitting the partitions.

The same events are produced with kcat (librdkafka, an independent client) three ways: murmur2
(Kafka's Java default), kcat's own default (CRC32, as confluent-kafka, node-rdkafka and Go
clients on librdkafka), and a different partitioner per topic (murmur2, CRC32, FNV-1a). Every
customer must end with the same value profile in all three runs, equal to the ground truth, from
either worker; every event must be applied exactly once; and no ``change_id`` may be published
with two different contents.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from models.synthetic import generate_population
from streams.partitioning import crc32_partition, home_partition
from tests.kafka_helpers import WorkerProcess, consume, run, start_pair, wait_split, wait_until
from tests.test_produce import kcat
from tests.test_worker_e2e import ground_truth, matches_truth, worker_env

pytestmark = pytest.mark.kafka

MURMUR2, CRC32, FNV1A = ["-X", "partitioner=murmur2"], [], ["-X", "partitioner=fnv1a"]
RUNS = {
    "murmur2": {"purchase": MURMUR2, "engagement": MURMUR2, "feedback": MURMUR2},
    "crc32": {"purchase": CRC32, "engagement": CRC32, "feedback": CRC32},
    "mixed": {"purchase": MURMUR2, "engagement": CRC32, "feedback": FNV1A},
}
TOPIC = {"purchase": "purchases", "engagement": "engagements", "feedback": "feedback"}
# Order-independent value fields of a profile (the segments depend on when models arrive).
VALUE_FIELDS = ("purchase_count", "total_spend", "gross_spend", "refund_count", "refund_total", "frequency",
                "recency", "monetary_value", "first_purchase_at", "last_purchase_at", "last_active_at",
                "influence_count", "support_tickets", "complaints", "nps", "csat_avg", "review_avg")
EVENTS = generate_population(100, seed=21).events


def produce_with_kcat(bootstrap: str, prefix: str, options: dict[str, list[str]]) -> None:
    by_type: dict[str, list[str]] = defaultdict(list)
    for e in EVENTS:
        by_type[e["type"]].append(f"{e['customer_id']}:{orjson.dumps(e).decode()}\n")
    for etype, lines in by_type.items():
        done = subprocess.run([kcat(), "-P", "-b", bootstrap, "-t", f"{prefix}{TOPIC[etype]}", "-K:",
                               *options[etype]], input="".join(lines), capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr


def one_run(bootstrap: str, tmp_path: Path, name: str) -> dict[str, dict]:
    """Two workers, the events produced the ``name`` way; the value profiles once all are in."""
    prefix = f"part-{name}-{tmp_path.name[-6:]}."
    a, b = start_pair(worker_env(bootstrap, prefix, tmp_path / "unused"), tmp_path, f"{name}-")
    workers = (a, b)
    try:
        wait_split(a, b)
        produce_with_kcat(bootstrap, prefix, RUNS[name])
        truth = ground_truth(EVENTS)

        def all_match(worker: WorkerProcess) -> bool:
            return all(worker.request(f"/customers/{cid}")[0] == 200
                       and matches_truth(worker.request(f"/customers/{cid}")[1], state)  # type: ignore[arg-type]
                       for cid, state in truth.items())
        wait_until(lambda: all_match(a), 180, f"{name}: every customer equal to the ground truth")
        assert all_match(b)  # lookups reach the owner from either worker

        def total(metric: str, **labels: str) -> float:
            return sum(w.metric(metric, **labels) for w in workers)
        wait_until(lambda: total("segstream_events_total", outcome="applied") >= len(EVENTS), 60, "every event applied")
        assert total("segstream_events_total", outcome="applied") == len(EVENTS)  # once each, on one state
        assert total("segstream_events_total", outcome="duplicate") == 0
        forwarded = total("segstream_repartitioned_total")
        assert (forwarded == 0) if name == "murmur2" else (forwarded > 0), forwarded

        profiles = {cid: {f: a.get(f"/customers/{cid}")[f] for f in VALUE_FIELDS}  # type: ignore[index]
                    for cid in truth}
        if name == "crc32":
            erase_off_home(a, b, truth)
        wait_until(lambda: total("segstream_segment_changes_total") > 0, 60, "segment changes")
    finally:
        codes = [w.stop() for w in workers]
    assert codes == [0, 0], a.log_tail() + b.log_tail()
    assert_no_change_id_with_two_contents(bootstrap, prefix)
    return profiles


def erase_off_home(a: WorkerProcess, b: WorkerProcess, truth: dict) -> None:
    """An erasure through the API of either worker reaches a customer whose events kcat put on
    another partition than its home."""
    customer = next(cid for cid in truth if crc32_partition(cid.encode(), 4) != home_partition(cid.encode(), 4))
    status, accepted = b.request(f"/customers/{customer}", method="DELETE")
    assert status == 202
    wait_until(lambda: a.request(f"/customers/{customer}")[0] == 404, 60, "the erasure applied")
    assert b.request(f"/customers/{customer}")[0] == 404
    assert a.get(accepted["status_url"])["applied"] is True  # type: ignore[index]
    assert b.get(f"/customers/{customer}/erasures/some-other-request")["applied"] is False  # type: ignore[index]


def assert_no_change_id_with_two_contents(bootstrap: str, prefix: str) -> None:
    records = run(consume(bootstrap, f"{prefix}segment-changes", 10**9, timeout_s=5))  # everything there is
    assert records
    contents: dict[str, set[bytes]] = defaultdict(set)
    for r in records:
        contents[orjson.loads(r.value)["change_id"]].add(r.value)
    assert not {cid: c for cid, c in contents.items() if len(c) > 1}


def test_any_partitioner_any_mix_gives_the_same_profiles(kafka_bootstrap: str, tmp_path: Path) -> None:
    results = {name: one_run(kafka_bootstrap, tmp_path, name) for name in RUNS}
    assert results["crc32"] == results["murmur2"]
    assert results["mixed"] == results["murmur2"]
