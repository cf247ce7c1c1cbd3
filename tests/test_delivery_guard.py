"""Offsets processed in order without holes, whatever faust delivers (streams.delivery_guard), and
the worker's consumer never committing past an offset it did not process (streams.fixups.kafka_transport)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from faust.types import TP

from streams.app import create_app
from streams.delivery_guard import OrderedIntake
from streams.fixups.kafka_transport import WorkerConsumer
from streams.outside_view import OutsideView
from streams.settings import Settings

PURCHASES = TP("purchases", 0)


@dataclass(eq=False)
class FakeMessage:
    tp: TP
    offset: int
    acked: bool = False


@dataclass
class FakeEvent:
    message: FakeMessage


@dataclass
class FakeView:
    """What OrderedIntake reads outside faust's consumer (streams.outside_view), recorded."""
    committed_offsets: dict[TP, int | None]
    first_offsets: Any = None  # (tp, offset) -> the first offset holding a message
    earliest: dict[TP, int] = field(default_factory=dict)
    probes: list[int] = field(default_factory=list)
    closed: int = 0
    earliest_lookups: int = 0
    ends: dict[TP, int] = field(default_factory=dict)

    async def end_offsets(self, tps: Any) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): self.ends[tp] for tp in tps}

    async def committed(self, tps: Any) -> dict[tuple[str, int], int | None]:
        return {(tp.topic, tp.partition): self.committed_offsets.get(tp) for tp in tps}

    async def first_offset_from(self, tp: TP, offset: int) -> int | None:
        if self.first_offsets is None:
            raise AssertionError("not expected to probe")
        self.probes.append(offset)
        return self.first_offsets(tp, offset)

    async def earliest_offset(self, tp: TP) -> int:
        return self.earliest.get(tp, 0)

    async def earliest_offsets(self, tps: Any) -> dict[tuple[str, int], int]:
        self.earliest_lookups += 1
        return {(tp.topic, tp.partition): self.earliest.get(tp, 0) for tp in tps}

    async def close(self) -> None:
        self.closed += 1


@dataclass
class FakeConsumer:
    """What OrderedIntake uses of WorkerConsumer, recorded."""
    seeks: list[tuple[TP, int]] = field(default_factory=list)
    skipped: list[tuple[TP, int, int]] = field(default_factory=list)
    held: list[int] = field(default_factory=list)

    async def seek(self, tp: TP, offset: int) -> None:
        self.seeks.append((tp, offset))

    async def skip_deleted(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.skipped.append((tp, offset_from, offset_to))

    def hold(self, message: Any) -> None:
        message.acked = True
        self.held.append(message.offset)


def events(*offsets: int, tp: TP = PURCHASES) -> list[FakeEvent]:
    return [FakeEvent(FakeMessage(tp, o)) for o in offsets]


def offsets(admitted: list[FakeEvent]) -> list[int]:
    return [e.message.offset for e in admitted]


def MESSAGE_THERE(_tp: TP, offset: int) -> int:  # noqa: N802  (the probe's answer: a message at the offset)
    return offset


def intake_with(committed: dict[TP, int | None], first_offsets: Any = None, **view_fields: Any) -> tuple:
    consumer_, view = FakeConsumer(), FakeView(committed, first_offsets, **view_fields)
    return OrderedIntake(consumer_, view), consumer_, view


async def test_a_hole_holds_the_later_messages_and_reads_the_partition_again_from_it() -> None:
    intake, consumer, _ = intake_with({PURCHASES: 10})
    holes: list[str] = []
    intake.on_hole = holes.append
    assert offsets(await intake.admit(events(10, 11, 13, 14))) == [10, 11]
    assert consumer.held == [13, 14]
    assert consumer.seeks == [(PURCHASES, 12)]
    assert holes == ["purchases"]
    # Messages fetched before the re-read took effect: held too, and no second re-read at once.
    assert offsets(await intake.admit(events(15))) == []
    assert consumer.seeks == [(PURCHASES, 12)]
    # The re-read delivers the hole, then the held ones again: all processed, in order.
    assert offsets(await intake.admit(events(12, 13, 14, 15, 16))) == [12, 13, 14, 15, 16]
    await intake.retry_stalled()
    assert consumer.seeks == [(PURCHASES, 12)]  # nothing open any more
    assert holes == ["purchases"]


async def test_a_message_dropped_at_the_end_of_a_quiet_partition_is_read_again() -> None:
    """No later message arrives to show the hole: the partition's end offset does."""
    intake, consumer, view = intake_with({PURCHASES: 10}, MESSAGE_THERE, ends={PURCHASES: 13})
    intake.TAIL_GRACE_S = 0.0
    holes: list[str] = []
    intake.on_hole = holes.append
    assert offsets(await intake.admit(events(10, 11))) == [10, 11]
    await intake.check_tails([PURCHASES])  # first look: where delivery stands
    intake.busy = True
    await intake.check_tails([PURCHASES])  # a batch under way: nothing is expected meanwhile
    assert consumer.seeks == []
    intake.busy = False
    await intake.check_tails([PURCHASES])  # 12 and 13 never came
    assert consumer.seeks == [(PURCHASES, 12)] and holes == ["purchases"]
    assert offsets(await intake.admit(events(12))) == [12]
    view.ends[PURCHASES] = 13
    await intake.check_tails([PURCHASES])
    await intake.check_tails([PURCHASES])
    assert consumer.seeks == [(PURCHASES, 12)]  # delivered up to the end: nothing to read again


async def test_a_partition_never_delivered_since_its_assignment_is_read_from_its_commit() -> None:
    """An erase request written while its owner was down, dropped by faust after the restart."""
    intake, consumer, _ = intake_with({PURCHASES: 1}, MESSAGE_THERE, ends={PURCHASES: 3})
    intake.TAIL_GRACE_S = 0.0
    await intake.check_tails([PURCHASES])
    await intake.check_tails([PURCHASES])
    assert consumer.seeks == [(PURCHASES, 1)]
    assert offsets(await intake.admit(events(1, 2))) == [1, 2]


async def test_a_tail_of_transaction_markers_is_skipped_not_read_again() -> None:
    """A transactional producer's last commit marker ends the partition: the end offset is one
    past the last message forever. Re-reading it every few seconds (and holding the input
    watermark there) was the old answer; the probe finds no message up to the end."""
    intake, consumer, view = intake_with({PURCHASES: 4}, lambda _tp, _offset: 7, ends={PURCHASES: 7})
    intake.TAIL_GRACE_S = 0.0
    holes: list[str] = []
    intake.on_hole = holes.append
    assert offsets(await intake.admit(events(4, 5))) == [4, 5]
    await intake.check_tails([PURCHASES])
    await intake.check_tails([PURCHASES])
    assert view.probes == [6] and holes == [] and consumer.seeks[-1:] == [(PURCHASES, 7)]
    assert intake.guard.expected(PURCHASES) == 7
    assert await intake.progress([PURCHASES]) == {(PURCHASES.topic, PURCHASES.partition): (7, 7)}  # caught up


async def test_a_partition_delivered_to_its_end_is_left_alone() -> None:
    intake, consumer, _ = intake_with({PURCHASES: 4}, ends={PURCHASES: 6})
    intake.TAIL_GRACE_S = 0.0
    assert offsets(await intake.admit(events(4, 5))) == [4, 5]
    for _ in range(3):
        await intake.check_tails([PURCHASES])
    assert consumer.seeks == []


async def test_delivery_starts_at_the_committed_offset() -> None:
    """A worker restarted after a crash: faust dropping the first messages is a hole too."""
    intake, consumer, _ = intake_with({PURCHASES: 100})
    assert offsets(await intake.admit(events(103, 104))) == []
    assert consumer.seeks == [(PURCHASES, 100)]
    assert offsets(await intake.admit(events(100, 101, 102, 103, 104))) == [100, 101, 102, 103, 104]


async def test_a_group_without_commits_starts_at_the_earliest_offset() -> None:
    other = TP("engagements", 2)
    intake, consumer, view = intake_with({PURCHASES: None, other: None}, earliest={PURCHASES: 7, other: 3})
    assert offsets(await intake.admit(events(7, 8) + events(3, tp=other))) == [7, 8, 3]
    assert consumer.seeks == []
    assert view.earliest_lookups == 1  # one request for every partition without a commit


async def test_a_first_message_dropped_where_the_group_never_committed_is_read_again() -> None:
    """The crash test lost an erase request so: the first one written to an erasures partition
    was dropped by faust after a restart, and the next one taken for the start."""
    intake, consumer, _ = intake_with({PURCHASES: None}, earliest={PURCHASES: 0})
    assert offsets(await intake.admit(events(1, 2))) == []
    assert consumer.held == [1, 2] and consumer.seeks == [(PURCHASES, 0)]
    assert offsets(await intake.admit(events(0, 1, 2))) == [0, 1, 2]


async def test_with_the_start_unknown_messages_are_held_until_kafka_answers() -> None:
    """The broker away when a partition is first delivered: nothing is guessed, nothing hangs."""
    intake, consumer, view = intake_with({PURCHASES: 3}, MESSAGE_THERE, ends={PURCHASES: 7})
    intake.TAIL_GRACE_S = 0.0
    answer = view.committed

    async def broker_away(_tps: Any) -> dict:
        raise ConnectionError("broker away")

    view.committed = broker_away
    assert offsets(await intake.admit(events(5, 6))) == []
    assert consumer.held == [5, 6] and view.closed == 1  # started afresh on the next use
    await intake.check_tails([PURCHASES])
    await intake.check_tails([PURCHASES])  # still away: no re-read from a guess
    assert consumer.seeks == []
    view.committed = answer  # back: the quiet partition is read from its commit
    await intake.check_tails([PURCHASES])
    await intake.check_tails([PURCHASES])
    assert consumer.seeks == [(PURCHASES, 3)]
    assert offsets(await intake.admit(events(3, 4, 5, 6))) == [3, 4, 5, 6]


async def test_a_re_read_from_an_earlier_offset_is_processed_again_in_order() -> None:
    """faust seeks back to the committed offset after a rebalance: redeliveries the state knows."""
    intake, _, _ = intake_with({PURCHASES: 0})
    assert offsets(await intake.admit(events(0, 1, 2, 3))) == [0, 1, 2, 3]
    assert offsets(await intake.admit(events(1, 2, 3, 4))) == [1, 2, 3, 4]
    assert offsets(await intake.admit(events(6))) == []  # and 5 is still required


async def test_partitions_are_guarded_apart() -> None:
    other = TP("engagements", 0)
    intake, consumer, _ = intake_with({PURCHASES: 0, other: 50})
    batch = events(0, 2) + events(50, 51, tp=other)
    assert [(e.message.tp.topic, e.message.offset) for e in await intake.admit(batch)] == [
        ("purchases", 0), ("engagements", 50), ("engagements", 51)]
    assert consumer.seeks == [(PURCHASES, 1)]


def message_is_there(_tp: TP, offset: int) -> int | None:
    return offset


async def test_a_hole_still_open_is_read_again_by_the_timer() -> None:
    intake, consumer, _ = intake_with({PURCHASES: 0}, message_is_there)
    intake.REREAD_EVERY_S = 0.0
    await intake.admit(events(0, 2))
    await intake.retry_stalled()  # the first re-read lost its race: nothing came
    assert consumer.seeks == [(PURCHASES, 1), (PURCHASES, 1)]


async def test_offsets_without_messages_are_skipped_at_once_when_kafka_confirms_it() -> None:
    """Transaction markers and compacted records leave offsets no fetch returns: the first gap
    is probed when it is seen (one fetch), and the message after it processed in the same batch."""
    intake, consumer, view = intake_with({PURCHASES: 0}, lambda _tp, _offset: 3)  # 1 and 2 hold nothing
    assert offsets(await intake.admit(events(0, 3))) == [0, 3]
    assert view.probes == [1]
    assert consumer.skipped == [(PURCHASES, 1, 2)]  # committed past, as faust would for a gap
    assert consumer.seeks == []  # nothing to read again
    assert offsets(await intake.admit(events(4, 5))) == [4, 5]


async def test_with_transactions_every_marker_costs_one_probe_and_no_re_read() -> None:
    """Another team's transactional producer: a commit marker after every event (the field case
    of test_transactional_producer.py). Each used to hold the batch and re-read the partition."""
    intake, consumer, view = intake_with({PURCHASES: 0}, lambda _tp, offset: offset + 1)  # markers at odd offsets
    holes: list[str] = []
    intake.on_hole = holes.append
    assert offsets(await intake.admit(events(0, 2, 4))) == [0, 2, 4]
    assert offsets(await intake.admit(events(6))) == [6]
    assert holes == []  # a marker is not a message faust skipped
    assert view.probes == [1, 3, 5] and consumer.skipped == [(PURCHASES, 1, 1), (PURCHASES, 3, 3), (PURCHASES, 5, 5)]
    assert consumer.seeks == []


async def test_a_marker_found_only_by_the_re_read_is_skipped_then() -> None:
    """The hole's first probe said a message was there (it answered with an offset before the one
    delivered): held and re-read; a later probe that finds nothing there skips it."""
    answers = iter([1, 3])
    intake, consumer, view = intake_with({PURCHASES: 0}, lambda _tp, _offset: next(answers))
    intake.REREAD_EVERY_S = 0.0
    assert offsets(await intake.admit(events(0, 3))) == [0]
    for _ in range(intake.probe_after):
        await intake.retry_stalled()
    assert view.probes == [1, 1]
    assert consumer.skipped == [(PURCHASES, 1, 2)]
    assert consumer.seeks[-1] == (PURCHASES, 3)
    assert offsets(await intake.admit(events(3, 4))) == [3, 4]


async def test_a_message_kafka_still_has_is_never_skipped() -> None:
    intake, consumer, view = intake_with({PURCHASES: 0}, message_is_there)  # faust keeps missing it
    intake.REREAD_EVERY_S = 0.0
    await intake.admit(events(0, 2))
    for _ in range(intake.probe_after + 2):
        await intake.retry_stalled()
    assert view.probes and consumer.skipped == []
    assert offsets(await intake.admit(events(2))) == []
    assert offsets(await intake.admit(events(1, 2))) == [1, 2]


async def test_offsets_deleted_by_retention_are_not_waited_for() -> None:
    intake, consumer, _ = intake_with({PURCHASES: 5}, earliest={PURCHASES: 8})
    assert offsets(await intake.admit(events(8, 9))) == []  # held, then the re-read starts at 8
    assert consumer.skipped == [(PURCHASES, 5, 7)]
    assert consumer.seeks == [(PURCHASES, 8)]
    assert offsets(await intake.admit(events(8, 9))) == [8, 9]


async def test_a_revoked_partition_is_not_read_again() -> None:
    intake, consumer, _ = intake_with({PURCHASES: 0})
    intake.REREAD_EVERY_S = 0.0
    await intake.admit(events(0, 2))
    intake.forget([PURCHASES])
    await intake.retry_stalled()
    assert consumer.seeks == [(PURCHASES, 1)]


# ---- the consumer's commits ---------------------------------------------------------------------


def _consumer() -> WorkerConsumer:
    base = Settings()
    app = create_app(base.model_copy(update={"bootstrap_servers": "127.0.0.1:9"})).app
    consumer = app.consumer
    assert isinstance(consumer, WorkerConsumer)
    assert "segstream.purchases" in consumer.guarded_topics  # the customer agent's topics
    return consumer


def test_no_commit_past_an_unprocessed_offset_of_a_guarded_topic() -> None:
    consumer = _consumer()
    tp = TP("segstream.purchases", 0)
    consumer._committed_offset[tp] = 10
    consumer._acked[tp] = [11, 12]  # 10 never acknowledged (faust itself would commit 13)
    consumer._acked_index[tp] = {11, 12}
    assert consumer._new_offset(tp) is None
    consumer._acked[tp].insert(0, 10)
    consumer._acked_index[tp].add(10)
    assert consumer._new_offset(tp) == 13


async def test_a_jump_in_a_guarded_topic_is_not_acknowledged_as_a_gap() -> None:
    consumer = _consumer()
    tp = TP("segstream.purchases", 0)
    consumer._committed_offset[tp] = 10
    await consumer._add_gap(tp, 10, 14)  # what faust's fetch loop does when it sees 15 after 9
    consumer._acked[tp] = [15]
    assert consumer._new_offset(tp) is None
    # Offsets retention deleted do count as done.
    await consumer.skip_deleted(tp, 10, 14)
    assert consumer._new_offset(tp) == 16


async def test_other_topics_keep_fausts_gaps() -> None:
    consumer = _consumer()
    tp = TP("elsewhere", 0)
    consumer._committed_offset[tp] = 10
    await consumer._add_gap(tp, 10, 14)
    consumer._acked[tp] = [15]
    assert consumer._new_offset(tp) == 16


# ---- asking Kafka whether a hole holds a message ---------------------------------------------------


@pytest.mark.kafka
async def test_the_probe_finds_the_offsets_a_transaction_marker_leaves_empty(kafka_bootstrap: str,
                                                                             unique_prefix: str) -> None:
    from aiokafka import AIOKafkaProducer

    topic = f"{unique_prefix}probe"
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, transactional_id=f"{unique_prefix}tx",
                                enable_idempotence=True)
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"in a transaction", partition=0)  # offset 0, marker at 1
        async with producer.transaction():
            await producer.send_and_wait(topic, b"after it", partition=0)  # offset 2
    finally:
        await producer.stop()
    tp = TP(topic, 0)
    view = OutsideView(kafka_bootstrap, f"{unique_prefix}group")
    committed_view = OutsideView(kafka_bootstrap, f"{unique_prefix}group", isolation_level="read_committed")
    try:
        assert await view.first_offset_from(tp, 0) == 0
        assert await view.first_offset_from(tp, 1) == 2  # 1 is the first commit marker
        assert await committed_view.first_offset_from(tp, 1) == 2
        # 3, the last commit marker, ends the partition: nothing comes back, but the fetch moved past it
        assert await view.first_offset_from(tp, 3, timeout_s=0.5) == 4
        assert await view.first_offset_from(tp, 4, timeout_s=0.5) is None  # nothing there yet
        assert await view.committed([tp]) == {(topic, 0): None}  # the group has not committed
        assert await view.earliest_offset(tp) == 0
        assert await view.earliest_offsets([tp]) == {(topic, 0): 0}
    finally:
        await view.close()
        await committed_view.close()
