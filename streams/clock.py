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
    def __init__(self, mode: str = "wall"):
        if mode not in ("wall", "event"):
            raise ValueError(f"clock mode must be 'wall' or 'event', not {mode!r}")
        self.mode = mode
        self.watermark = -math.inf

    def observe(self, ts: float) -> None:
        """An event (or a model trained) at ``ts``: the event clock never goes back."""
        if ts > self.watermark:
            self.watermark = ts

    def now(self) -> float | None:
        """Evaluation time; None while an event clock has seen nothing (nothing to evaluate)."""
        if self.mode == "wall":
            return time.time()
        return self.watermark if math.isfinite(self.watermark) else None
