"""The time a worker evaluates segments at.

``wall``: now. ``event``: the latest time of an *applied* event (a watermark), for replaying
history through Kafka: a CDNOW purchase from 1997 is valued as of 1997, and customers lapse as the
replayed history moves on, exactly as they would have live. The processor observes an event only
once the engine applied it, so a rejected, repeated or erased event never moves the clock, and an
accepted one is at most ``max_future_skew_s`` past wall time (docs/worker.md, "How far the event
clock may jump").
"""

from __future__ import annotations

import math
import time


class WorkerClock:
    """>>> clock = WorkerClock("event", max_ahead_s=300)
    >>> clock.observe(1_767_225_600.0)          # an applied event of 2026-01-01
    >>> clock.observe(time.time() + 86_400)     # a time further ahead of wall time than allowed
    >>> clock.now()
    1767225600.0
    """

    def __init__(self, mode: str = "wall", max_ahead_s: float = math.inf):
        """``max_ahead_s``: a time further than this past wall time is ignored (the engine's
        ``max_future_skew_s``: no accepted event is further ahead, so only a time derived from an
        older worker's clock, in a sample or a model snapshot, can be)."""
        if mode not in ("wall", "event"):
            raise ValueError(f"clock mode must be 'wall' or 'event', not {mode!r}")
        self.mode = mode
        self.max_ahead_s = max_ahead_s
        self.watermark = -math.inf

    def observe(self, ts: float) -> None:
        """An applied event (or a model trained) at ``ts``: the event clock never goes back."""
        if ts > self.watermark and ts <= time.time() + self.max_ahead_s:
            self.watermark = ts

    def now(self) -> float | None:
        """Evaluation time; None while an event clock has seen nothing (nothing to evaluate)."""
        if self.mode == "wall":
            return time.time()
        return self.watermark if math.isfinite(self.watermark) else None
