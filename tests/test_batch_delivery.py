"""The batch delivery prototype of #20 (streams.fixups.batch_delivery) on the real broker: what an
agent acknowledges in bulk is what faust commits, and a restart delivers nothing twice and loses
nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka import AIOKafkaConsumer

from streams.kafka_admin import TopicSpec, ensure_topics
from tests.kafka_helpers import ROOT, produce, run

pytestmark = pytest.mark.kafka

PARTITIONS = 4


async def offsets(bootstrap: str, group: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """(committed offsets of ``group``, end offsets) per partition of ``topic``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in range(PARTITIONS)])
    finally:
        await consumer.stop()
    return ({tp.partition: meta.offset for tp, meta in committed.items() if tp.topic == topic},
            {tp.partition: offset for tp, offset in ends.items()})


def run_child(env: dict[str, str], topic: str, expected: int, out: Path, log: Path) -> dict:
    with log.open("ab") as log_file:
        proc = subprocess.run([sys.executable, "-m", "tests.batch_delivery_child", topic, str(expected),
                               str(out), "3"], cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                              timeout=180)
    assert proc.returncode == 0 and out.exists(), log.read_text(errors="replace")[-3000:]
    return orjson.loads(out.read_bytes())


def child_setup(kafka_bootstrap: str, prefix: str, **extra: str) -> tuple[str, str, dict[str, str]]:
    """(input topic, group, environment) of a batch-delivery child on a fresh input topic: the
    group is the app id, batches of at most 64; ``extra`` adds to the environment."""
    topic, group = f"{prefix}input", f"{prefix}app"
    run(ensure_topics(kafka_bootstrap, [TopicSpec(topic, PARTITIONS)]))
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "SEGSTREAM_TOPICS__PREFIX": prefix,
           "SEGSTREAM_TOPICS__PARTITIONS": str(PARTITIONS), "SEGSTREAM_WORKER__APP_ID": group,
           "SEGSTREAM_WORKER__BATCH_MAX": "64", "PYTHONUNBUFFERED": "1", **extra}
    return topic, group, env


def test_bulk_acks_are_committed_and_a_restart_delivers_each_message_once(kafka_bootstrap: str, tmp_path: Path,
                                                                        unique_prefix: str) -> None:
    topic, group, env = child_setup(kafka_bootstrap, f"batchdelivery-{unique_prefix}",
                                    SEGSTREAM_WORKER__DATA_DIR=str(tmp_path / "data"))

    first_n = 3000
    run(produce(kafka_bootstrap, [(topic, f"c{i % 97}".encode(), b"%d" % i) for i in range(first_n)]))
    first = run_child(env, topic, first_n, tmp_path / "first.json", tmp_path / "first.log")
    seen = [tuple(x) for x in first["delivered"]]
    assert len(seen) == first_n and len(set(seen)) == first_n  # all, none twice
    assert max(first["sizes"]) <= 64 and len(first["sizes"]) < first_n / 10  # batches, not messages
    for p in range(PARTITIONS):  # offset order within each partition
        mine = [o for q, o in seen if q == p]
        assert mine == sorted(mine) and mine == list(range(len(mine)))
    committed, ends = run(offsets(kafka_bootstrap, group, topic))
    assert sum(ends.values()) == first_n
    assert committed == ends, (committed, ends)

    more = 1000
    run(produce(kafka_bootstrap, [(topic, f"d{i % 89}".encode(), b"%d" % i) for i in range(more)]))
    second = run_child(env, topic, more, tmp_path / "second.json", tmp_path / "second.log")
    again = [tuple(x) for x in second["delivered"]]
    assert len(again) == more and len(set(again)) == more
    assert not set(again) & set(seen)  # nothing delivered twice across the restart
    new_ends = run(offsets(kafka_bootstrap, group, topic))[1]
    expected_new = {(p, o) for p in range(PARTITIONS) for o in range(ends[p], new_ends[p])}
    assert set(again) == expected_new  # nothing lost
    committed, ends = run(offsets(kafka_bootstrap, group, topic))
    assert committed == ends, (committed, ends)


def holes(batches: list[list[int]]) -> list[tuple[int, int, int]]:
    """(partition, next offset not yet delivered, first offset of the batch) wherever a batch
    started past an offset of its partition that no batch had delivered yet. A re-read (back) is
    allowed after a seek; a hole is not: the batch's offsets reach the processor before the ones
    skipped, which it then takes for redeliveries."""
    upto: dict[int, int] = {}
    found = []
    for p, first, end, _generation in batches:
        expected = upto.get(p, 0)
        if first > expected:
            found.append((p, expected, first))
        upto[p] = max(expected, end + 1)
    return found


def test_a_seek_to_the_earliest_offset_leaves_no_window_for_a_hole(kafka_bootstrap: str, tmp_path: Path,
                                                                   unique_prefix: str) -> None:
    """A group that never committed reads each partition from its earliest offset, also after
    faust's ``perform_seek`` (every recovery: after each restart, each rebalance). The seek to
    the earliest offsets came after the one to the (missing) committed offsets, behind a lookup
    on the broker (made slow here): meanwhile those partitions had no known start, and a fetch
    was delivered from wherever aiokafka's position stood, past the batches the seek had just
    dropped from the agent's queue. In the crash test with write-behind such a batch moved the
    customers' positions past events no state held yet (the killed worker's were never written),
    and the re-read from the earliest offset skipped them as redeliveries: 6 customers short."""
    topic, group, env = child_setup(kafka_bootstrap, f"batchearliest-{unique_prefix}",
                                    SEGSTREAM_WORKER__DATA_DIR=str(tmp_path / "data"),
                                    BATCH_CHILD_LOOKUP_DELAY_S="0.5", BATCH_CHILD_SLOW_S="0.02",
                                    BATCH_CHILD_PERFORM_SEEK_AFTER="4")
    n = 3000
    run(produce(kafka_bootstrap, [(topic, f"c{i % 97}".encode(), b"%d" % i) for i in range(n)]))
    result = run_child(env, topic, n, tmp_path / "out.json", tmp_path / "child.log")
    assert holes(result["batches"]) == []  # from the earliest offsets on, nothing skipped ahead
    ends = run(offsets(kafka_bootstrap, group, topic))[1]
    assert {tuple(x) for x in result["delivered"]} == {(p, o) for p in range(PARTITIONS) for o in range(ends[p])}


def jumps_within_a_generation(batches: list[list[int]]) -> list[tuple[int, int, int, int]]:
    """(partition, last offset, next batch's first offset, generation) wherever a member's next
    batch of a partition in the same generation did not start right after the previous one: a
    hole (forward) or a re-read (back). Nobody seeks here and no topic holds transaction markers:
    within a generation each partition must come as one gapless run."""
    last: dict[tuple[int, int], int] = {}
    jumps = []
    for p, first, end, generation in batches:
        prev = last.get((p, generation))
        if prev is not None and first != prev + 1:
            jumps.append((p, prev, first, generation))
        last[(p, generation)] = end
    return jumps


def test_rebalances_lose_nothing_skip_nothing_and_the_commits_end_at_the_end_offsets(
        kafka_bootstrap: str, tmp_path: Path, unique_prefix: str) -> None:
    """Two members of one group: the second joins while the first is consuming (every partition
    revoked mid-stream), takes part, then leaves while messages keep coming (revoked again). At
    least once: everything is delivered, a redelivery after a rebalance is allowed; within a
    generation no member ever skips or repeats an offset of a partition (in order by
    construction, no hole); once both commit, the committed offsets are the end offsets."""
    import time

    from tests.kafka_helpers import wait_until

    topic, group, base = child_setup(kafka_bootstrap, f"batchrebalance-{unique_prefix}",
                                     SEGSTREAM_WORKER__STATIC_MEMBERSHIP="false")
    procs: dict[str, subprocess.Popen] = {}
    outs: dict[str, Path] = {}

    def start(name: str) -> None:
        env = {**base, "SEGSTREAM_WORKER__DATA_DIR": str(tmp_path / name)}
        out = tmp_path / f"{name}.json"
        log = (tmp_path / f"{name}.log").open("ab")
        procs[name] = subprocess.Popen([sys.executable, "-m", "tests.batch_delivery_child", topic, "0", str(out), "0"],
                                       cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        outs[name] = out

    def seen(name: str | None = None) -> list[tuple[int, int]]:
        got: list[tuple[int, int]] = []
        for member, out in outs.items():
            partial = out.with_suffix(".partial")
            if (name is None or member == name) and partial.exists():
                got.extend(tuple(x) for x in orjson.loads(partial.read_bytes())["delivered"])
        return got

    def stop(name: str) -> None:
        outs[name].with_suffix(".stop").touch()
        assert procs[name].wait(timeout=60) == 0, (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]

    total = 0

    def produce_round() -> None:
        nonlocal total
        run(produce(kafka_bootstrap, [(topic, f"c{i % 97}".encode(), b"%d" % i) for i in range(1500)]))
        total += 1500
        time.sleep(0.5)

    try:
        start("a")
        produce_round()
        wait_until(lambda: len(seen("a")) > 0, 90, "the first member to consume")
        start("b")  # a's partitions are revoked mid-stream
        deadline = time.monotonic() + 90
        while not seen("b") and time.monotonic() < deadline:
            produce_round()
        assert seen("b"), "the second member never consumed"
        for _ in range(2):
            produce_round()
        stop("b")  # its partitions go back to a while messages keep coming
        for _ in range(3):
            produce_round()
        wait_until(lambda: len(set(seen())) == total, 120, "every message delivered")
        stop("a")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    results = {name: orjson.loads(out.read_bytes()) for name, out in outs.items()}
    delivered = [tuple(x) for r in results.values() for x in r["delivered"]]
    ends = run(offsets(kafka_bootstrap, group, topic))[1]
    assert sum(ends.values()) == total
    assert set(delivered) == {(p, o) for p in range(PARTITIONS) for o in range(ends[p])}  # nothing lost
    for name, r in results.items():
        assert r["delivered"], name  # both members took part
        assert jumps_within_a_generation(r["batches"]) == [], name  # in order, no hole, ever
    committed, ends = run(offsets(kafka_bootstrap, group, topic))
    assert committed == ends, (committed, ends)
    print(f"delivered {len(delivered)} for {total} messages ({len(delivered) - total} again after the rebalances); "
          f"dropped batches {[r['dropped'] for r in results.values()]}")
