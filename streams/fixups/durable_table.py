"""faust's table, keeping hold of its changelog writes until the worker has seen them acknowledged.

A table write in faust is a changelog message queued in the producer's buffer; the future that
tells when the broker has it is dropped. faust flushes the producer before it commits offsets,
but its buffer flush (faust-streaming 0.15.3, ``ProducerBuffer.flush_atmost``) returns as soon
as no message left the buffer for 100 ms, with messages still queued: under load the offsets of
a batch could be committed before its states reached the changelog, and a crash then would lose
the batch's events for good (found by reading faust while chasing a crash-test failure that
turned out to have another cause, see :mod:`streams.fixups.kafka_transport`; the test of this one makes
faust's flush give up on purpose).

This table keeps every changelog write's future; :meth:`take_pending_writes` hands them over, and
the worker awaits them before a batch counts as processed (``streams.agents.KafkaOutputs.flush``),
so whatever faust commits afterwards is already in the changelog.
"""

from __future__ import annotations

from typing import Any

import faust


class DurableTable(faust.Table):
    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        fut = super().send_changelog(*args, **kwargs)
        self.__dict__.setdefault("_pending_writes", []).append(fut)
        return fut

    def take_pending_writes(self) -> list[Any]:
        """The futures of the changelog writes made since the last call."""
        pending = self.__dict__.get("_pending_writes") or []
        self.__dict__["_pending_writes"] = []
        return pending
