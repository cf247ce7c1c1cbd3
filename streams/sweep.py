"""Clock-driven re-evaluation: customers change segment as time passes (recency grows, P(alive)
falls) without any event of their own, so the worker walks its table and re-evaluates them.

The walk is bounded per tick (``sweep_batch`` customers) and a full pass starts at most every
``sweep_period_s``. Table entries can only be written while processing a message of their own
partition (faust routes the changelog by the current event; the RocksDB store picks its database
the same way), so the sweep does not evaluate anything itself: it sends each partition's share of
the tick as one batch message to that partition of the re-evaluation topic, and the customer
agent evaluates the batch in order with everything else for those customers.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Iterable

from aiokafka.partitioner import murmur2


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner (Java client, aiokafka) gives ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


class Sweeper:
    def __init__(self, partitions: int, batch: int, period_s: float):
        self.partitions = partitions
        self.batch = batch
        self.period_s = period_s
        self._queue: deque[bytes] = deque()
        self._pass_started: float | None = None
        self.passes = 0

    def tick(self, keys: Iterable[bytes], active: set[int], now: float | None = None) -> dict[int, list[str]]:
        """The customers to re-evaluate this tick, by partition (only partitions active here).

        ``keys`` (the table's keys) is only read when a new pass starts.
        """
        now = time.monotonic() if now is None else now
        if not self._queue:
            if self._pass_started is not None and now - self._pass_started < self.period_s:
                return {}
            self._queue.extend(k for k in keys if partition_of(k, self.partitions) in active)
            self._pass_started = now
            self.passes += 1
        batches: dict[int, list[str]] = {}
        for _ in range(min(self.batch, len(self._queue))):
            key = self._queue.popleft()
            p = partition_of(key, self.partitions)
            if p in active:  # the assignment may have changed since the pass started
                batches.setdefault(p, []).append(key.decode())
        return batches
