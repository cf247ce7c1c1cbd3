"""Consumer lag of the group on this worker's input partitions: end offset minus committed offset.

faust has no lag metric. The committed offsets are the group's and the end offsets the
partitions', both read outside faust's consumer (:mod:`streams.outside_view`); both are cheap
metadata requests, done every few seconds by a timer.
"""

from __future__ import annotations

from aiokafka import TopicPartition

from streams.outside_view import OutsideView


class LagMonitor:
    def __init__(self, view: OutsideView):
        self.view = view

    async def measure(self, topics: list[str], partitions: set[int]) -> dict[tuple[str, int], int]:
        """Lag per (topic, partition) for the given partitions of ``topics``."""
        if not partitions:
            return {}
        tps = [TopicPartition(t, p) for t in topics for p in sorted(partitions)]
        committed = await self.view.committed(tps)
        ends = await self.view.end_offsets(tps)
        return {(tp.topic, tp.partition): max(ends.get(tp, 0) - (committed.get(tp) or 0), 0) for tp in tps}
