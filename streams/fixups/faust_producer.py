"""Flushing faust's producer now, not after its linger (aiokafka's accumulator has no public
"send now"). Can go when aiokafka gets a public flush of open batches, or faust's own flush
stops waiting out ``producer_linger``."""

from __future__ import annotations

from typing import Any

__all__ = ["flush_now"]


async def flush_now(producer: Any) -> None:
    """Everything sent so far acknowledged, without waiting out the producer's linger.

    faust's ``flush`` (aiokafka's, underneath) waits for each open batch to linger its full
    ``producer_linger`` first: a batch with changes flushes twice (outbox, then the changes), so
    that wait was paid twice per batch, on the latency of every change. Closing the open batches is
    what aiokafka does itself before a transaction commit (``flush_for_commit``); the linger still
    groups everything sent between two flushes. aiokafka is pinned (pyproject.toml): this uses
    its accumulator, which has no public "send now".
    """
    await producer.buffer.flush()  # faust's own queue of table writes into aiokafka
    client = getattr(producer, "_producer", None)
    if client is not None:
        await client._message_accumulator.flush_for_commit()
    await producer.flush()
