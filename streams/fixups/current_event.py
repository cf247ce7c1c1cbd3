"""Making a message faust's current event for a table write, in a batch (faust reads a private
context variable). Can go when faust lets a table write name its partition, or a batch agent
write each key in its own message's context."""

from __future__ import annotations

import contextlib
import weakref
from typing import Iterator

import faust
from faust.streams import _current_event as _faust_current_event  # what faust's tables read

__all__ = ["current_event_is"]


@contextlib.contextmanager
def current_event_is(event: faust.EventT) -> Iterator[None]:
    """Make ``event`` faust's current event for a table write.

    faust writes a table key to the changelog partition of the current event (its RocksDB store
    picks the partition's database the same way), and in a batch that must be the customer's own
    message. Only the context variable the tables read is set, and reset right after: the
    stream's own notion of its current event (which ``take`` reads) is left alone.
    """
    token = _faust_current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _faust_current_event.reset(token)
