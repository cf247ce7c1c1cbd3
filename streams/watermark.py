"""The input low watermark: the event time up to which a worker has read everything it owns.

A worker reads several input partitions (three event topics and the repartition topic) at
different speeds: after a restart with a backlog, or in a replay through Kafka, one partition can
be at April while another is still at January. Evaluating a customer of the slow partition at
April before its February purchase is read puts it in ``lapsed_60`` and takes it out again when
the purchase arrives: two segment changes that no change in its data explains. So time-driven
evaluation (the sweep) stops at the low watermark, as in Flink or Beam:

* a partition is **behind** while it has messages this worker has not processed yet (its next
  offset to process is below its end offset), or while an event read from it waits in the
  repartition topic to be applied on its customer's home partition;
* its **time** is the latest time of an event applied from it (directly or once forwarded);
* the watermark is the smallest time of the partitions behind (``-inf`` while a partition behind
  has applied nothing yet); with no partition behind it holds nothing back (``+inf``).

A partition that has read everything (idle or caught up) does not hold time back: what arrives
there later is new. The :class:`~streams.clock.WorkerClock` keeps the watermark monotone.

With several workers, a worker's watermark covers the partitions assigned to it: an event read
by another worker from a slower partition and forwarded here is not waited for (docs/worker.md,
"The input watermark").

>>> w = InputWatermark()
>>> w.applied(("purchases", 0), None, 100.0)
>>> w.applied(("purchases", 1), None, 40.0)
>>> w.low({("purchases", 0): (5, 9), ("purchases", 1): (3, 3)})   # partition 1 caught up
100.0
>>> w.low({("purchases", 0): (5, 9), ("purchases", 1): (2, 3)})
40.0
>>> w.forwarded(("purchases", 1), 7, home=0)                       # read, not applied yet
>>> w.low({("purchases", 0): (9, 9), ("purchases", 1): (8, 8)})
40.0
>>> w.applied(("repartition", 0), ("purchases", 1), 45.0)
>>> w.arrived(("purchases", 1), 7)                                # processed on its home partition
>>> w.low({("purchases", 0): (9, 9), ("purchases", 1): (8, 8)})
inf
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

__all__ = ["InputWatermark", "TopicPartition"]

TopicPartition = tuple[str, int]


class InputWatermark:
    """Per input partition: the latest applied event time and the events forwarded from it that
    are not applied yet. :meth:`low` turns those and the partitions' read positions into the
    watermark."""

    def __init__(self) -> None:
        self._times: dict[TopicPartition, float] = {}
        # origin partition -> {offset of a forwarded event: the home partition it went to}
        self._in_flight: dict[TopicPartition, dict[int, int]] = {}

    def applied(self, delivered: TopicPartition, origin: TopicPartition | None, ts: float) -> None:
        """An event at ``ts`` (epoch seconds) was applied, read from ``delivered``; a forwarded
        one also counts for ``origin``, the partition it was first read from."""
        self._advance(delivered, ts)
        if origin is not None:
            self._advance(origin, ts)

    def arrived(self, origin: TopicPartition, offset: int | None) -> None:
        """A forwarded message was processed on its home partition, whatever came of it
        (applied, a repeat, a dead letter): it no longer holds ``origin`` back."""
        pending = self._in_flight.get(origin)
        if pending is not None and offset is not None:
            pending.pop(offset, None)
            if not pending:
                del self._in_flight[origin]

    def forwarded(self, origin: TopicPartition, offset: int, home: int) -> None:
        """The message at ``origin``/``offset`` was sent to partition ``home`` of the repartition
        topic: ``origin`` is behind until it comes back (:meth:`arrived`)."""
        self._in_flight.setdefault(origin, {})[offset] = home

    def forget(self, revoked: Iterable[TopicPartition], repartition_topic: str | None = None) -> None:
        """Partitions no longer (or newly) assigned here. Forwards to a home partition that moved
        to another worker will be processed there: they stop holding their origin back."""
        revoked = set(revoked)
        homes = {p for t, p in revoked if t == repartition_topic}
        for tp in revoked:
            self._times.pop(tp, None)
            self._in_flight.pop(tp, None)
        for origin in list(self._in_flight):
            pending = {o: h for o, h in self._in_flight[origin].items() if h not in homes}
            if pending:
                self._in_flight[origin] = pending
            else:
                del self._in_flight[origin]

    def low(self, progress: Mapping[TopicPartition, tuple[int | None, int | None]]) -> float:
        """The watermark for the partitions in ``progress``: partition -> (next offset to process,
        end offset), ``None`` where unknown (an unknown partition counts as behind)."""
        behind = [tp for tp, (position, end) in progress.items()
                  if position is None or end is None or position < end or tp in self._in_flight]
        behind.extend(tp for tp in self._in_flight if tp not in progress)
        return min((self._times.get(tp, -math.inf) for tp in behind), default=math.inf)

    def _advance(self, tp: TopicPartition, ts: float) -> None:
        if ts > self._times.get(tp, -math.inf):
            self._times[tp] = ts
