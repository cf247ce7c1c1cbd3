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

The young generations are collected after :data:`YOUNG_THRESHOLD` (20,000) net allocations
instead of CPython's 700 (:func:`raise_young_threshold`): processing an event allocates hundreds
of short-lived containers, and at 700 the worker collected 30-70 times a second, 5-10 % of its
time at the higher rates. Measured on the worker (``bench/latency_curve.py --loads 0.5,0.9``, two
rounds alternating): garbage collection time in 15 s at half the drain rate 345-362 ms → 57-96
ms, at 90 % 1,000-1,080 → 170-187 ms; the p99 at half the drain rate 175-210 → 151 ms. Each young
collection then takes about 10 ms, and the full ones, which scan the decoded-state cache, come
as much less often: none in those phases, against 4-8 (docs/benchmarks.md).

:class:`GcPauses` times every collection (``gc.callbacks``) for the
``segstream_gc_pause_seconds`` histogram: what is left of the pauses is measured, not guessed.

>>> import gc
>>> freeze_startup_heap() > 0
True
>>> before = raise_young_threshold()
>>> gc.get_threshold()[0]
20000
>>> gc.unfreeze(); gc.set_threshold(*before)  # (this example's process goes on as before)
"""

from __future__ import annotations

import gc
import time
from typing import Any, Callable

__all__ = ["GcPauses", "YOUNG_THRESHOLD", "freeze_startup_heap", "raise_young_threshold"]

#: Net allocations of tracked objects between two collections of the youngest generation.
YOUNG_THRESHOLD = 20_000


def freeze_startup_heap() -> int:
    """Collect once, then exclude every surviving object from later collections' scans; the
    number of objects frozen so far."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def raise_young_threshold(threshold: int = YOUNG_THRESHOLD) -> tuple[int, int, int]:
    """Collect the youngest generation after ``threshold`` net allocations instead of CPython's
    700 (the older generations' thresholds are kept); the thresholds before, to restore them."""
    before = gc.get_threshold()
    gc.set_threshold(threshold, before[1], before[2])
    return before


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
