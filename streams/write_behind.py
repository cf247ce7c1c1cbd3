"""Write-behind for the customer table: a customer's state reaches the changelog once per offset
commit, however many batches touched it meanwhile (issue #20, item 3).

A batch of the customer agent saves every state it touched (:meth:`StateStore.save`); with
write-behind on, the bytes wait here, and :meth:`StateStore.write_out` writes them all to the
table just before the consumer commits offsets (the worker's
:attr:`streams.fixups.kafka_transport.WorkerConsumer.before_commit`, which then awaits the
writes' acknowledgements): no offset is committed before the states its events produced are
durable. A customer touched by ten batches between two commits costs one changelog record and
one acknowledgement instead of ten, and a batch with no segment change waits for nothing.

What stays written at once (:meth:`StateStore.write_through`): a state whose batch produced
segment changes, with the changes in its outbox, is written and acknowledged *before* the
changes are sent (streams.processor: no change is visible before the state that produced it is
durable). Its emptied outbox waits here like any other state: a crash in between resends the
outbox with the same ``change_id`` s, which subscribers drop.

A crash loses what waits here, and nothing else: the events that produced it were not committed,
so they are delivered again onto the last written states (idempotently: streams.processor).
Reads (:meth:`StateStore.get`) see the waiting bytes first, so the worker, its API and its next
batches see every state as last saved.

>>> table = {}
>>> store = StateStore(table, deferred=True)
>>> store.save(b"c1", b"state-1", 0)
>>> store.save(b"c1", b"state-2", 0)
>>> table, store.get(b"c1"), len(store)
({}, b'state-2', 1)
>>> store.write_out()
1
>>> table
{b'c1': b'state-2'}
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, MutableMapping

__all__ = ["StateStore"]

Context = Callable[[], contextlib.AbstractContextManager]


def _no_context() -> contextlib.AbstractContextManager:
    return contextlib.nullcontext()


class StateStore:
    """The customer table (key: customer id bytes, value: state bytes), optionally behind a
    write-behind buffer (``deferred``). ``save`` takes the partition the key's changelog record
    belongs to (what a revoked partition's entries are dropped by) and a ``context``: the table
    write happens inside it (faust picks the changelog partition from its current event)."""

    def __init__(self, table: MutableMapping[bytes, bytes], deferred: bool = False):
        self.table = table
        self.deferred = deferred
        # The worker's table (streams.fixups.durable_table) stages writes: their changelog records
        # are sent in whole record batches. Any other mapping is written item by item.
        self._stage: Callable[[bytes, bytes | None], None] | None = getattr(table, "stage", None)
        # key -> (bytes or None for a deletion, partition, context); in the order last saved
        self._waiting: dict[bytes, tuple[bytes | None, int, Context]] = {}

    def __len__(self) -> int:
        """States saved and not yet written to the table."""
        return len(self._waiting)

    def get(self, key: bytes) -> bytes | None:
        """The state as last saved (None: no state, or deleted)."""
        waiting = self._waiting.get(key)
        if waiting is not None:
            return waiting[0]
        return self.table.get(key)

    def save(self, key: bytes, raw: bytes | None, partition: int, context: Context = _no_context) -> None:
        """Save ``raw`` (None: delete the key): at the next :meth:`write_out` when deferred, else now."""
        if self.deferred:
            self._waiting.pop(key, None)  # re-inserted last: written out in the order saved
            self._waiting[key] = (raw, partition, context)
        else:
            self._write(key, raw, context)

    def write_through(self, key: bytes, raw: bytes, context: Context = _no_context) -> None:
        """Write ``raw`` now, whatever waits for the key (it is older)."""
        self._waiting.pop(key, None)
        self._write(key, raw, context)

    def write_out(self) -> int:
        """Write every waiting state to the table; the number written. The caller sends and awaits
        the table's changelog records (``Outputs.flush``) before committing offsets."""
        waiting, self._waiting = self._waiting, {}
        for key, (raw, _partition, context) in waiting.items():
            self._write(key, raw, context)
        return len(waiting)

    def forget(self, partitions: Iterable[int]) -> int:
        """Drop what waits for ``partitions`` (revoked without a commit: another worker owns them
        now and reads their events again from the last commit). The number dropped."""
        gone = set(partitions)
        dropped = [key for key, (_, partition, _) in self._waiting.items() if partition in gone]
        for key in dropped:
            del self._waiting[key]
        return len(dropped)

    def _write(self, key: bytes, raw: bytes | None, context: Context) -> None:
        with context():
            if self._stage is not None:
                self._stage(key, raw)
            elif raw is not None:
                self.table[key] = raw
            elif key in self.table:
                del self.table[key]
