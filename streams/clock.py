"""The time a worker evaluates segments at.

``wall``: now. ``event``: the latest time of an *applied* event, for replaying history through
Kafka: a CDNOW purchase from 1997 is valued as of 1997, and customers lapse as the replayed
history moves on, exactly as they would have live. The processor observes an event only once the
engine applied it, so a rejected, repeated or erased event never moves the clock, and an accepted
one is at most ``max_future_skew_s`` past wall time (docs/worker.md, "How far the event clock may
jump").

In both modes time-driven evaluation also waits for the input: the sweep evaluates at the
smaller of that time and the input low watermark (:mod:`streams.watermark`), the time up to which
every partition this worker reads has been read. A customer whose own events are further on is
evaluated as of its latest event (:meth:`WorkerClock.time_for`).
"""

from __future__ import annotations

import math
import time

from schemas.errors import ConfigurationError

__all__ = ["WorkerClock"]


class WorkerClock:
    """>>> clock = WorkerClock("event", max_ahead_s=300)
    >>> clock.observe(1_767_225_600.0)          # an applied event of 2026-01-01
    >>> clock.observe(time.time() + 86_400)     # a time further ahead of wall time than allowed
    >>> clock.now()
    1767225600.0
    >>> clock.hold(1_767_000_000.0)             # a partition behind has read up to 2025-12-29
    >>> clock.sweep_time(), clock.time_for(1_767_100_000.0)
    (1767000000.0, 1767100000.0)
    """

    def __init__(self, mode: str = "wall", max_ahead_s: float = math.inf, held_by_input: bool = False):
        """``max_ahead_s``: a time further than this past wall time is ignored (the engine's
        ``max_future_skew_s``: no accepted event is further ahead, so only a time derived from an
        older worker's clock, in a sample or a model snapshot, can be). ``held_by_input``: the
        input watermark is measured (:meth:`hold`); until its first measurement nothing is swept.
        Without it (in-process use: tests, benchmarks) the input holds nothing back."""
        if mode not in ("wall", "event"):
            raise ConfigurationError(f"clock mode must be 'wall' or 'event', not {mode!r}")
        self.mode = mode
        self.max_ahead_s = max_ahead_s
        self.latest = -math.inf  # the latest applied event time
        self.input_watermark = -math.inf if held_by_input else math.inf
        self._swept_at = -math.inf  # the latest sweep time given out: it never goes back

    def observe(self, ts: float) -> None:
        """An applied event (or a model trained) at ``ts``: the event clock never goes back."""
        if ts > self.latest and ts <= time.time() + self.max_ahead_s:
            self.latest = ts

    def hold(self, low: float) -> None:
        """The input low watermark as measured now (``inf``: no partition behind). It may be lower
        than the last one (a partition fell behind again): the sweep then stays where it was."""
        self.input_watermark = low

    def now(self) -> float | None:
        """The worker's time: wall time, or the latest applied event time (None while an event
        clock has seen nothing)."""
        if self.mode == "wall":
            return time.time()
        return self.latest if math.isfinite(self.latest) else None

    def sweep_time(self) -> float | None:
        """The time the sweep evaluates at: :meth:`now`, held back to the input watermark, never
        earlier than the last sweep time (None while there is nothing to evaluate at)."""
        now = self.now()
        if now is None:
            return None
        self._swept_at = max(self._swept_at, min(now, self.input_watermark))
        return self._swept_at if math.isfinite(self._swept_at) else None

    def time_for(self, latest_event_ts: float | None) -> float | None:
        """The time a customer whose latest event is at ``latest_event_ts`` is evaluated at (when
        its events arrive, and by the sweep): the sweep time, or its own latest event time if
        later, never past :meth:`now`."""
        now = self.now()
        if now is None:
            return None
        at = max(self.input_watermark, self._swept_at, latest_event_ts if latest_event_ts is not None else -math.inf)
        at = min(now, at)
        return at if math.isfinite(at) else None
