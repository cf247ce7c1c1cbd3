"""Entries into and exits from each segment over the last week: the scorecard's stability.

A segment whose members come and go quickly cannot carry a campaign: the customers a campaign
starts for have left before it ends. :class:`MembershipFlowLog` counts every segment change as it is
emitted (cumulative, per ``(kind, segment_id)``) and takes a mark of those counts at each finished
sweep pass; the flow over the last week is the difference between the latest mark and the oldest
mark at most a week older, with the time it spans. Times are the emitter's clock (event time on
an event clock), so a replay of a year plays out its weeks.

>>> flow = MembershipFlowLog()
>>> flow.record("rule", "vip", entered=True); flow.record("rule", "vip", entered=True)
>>> flow.mark(0.0)
>>> flow.record("rule", "vip", entered=False)
>>> flow.mark(3 * 86_400.0)
>>> flow.last_week()[("rule", "vip")]
MembershipFlow(entered=0, left=1, span_days=3.0)
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable

from models.scorecard import MembershipFlow

__all__ = ["WEEK_S", "MembershipFlowLog"]

WEEK_S = 7 * 86_400.0

_Key = tuple[str, str]


class MembershipFlowLog:
    """Cumulative entries and exits per segment, with marks taken over time (at most ``keep``
    marks: one per sweep pass, the oldest dropped once a newer one is a week old)."""

    def __init__(self, keep: int = 10_000):
        self.entered: Counter[_Key] = Counter()
        self.left: Counter[_Key] = Counter()
        self._marks: deque[tuple[float, Counter[_Key], Counter[_Key]]] = deque(maxlen=keep)

    def record(self, kind: str, segment_id: str, entered: bool) -> None:
        """One change: the customer entered (or left) the segment."""
        (self.entered if entered else self.left)[(kind, segment_id)] += 1

    def mark(self, at: float) -> None:
        """Take a mark of the counts at ``at`` (epoch seconds). A mark earlier than the latest (a
        clock that went back) replaces nothing and is ignored."""
        if self._marks and at < self._marks[-1][0]:
            return
        self._marks.append((at, Counter(self.entered), Counter(self.left)))
        # The oldest mark still needed: the latest one at least a week before this one.
        while len(self._marks) > 2 and self._marks[1][0] <= at - WEEK_S:
            self._marks.popleft()

    def last_week(self, segments: Iterable[_Key] = ()) -> dict[_Key, MembershipFlow]:
        """Per segment: the entries, exits and days between the latest mark and the oldest one
        at most a week before it; empty before two marks. The span is under a week while the
        emitter has run for less (the scorecard says so rather than extrapolate short spans).
        ``segments`` are included with their counts, 0 and 0 when nobody entered or left them."""
        if len(self._marks) < 2:
            return {}
        latest_at, entered, left = self._marks[-1]
        start = next(m for m in self._marks if m[0] >= latest_at - WEEK_S)
        if start is self._marks[-1]:
            start = self._marks[-2]  # two marks more than a week apart: the span is longer, say so
        start_at, entered0, left0 = start
        keys = set(entered) | set(left) | set(segments)
        span_days = (latest_at - start_at) / 86_400.0
        return {key: MembershipFlow(entered[key] - entered0[key], left[key] - left0[key], span_days) for key in keys}
