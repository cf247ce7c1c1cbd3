"""The restart benchmark (bench/restart_to_ready.py) at a tiny size on the real broker.

Behaviour only, never the timings: the changelog is filled the way the worker itself writes it
(each customer on its home partition, where the worker's own later writes for it land too), and
every run recovers the whole table, answers ready and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from pathlib import Path

import pytest

from models.state import CustomerState
from streams.harnesses.restart import RestartConfig, changelog_topic, customer_id, run, summary_lines
from streams.partitioning import home_partition
from streams.settings import Settings

pytestmark = pytest.mark.kafka

CUSTOMERS = 2000
PARTITIONS = 4


async def changelog_records(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    """Every (partition, key, value) of the topic, from the start to its end offsets."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        records: list[tuple[int, bytes, bytes]] = []
        left = {tp for tp in tps if ends[tp] > 0}
        while left:
            for tp, batch in (await consumer.getmany(*left, timeout_ms=1000)).items():
                records += [(tp.partition, r.key, r.value) for r in batch if r.offset < ends[tp]]
                if batch and batch[-1].offset + 1 >= ends[tp]:
                    left.discard(tp)
        return records
    finally:
        await consumer.stop()


def test_every_run_recovers_the_whole_table_and_answers_ready(kafka_bootstrap: str, tmp_path: Path) -> None:
    base = Settings().model_copy(update={"bootstrap_servers": kafka_bootstrap})
    config = RestartConfig(customers=CUSTOMERS, partitions=PARTITIONS, template_customers=100, lookups=0,
                           work_dir=tmp_path)

    results = run(config, log=lambda msg: None, base=base)

    assert results["fill"]["customers"] == CUSTOMERS
    assert sum(results["fill"]["per_partition"]) == CUSTOMERS
    assert results["raw_restore"]["customers"] == CUSTOMERS == results["raw_restore"]["records"]
    runs = results["runs"]
    assert list(runs) == ["baseline", "memory", "rocksdb-cold", "rocksdb-warm"]
    for name, r in runs.items():
        assert r["ready"]["ready"] and r["ready"]["tables_recovered"], name
        assert r["ready"]["changelog_remaining"] == 0, name
        assert 0 < r["web_s"] <= r["ready_s"] <= r["consuming_s"], name
        assert r["exit_code"] == 0, (name, r["exit_code"])
        assert r["rss_bytes"] > 0
    assert runs["baseline"]["changelog_records"] == 0 and "table" not in runs["baseline"]
    for name in ("memory", "rocksdb-cold", "rocksdb-warm"):
        table = runs[name]["table"]
        # every filled customer is found, and nothing beyond them
        assert table == {"looked_up": CUSTOMERS, "found": CUSTOMERS, "missing": [], "never_filled_status": 404}, name
        assert runs[name]["changelog_records"] >= CUSTOMERS
    # the memory run and the cold RocksDB run restored the changelog; the warm one had it on disk
    assert any("Restoring state" in line for line in runs["memory"]["milestones"])
    assert any("Restoring state" in line for line in runs["rocksdb-cold"]["milestones"])
    assert runs["rocksdb-warm"]["ready_s"] > 0
    assert summary_lines(results)[-1].startswith("goal restart to ready < 30s")

    # The changelog as the worker writes it: one customer per key, each on its home partition,
    # which is also where the workers wrote customer 0's state after each run's purchase.
    records = asyncio.run(changelog_records(kafka_bootstrap, changelog_topic(f"{results['config']['topic_prefix']}app")))
    by_key: dict[bytes, set[int]] = defaultdict(set)
    for partition, key, value in records:
        by_key[key].add(partition)
        assert CustomerState.from_bytes(value).customer_id == key.decode()
    assert set(by_key) == {customer_id(i).encode() for i in range(CUSTOMERS)}
    assert all(parts == {home_partition(key, PARTITIONS)} for key, parts in by_key.items())
    written_by_workers = sum(1 for _, key, _ in records if key == customer_id(0).encode()) - 1
    assert written_by_workers >= 3  # memory, rocksdb cold and warm each applied their purchase
