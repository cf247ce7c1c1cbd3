"""The time a worker evaluates segments at.

``wall``: now. ``event``: the latest event time seen (a watermark), for replaying history through
Kafka: a CDNOW purchase from 1997 is valued as of 1997, and customers lapse as the replayed
history moves on, exactly as they would have live.
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
