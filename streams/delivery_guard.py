"""Every input partition processed in offset order, without holes, whatever faust delivers.

The state recognises a redelivery by the highest offset it applied per customer and event type
(:mod:`models.state`). That is exact only while each partition is processed as a prefix: no
offset applied while an earlier one of the same partition was never seen. faust-streaming
0.15.3 can break that. Its consumer drops a fetched message when the flow is suspended at the
wrong moment or the generation changes mid-fetch (``Consumer.getmany`` and ``_drain_messages``),
marks the jump it sees next as a "gap", and commits past it (``_add_gap``, ``_new_offset``).
The crash test caught it: a restarted worker applied purchases 386-405 of a partition with 389
missing, and 389 was never delivered again (read back from the changelog and
``__consumer_offsets``).

:class:`DeliveryGuard` keeps, per topic-partition, the next offset to process. A message past it
is a hole: the message is held (not processed, not acknowledged) and the worker re-reads the
partition from the hole (:mod:`streams.agents`), while the consumer refuses to commit past it
(:mod:`streams.fixups.kafka_transport`). A message before it is a re-read from an earlier offset, which
faust does after a rebalance: processed again, recognised by the state, in order.

>>> guard = DeliveryGuard()
>>> tp = ("purchases", 0)
>>> guard.admit(tp, 5, committed=5)
True
>>> guard.admit(tp, 7, committed=5)    # 6 never came: hold 7
False
>>> guard.expected(tp)
6
>>> guard.admit(tp, 6, committed=5), guard.admit(tp, 7, committed=5)   # re-read from the hole
(True, True)
>>> guard.admit(tp, 4, committed=5)    # faust re-reads from an earlier offset: in order again
True
>>> guard.expected(tp)
5
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Hashable, Iterable, Sequence

log = logging.getLogger("segstream.worker")
HOLE_LOGGED = "was never delivered by faust"  # in the warning of each new hole (the crash test counts them)


class DeliveryGuard:
    """The next offset to process of each topic-partition it has seen since it last forgot it."""

    def __init__(self) -> None:
        self._next: dict[Hashable, int] = {}

    def admit(self, tp: Hashable, offset: int, committed: int | None) -> bool:
        """Whether the message at ``offset`` may be processed now. ``committed``: the partition's
        committed offset, where delivery starts after an assignment (``None`` if unknown: the
        first offset seen is then the start)."""
        expected = self._next.get(tp)
        if expected is None:
            expected = committed if committed is not None else offset
        if offset > expected:
            self._next[tp] = expected
            return False
        self._next[tp] = offset + 1
        return True

    def advance(self, tp: Hashable, offset: int) -> None:
        """``offset`` processed, delivered in order (batch delivery: no hole by construction)."""
        self._next[tp] = offset + 1

    def expected(self, tp: Hashable) -> int | None:
        """The next offset to process (the start of the hole while messages are held)."""
        return self._next.get(tp)

    def skip_to(self, tp: Hashable, offset: int) -> None:
        """Offsets before ``offset`` are gone from the topic (retention): do not wait for them."""
        self._next[tp] = max(offset, self._next.get(tp, offset))

    def rewind(self, tp: Hashable, offset: int) -> None:
        """Process ``tp`` again from ``offset``: later messages already fetched are held."""
        self._next[tp] = min(offset, self._next.get(tp, offset))

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Partitions revoked or assigned: delivery starts again from their committed offsets."""
        for tp in tps:
            self._next.pop(tp, None)


class OrderedIntake:
    """The customer agent's side of the guard: of each batch faust hands over, the messages that
    may be processed now; the others are held and their partitions re-read from the hole.

    ``consumer``: the worker's consumer (:class:`streams.fixups.kafka_transport.WorkerConsumer`).
    """

    REREAD_EVERY_S = 1.0  # a re-read can race a fetch already under way: ask again, not more often
    TAIL_GRACE_S = 10.0  # a partition with messages waiting and nothing delivered this long is stuck

    LOOKUP_TIMEOUT_S = 10.0

    def __init__(self, consumer: Any, view: Any, on_hole: Callable[[str], None] = lambda _topic: None,
                 probe_after: int = 1):
        """``view``: the group's committed offsets and the partitions' contents, read outside
        faust's consumer (:class:`streams.outside_view.OutsideView`). ``probe_after``: re-reads of
        a hole before asking Kafka whether it holds a message at all (0 where transaction markers
        are expected: the worker's own topics under ``exactly_once``)."""
        self.consumer = consumer
        self.probe_after = probe_after
        self.guard = DeliveryGuard()
        self.view = view
        self.on_hole = on_hole  # called with the topic of each new hole: for the metrics
        self._holes: dict[Any, tuple[int, float, int]] = {}  # tp -> (hole, when last re-read, re-reads)
        self._progress: dict[Any, tuple[int | None, float]] = {}  # tp -> (next offset, since when)
        self.busy = False  # the agent is processing a batch (set by it): no delivery is expected then
        self._known_starts: dict[Any, int] = {}  # where delivery starts, for partitions not delivered from yet

    async def admit(self, events: Sequence[Any]) -> list[Any]:
        """The events (faust's) of ``events`` to process, in order."""
        admitted: list[Any] = []
        held: dict[Any, list[int]] = {}
        starts = await self._starts({e.message.tp for e in events if self.guard.expected(e.message.tp) is None})
        for event in events:
            message = event.message
            tp = message.tp
            if self.guard.expected(tp) is None and tp not in starts:
                self.consumer.hold(message)  # where delivery starts is unknown: asked again later
                continue
            if self.guard.admit(tp, message.offset, starts.get(tp)) or (
                    tp not in held and await self._only_markers_before(tp, message.offset)):
                admitted.append(event)
                hole = self._holes.get(tp)
                if hole is not None and message.offset >= hole[0]:
                    del self._holes[tp]  # filled
            else:
                self.consumer.hold(message)
                held.setdefault(tp, []).append(message.offset)
        for tp, offsets in held.items():
            await self._reread(tp, len(offsets))
        return admitted

    def processed_in_order(self, tp: Any, last: int) -> None:
        """Batch delivery (:mod:`streams.fixups.batch_delivery`): ``tp`` was processed up to
        ``last``, delivered in order without holes by construction (nothing to admit or hold).
        Keeps what the watermark and the tail check read; a hole the tail check found is filled."""
        self.guard.advance(tp, last)
        hole = self._holes.get(tp)
        if hole is not None and last >= hole[0]:
            del self._holes[tp]

    async def seek_in_order(self, tp: Any, offset: int) -> None:
        """Batch delivery: read ``tp`` again from ``offset`` (an erasure's rewind). The delivery
        path drops whatever was fetched before the seek, so the next batch of ``tp`` starts there
        (or at the first offset retention kept): nothing to retry."""
        self.guard.rewind(tp, offset)
        await self.consumer.seek(tp, offset)

    async def _only_markers_before(self, tp: Any, offset: int) -> bool:
        """Whether the offsets between the next one to process and ``offset`` (just delivered)
        hold no message: a transactional producer's commit markers, which every transaction of
        another team's producer leaves in the input. Asked at once (one fetch), so a marker costs
        a round trip instead of a re-read of the partition; then delivery goes on past them. A
        message there (faust dropped it) or no answer: a hole, as before."""
        hole = self.guard.expected(tp)
        if hole is None or offset <= hole or (tp in self._holes and self._holes[tp][0] == hole):
            return False
        try:
            first = await asyncio.wait_for(self.view.first_offset_from(tp, hole), self.LOOKUP_TIMEOUT_S)
        except Exception as exc:  # the broker away: held, re-read like any hole
            log.warning("%s[%d]: could not ask whether offsets %d-%d hold messages (%r)",
                        tp.topic, tp.partition, hole, offset - 1, exc)
            await self.view.close()
            return False
        if first != offset:
            return False
        await self.consumer.skip_deleted(tp, hole, offset - 1)
        self.guard.skip_to(tp, offset + 1)
        return True

    async def _starts(self, tps: set[Any]) -> dict[Any, int]:
        """Where delivery starts for partitions seen for the first time since an assignment: the
        group's committed offset, or the earliest offset still in the partition where the group
        has none (the worker's consumer resets to the earliest: ``consumer_auto_offset_reset``).

        A partition whose start Kafka could not tell is left out: its messages are held, not
        guessed at. Taking the first delivered offset as the start lost an erase request in the
        crash test: faust dropped the first message of a partition the group had never committed
        and delivered the next one. The next batch or the tail check (:meth:`check_tails`) asks again.
        """
        if not tps:
            return {}
        try:
            found = await asyncio.wait_for(self.view.committed(tps), self.LOOKUP_TIMEOUT_S)
            starts = {tp: found.get((tp.topic, tp.partition)) for tp in tps}
            never = [tp for tp, start in starts.items() if start is None]
            if never:  # one request for all of them
                earliest = await asyncio.wait_for(self.view.earliest_offsets(never), self.LOOKUP_TIMEOUT_S)
                starts.update({tp: earliest[(tp.topic, tp.partition)] for tp in never})
        except Exception as exc:  # the broker away: held until Kafka answers
            log.warning("where delivery starts in %d partitions is unknown (%r); holding their messages "
                        "and asking again", len(tps), exc)
            await self.view.close()
            return {}
        return starts  # type: ignore[return-value]

    async def progress(self, tps: Iterable[Any]) -> dict[tuple[str, int], tuple[int | None, int | None]]:
        """Per partition of ``tps``: (next offset to process, end offset), for the input watermark
        (:mod:`streams.watermark`). The end offsets are read first: a message produced after
        that is new, not a backlog. A partition nothing was delivered from since its assignment is
        at its start (its committed offset); ``None`` where Kafka did not say."""
        tps = list(tps)
        if not tps:
            return {}
        ends = await asyncio.wait_for(self.view.end_offsets(tps), self.LOOKUP_TIMEOUT_S)
        unknown = {tp for tp in tps if self.guard.expected(tp) is None and tp not in self._known_starts}
        self._known_starts.update(await self._starts(unknown))
        return {(tp.topic, tp.partition): (self.guard.expected(tp) if self.guard.expected(tp) is not None
                                           else self._known_starts.get(tp), ends.get((tp.topic, tp.partition)))
                for tp in tps}

    async def rewind(self, tp: Any, offset: int) -> None:
        """Read ``tp`` again from ``offset`` (an erasure took events produced after it: they are
        applied again, and every other message of the partition is recognised as a redelivery).
        Retried like a hole until delivery reaches ``offset``."""
        self.guard.rewind(tp, offset)
        offset = self.guard.expected(tp)  # type: ignore[assignment]
        try:
            offset = await self._reread_from(tp, offset)
        except Exception as exc:  # the broker away: the timer asks again
            log.warning("%s[%d]: reading again from %d failed (%r); retrying", tp.topic, tp.partition, offset, exc)
            await self.view.close()
        self._remember(tp, offset, time.monotonic(), 1)

    def forget(self, tps: Iterable[Any]) -> None:
        tps = list(tps)
        self.guard.forget(tps)
        for tp in tps:
            self._known_starts.pop(tp, None)
        for tp in tps:
            self._holes.pop(tp, None)
            self._progress.pop(tp, None)

    async def check_tails(self, tps: Iterable[Any]) -> None:
        """Re-read the partitions of ``tps`` (assigned, recovered) that hold messages past the next
        offset to process while nothing was delivered from them for ``TAIL_GRACE_S`` (a timer
        calls this). A hole is otherwise seen only when a later message arrives: a message faust
        drops at the end of a quiet partition (an erase request, the last event of the day)
        would wait for the next one. The crash test lost 2 of 10 erase requests that way."""
        if self.busy:
            return
        now = time.monotonic()
        stalled = []
        for tp in tps:
            expected, seen = self.guard.expected(tp), self._progress.get(tp)
            if seen is None or seen[0] != expected:
                self._progress[tp] = (expected, now)
            elif now - seen[1] >= self.TAIL_GRACE_S and tp not in self._holes:
                stalled.append(tp)
        if stalled:
            ends = await asyncio.wait_for(self.view.end_offsets(stalled), self.LOOKUP_TIMEOUT_S)
            starts = await self._starts({tp for tp in stalled if self.guard.expected(tp) is None})
            for tp in stalled:
                await self._reread_tail(tp, ends.get((tp.topic, tp.partition)), starts.get(tp), now)

    async def _reread_tail(self, tp: Any, end: int | None, first: int | None, now: float) -> None:
        """``first``: where delivery starts, for a partition nothing was delivered from since its
        assignment (``None``: unknown, asked again at the next check)."""
        start = self.guard.expected(tp)
        if start is None:
            start = first
        if start is None or end is None or end <= start:
            self._progress[tp] = (self.guard.expected(tp), now)
            return
        if await self._absent(tp, start):
            self._progress[tp] = (self.guard.expected(tp), now)
            return  # only transaction markers (or compacted offsets) left: nothing was missed
        log.warning("%s[%d]: offset %d " + HOLE_LOGGED + " within %.0f s, nor the %d after it: reading the "
                    "partition again from %d", tp.topic, tp.partition, start, self.TAIL_GRACE_S, end - start - 1, start)
        self.on_hole(tp.topic)
        self.guard.skip_to(tp, start)  # the start of delivery if none was known
        start = await self._reread_from(tp, start)
        self._remember(tp, start, now, 1)  # retried every second until filled, as any hole

    async def retry_stalled(self) -> None:
        """Re-read again the partitions whose hole is still open (a timer calls this): a re-read
        can lose a race with a fetch already under way, and a quiet partition sends nothing
        that would show it."""
        for tp in list(self._holes):
            await self._reread(tp, 0)

    async def _reread(self, tp: Any, held: int) -> None:
        hole = self.guard.expected(tp)
        if hole is None:  # forgotten (revoked) meanwhile
            self._holes.pop(tp, None)
            return
        now = time.monotonic()
        last = self._holes.get(tp)
        rereads = last[2] if last is not None and last[0] == hole else 0
        if rereads and now - last[1] < self.REREAD_EVERY_S:  # type: ignore[index]
            return  # asked already; these were fetched before the re-read took effect
        try:
            if rereads >= self.probe_after and await self._absent(tp, hole):
                return
            if not rereads:  # a message there that faust did not deliver (or not known yet)
                log.warning("%s[%d]: offset %d " + HOLE_LOGGED + " but %d later ones were; "
                            "holding them and reading the partition again from %d",
                            tp.topic, tp.partition, hole, held, hole)
                self.on_hole(tp.topic)
            start = await self._reread_from(tp, hole)
        except Exception as exc:  # the broker away: the timer asks again
            log.warning("%s[%d]: reading again from %d failed (%r); retrying", tp.topic, tp.partition, hole, exc)
            await self.view.close()
            self._remember(tp, hole, now, rereads + 1)
            return
        if start != hole:
            log.warning("%s[%d]: offsets %d-%d were deleted by retention before they were processed",
                        tp.topic, tp.partition, hole, start - 1)
            self.guard.skip_to(tp, start)
        self._remember(tp, start, now, rereads + 1 if start == hole else 1)

    def _remember(self, tp: Any, hole: int, at: float, rereads: int) -> None:
        if self.guard.expected(tp) is not None:  # not revoked while the re-read was under way
            self._holes[tp] = (hole, at, rereads)

    async def _absent(self, tp: Any, hole: int) -> bool:
        """Whether the hole holds no message at all (a transaction marker, a compacted record):
        then it is skipped, and the partition read again from the first offset that does."""
        first = await asyncio.wait_for(self.view.first_offset_from(tp, hole), self.LOOKUP_TIMEOUT_S)
        if first is None or first == hole:
            return False  # the message is there: faust keeps missing it, read again
        log.info("%s[%d]: offsets %d-%d hold no messages (transaction markers or compaction); skipped",
                 tp.topic, tp.partition, hole, first - 1)
        await self.consumer.skip_deleted(tp, hole, first - 1)
        self.guard.skip_to(tp, first)
        self._holes.pop(tp, None)
        await self.consumer.seek(tp, first)
        return True

    async def _reread_from(self, tp: Any, offset: int) -> int:
        """Fetch ``tp`` again from ``offset``, or from the first offset still in the topic if
        retention deleted it (the offset returned)."""
        earliest = await asyncio.wait_for(self.view.earliest_offset(tp), self.LOOKUP_TIMEOUT_S)
        if earliest > offset:
            await self.consumer.skip_deleted(tp, offset, earliest - 1)
            offset = earliest
        await self.consumer.seek(tp, offset)  # faust's: sets its read offset too, so it re-reads
        return offset
