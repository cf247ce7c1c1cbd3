"""What the worker changes in faust's Kafka clients: fetch windows, flushes that skip the linger."""

from __future__ import annotations

import asyncio

import pytest
from faust.types import TP

from streams.agents import flush_now
from streams.app import create_app
from streams.fixups.kafka_transport import WorkerConsumerThread, WorkerTransport
from streams.settings import Settings
from tests.kafka_helpers import consume


def _settings(bootstrap: str, prefix: str = "segstream.", **worker: object) -> Settings:
    base = Settings()
    return base.model_copy(update={
        "bootstrap_servers": bootstrap,
        "worker": base.worker.model_copy(update=worker),
        "topics": base.topics.model_copy(update={"prefix": prefix}),
    })


async def test_the_worker_consumer_fetches_in_the_configured_windows() -> None:
    app = create_app(_settings("127.0.0.1:9", fetch_min_bytes=12345, fetch_max_wait_ms=7)).app
    assert isinstance(app.transport, WorkerTransport)
    thread = app.consumer._thread
    assert isinstance(thread, WorkerConsumerThread)
    client = thread._create_worker_consumer(app.transport)  # what the consumer thread starts
    try:
        assert (client._fetch_min_bytes, client._fetch_max_wait_ms) == (12345, 7)
        assert client._group_id == app.conf.id  # faust's own settings are still there
    finally:
        await client.stop()


@pytest.mark.kafka
async def test_flush_now_does_not_wait_out_the_producer_linger(kafka_bootstrap: str, unique_prefix: str) -> None:
    """With a 30 s linger, faust's own flush would return after 30 s; flush_now sends at once."""
    app = create_app(_settings(kafka_bootstrap, unique_prefix, producer_linger_s=30.0)).app
    topic = app.topic(f"{unique_prefix}flush", key_type=bytes, value_type=bytes)
    await app.producer.start()
    try:
        await topic.maybe_declare()
        ack = await topic.send(key=b"k", value=b"v1")
        await asyncio.wait_for(flush_now(app.producer), timeout=10.0)
        assert ack.done()
        records = await consume(kafka_bootstrap, f"{unique_prefix}flush", 1, timeout_s=10.0)
        assert [r.value for r in records] == [b"v1"]
    finally:
        await app.producer.stop()


@pytest.mark.kafka
async def test_flush_returns_only_once_every_table_write_is_acknowledged(kafka_bootstrap: str, unique_prefix: str) -> None:
    """faust's buffer flush gives up when nothing moves for 100 ms (simulated here: it gives up at
    once); the worker's flush still waits for every changelog write the table made."""
    from streams.agents import KafkaOutputs, current_event_is

    sapp = create_app(_settings(kafka_bootstrap, unique_prefix))
    app, table = sapp.app, sapp.runtime.table
    await app.producer.start()
    try:
        await table.changelog_topic.maybe_declare()

        async def gives_up(max_messages: int | None) -> int:
            return 0

        app.producer.buffer.flush_atmost = gives_up  # type: ignore[method-assign]
        class Message:
            partition, topic, offset = 0, "x", 0

        class Event:
            message = Message()

        event = Event()
        with current_event_is(event):  # type: ignore[arg-type]
            for i in range(300):
                table[f"c{i}".encode()] = b"state %d" % i
        writes = list(table.__dict__["_pending_writes"])
        assert len(writes) == 300
        await asyncio.wait_for(KafkaOutputs(sapp.topics, table).flush(), timeout=30)
        assert all(w.done() and not w.cancelled() and w.exception() is None for w in writes)
        assert table.take_pending_writes() == []
        records = await consume(kafka_bootstrap, table.changelog_topic.get_topic_name(), 300, timeout_s=20)
        assert len(records) == 300
    finally:
        await app.producer.stop()


class _Message:
    topic, offset = "x", 0

    def __init__(self, partition: int) -> None:
        self.partition = partition


class _Event:
    def __init__(self, partition: int) -> None:
        self.message = _Message(partition)


@pytest.mark.kafka
@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
async def test_staged_writes_reach_the_changelog_as_faust_would_write_them(
        kafka_bootstrap: str, unique_prefix: str, tmp_path, store: str) -> None:  # noqa: ANN001
    """streams.fixups.durable_table's bulk path: the store holds each write at once; after the
    flush the changelog holds, per partition of the writing event, the records in the order
    staged (a deletion a tombstone, a deletion of an absent key nothing), every future is
    acknowledged, and RocksDB's persisted offset is the last record's (what a restart reads from)."""
    from streams.agents import KafkaOutputs, current_event_is

    sapp = create_app(_settings(kafka_bootstrap, unique_prefix, store=store, data_dir=tmp_path,
                                app_id=f"{unique_prefix}staged"))  # a changelog topic of its own
    app, table = sapp.app, sapp.runtime.table
    await app.producer.start()
    try:
        await table.changelog_topic.maybe_declare()
        expected: dict[int, list[tuple[bytes, bytes | None]]] = {0: [], 2: []}
        latest: dict[bytes, bytes | None] = {}
        for i in range(600):  # over 512 KiB for partition 0: more than one record batch
            partition = 0 if i % 3 else 2
            # a key lives on one partition (a customer's home), and is written several times there
            key, value = f"p{partition}-c{i % 250}".encode(), (b"%d:" % i) * (400 if partition == 0 else 1)
            with current_event_is(_Event(partition)):  # type: ignore[arg-type]
                table.stage(key, value)
            expected[partition].append((key, value))
            latest[key] = value
        with current_event_is(_Event(2)):  # type: ignore[arg-type]
            table.stage(b"p2-c0", None)  # written above on partition 2 (i = 0): a tombstone
            table.stage(b"never-written", None)  # nothing to delete: no record
        expected[2].append((b"p2-c0", None))
        latest[b"p2-c0"] = None
        for partition in expected:
            with current_event_is(_Event(partition)):  # type: ignore[arg-type]
                for key, value in expected[partition]:
                    assert table.get(key) == latest[key]  # the store has every write before the flush
        assert table.staged() == 601
        await asyncio.wait_for(KafkaOutputs(sapp.topics, table).flush(), timeout=30)
        assert table.staged() == 0 and table.take_pending_writes() == []
        records = await consume(kafka_bootstrap, table.changelog_topic.get_topic_name(), 601, timeout_s=30)
        got: dict[int, list[tuple[bytes, bytes | None]]] = {0: [], 2: []}
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            got[r.partition].append((r.key, r.value))
            assert not r.headers
        assert got == expected
        if store == "rocksdb://":
            last = {p: max(r.offset for r in records if r.partition == p) for p in expected}
            for p, offset in last.items():
                assert table.data.persisted_offset(TP(table.changelog_topic.get_topic_name(), p)) == offset
    finally:
        await app.producer.stop()
