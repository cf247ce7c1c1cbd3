"""Keeping Python's cyclic garbage collector off the latency of live events (issue #20).

CPython's collector stops the event loop while it scans a generation; a full (generation 2) scan
visits every tracked container object the process holds. A started worker holds 170,000-190,000
of them (its imports: faust, aiokafka, river, pydantic's validators; its start-up), plus the
model and the decoded-state cache as it fills. Measured on a worker at half its drain rate,
full collections stopped the loop for 170-560 ms, a few times a minute: the second largest stall
behind the p99 latency of a live event (docs/benchmarks.md).

Nearly all of the start-up heap lives as long as the process, and little of it is ever garbage.
:func:`freeze_startup_heap`, called once the worker is ready, collects once and then moves every
object that survived into the permanent generation (``gc.freeze``, Python 3.7+: the approach of
Instagram's web servers), so later full scans visit only what processing allocated since. The
frozen objects are still freed by reference counting; only reference cycles among them, if
any, would stay until the process ends.

:class:`GcPauses` times every collection (``gc.callbacks``) for the
``segstream_gc_pause_seconds`` histogram: what is left of the pauses is measured, not guessed.

>>> import gc
>>> freeze_startup_heap() > 0
True
>>> gc.unfreeze()  # (this example's process goes on collecting as before)
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

__all__ = ["GcPauses", "freeze_startup_heap"]


def freeze_startup_heap() -> int:
    """Collect once, then exclude every surviving object from later collections' scans; the
    number of objects frozen so far."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


class GcPauses:
    """Report the duration of every garbage collection to ``observe(generation, seconds)``
    while installed (``gc.callbacks``; a context manager).

    >>> pauses = []
    >>> with GcPauses(lambda generation, seconds: pauses.append(generation)):
    ...     _ = gc.collect(1)
    >>> pauses
    [1]
    """

    def __init__(self, observe: Callable[[int, float], None]) -> None:
        self.observe = observe
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.observe(info["generation"], time.perf_counter() - self._started)

    def install(self) -> "GcPauses":
        gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def __enter__(self) -> "GcPauses":
        return self.install()

    def __exit__(self, *_exc: object) -> None:
        self.remove()
