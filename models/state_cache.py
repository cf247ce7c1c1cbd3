"""Decoded customer states kept between batches, so a busy customer is not decoded every batch.

The table (and its changelog) stays the only truth: an entry is used only if the bytes the table
holds now are the bytes the entry was saved as. A state changed by anyone else (another worker
after a rebalance, a recovery from the changelog, a deletion) is decoded afresh. Taking an entry
removes it, and the caller puts it back only once the state is saved: a batch that fails half-way
leaves no half-applied state behind to be mistaken for the saved one.

Bounded (least recently used out): a decoded state is about 3.7 KB against 0.6 KB of bytes.

>>> from models.state import CustomerState
>>> cache = StateCache(capacity=2)
>>> state = CustomerState("c1")
>>> raw = state.to_bytes()
>>> cache.put(b"c1", raw, state)
>>> cache.take(b"c1", raw) is state
True
>>> cache.take(b"c1", raw) is None        # taken: gone until put back
True
>>> cache.put(b"c1", raw, state)
>>> cache.take(b"c1", b"other bytes") is None   # the table changed under it
True
"""

from __future__ import annotations

from collections import OrderedDict

from models.state import CustomerState


class StateCache:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._entries: OrderedDict[bytes, tuple[bytes, CustomerState]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def take(self, key: bytes, raw: bytes) -> CustomerState | None:
        """The cached state of ``key`` if it was saved as ``raw`` (what the table holds now)."""
        entry = self._entries.pop(key, None)
        if entry is not None and entry[0] == raw:
            self.hits += 1
            return entry[1]
        self.misses += 1
        return None

    def put(self, key: bytes, raw: bytes, state: CustomerState) -> None:
        """Keep ``state``, saved in the table as ``raw``; the least recently used goes if full."""
        if self.capacity <= 0:
            return
        self._entries[key] = (raw, state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
