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

import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable

from schemas.internal import ReevaluationBatch
from streams.partitioning import HomePartitions


class Sweeper:
    """Each customer is re-evaluated on its home partition (:mod:`streams.partitioning`), where
    its state lives whatever partitioner its events were produced with."""

    def __init__(self, partitions: int, batch: int, period_s: float, home: HomePartitions | None = None,
                 identity: str | None = None):
        """``identity``: what this sweeper's batches carry (default: random, one per process), so a
        worker counts populations from its own passes only (:class:`streams.processor.PopulationTally`)."""
        self.home = home if home is not None else HomePartitions(partitions)
        self.batch = batch
        self.period_s = period_s
        self.identity = identity if identity is not None else secrets.token_hex(8)
        # The partitions active at every tick of the pass so far: only these get an ``end``. One
        # assigned (or revoked and given back) during the pass had customers skipped while it was
        # not active here, and its count would be short: it is complete from the next pass on.
        self._throughout: set[int] = set()
        # The pass's keys only (the table's own bytes objects: 8 B a customer), each one's home
        # partition computed when its tick comes: hashing a million keys at once blocked the event
        # loop for 5-9 s, and (key, partition) tuples cost 75 B a customer (bench/table_memory_parts.py).
        self._queue: deque[bytes] = deque()
        self._pass_started: float | None = None
        self.passes = 0

    def start_pass_now(self) -> None:
        """Start a new pass at the next tick (once the current one, if any, is done) instead of
        waiting for ``period_s`` (e.g. the first model arrived: nobody has a segment yet)."""
        self._pass_started = None

    def tick(self, keys: Iterable[bytes], active: set[int], now: float | None = None) -> dict[int, SweepBatch]:
        """The customers to re-evaluate this tick, by partition (only partitions active here).

        ``keys`` (the table's keys) is only read when a new pass starts. The pass's last tick
        marks a batch ``end`` for every active partition (its segment populations are complete
        then), an empty one for a partition with no customer left in that tick.
        """
        now = time.monotonic() if now is None else now
        if not self._queue:
            if self._pass_started is not None and now - self._pass_started < self.period_s:
                return {}
            self._queue = deque(keys)
            self._pass_started = now
            self.passes += 1
            self._throughout = set(active)
        self._throughout &= active
        batches: dict[int, SweepBatch] = {}
        for _ in range(min(self.batch, len(self._queue))):
            key = self._queue.popleft()
            p = self.home(key)
            if p not in active:  # not ours (a standby's key), or revoked since the pass started
                continue
            batches.setdefault(p, self._batch()).customers.append(key.decode())
        if not self._queue:
            for p in self._throughout:
                batches.setdefault(p, self._batch()).end = True
        return batches

    def _batch(self) -> SweepBatch:
        return SweepBatch(self.passes, sweeper=self.identity)


@dataclass
class SweepBatch:
    sweep_pass: int
    customers: list[str] = field(default_factory=list)
    end: bool = False  # the partition's last batch of this pass
    sweeper: str | None = None  # the sending Sweeper's identity

    def to_json(self) -> bytes:
        """The message on ``reevaluate`` (its contract: :class:`schemas.internal.ReevaluationBatch`)."""
        return ReevaluationBatch(customers=self.customers, sweep_pass=self.sweep_pass, end=self.end,
                                 sweeper=self.sweeper).to_json()
