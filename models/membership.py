"""Cluster membership with hysteresis: customers do not flap between neighbouring segments.

A customer moves to another segment only when it is closer by a relative ``margin``
(``d_new < (1 - margin) * d_current``) **and** has stayed closer by that margin for ``dwell``
seconds (event or clock time, as observed at the customer's evaluations). Either condition alone
lets noise through: a margin alone moves a customer on one noisy evaluation, a dwell alone moves
customers sitting on a boundary. Moving back to the segment the customer just left, within the
dwell window, needs twice the margin and is counted as a **flap** (A -> B -> A).

A first assignment, and a move out of a segment that no longer exists, happen at once.

>>> from models.state import CustomerState
>>> s = CustomerState("c")
>>> decide(s, {"c1": 1.0, "c2": 3.0}, now=0.0, margin=0.2, dwell_s=100.0).reason
'first_assignment'
>>> decide(s, {"c1": 1.0, "c2": 0.9}, now=10.0, margin=0.2, dwell_s=100.0) is None   # not by the margin
True
>>> decide(s, {"c1": 1.0, "c2": 0.7}, now=20.0, margin=0.2, dwell_s=100.0) is None   # by the margin, not yet long
True
>>> decide(s, {"c1": 1.0, "c2": 0.7}, now=120.0, margin=0.2, dwell_s=100.0).reason  # ...and for long enough
'better_fit'
"""

from __future__ import annotations

from dataclasses import dataclass

from models.state import CustomerState

__all__ = ["ClusterMove", "decide"]


@dataclass(frozen=True, slots=True)
class ClusterMove:
    previous: str | None
    new: str
    reason: str  # first_assignment | better_fit (margin and dwell) | segment_retired
    flap: bool
    previous_distance: float | None
    new_distance: float


def decide(state: CustomerState, distances: dict[str, float], now: float, margin: float,
           dwell_s: float, return_window_s: float | None = None) -> ClusterMove | None:
    """Apply the hysteresis rule to ``state`` (mutated on a move or a new candidate) and return
    the move, if any.

    ``distances`` maps every live segment id to the customer's distance to its centroid; ``now``
    and ``dwell_s`` are in seconds. The closest segment by the margin becomes the customer's
    candidate (``state.candidate``, since ``state.candidate_since``); the customer moves to it when
    it is still the candidate ``dwell_s`` later. An evaluation where no segment is closer by the
    margin drops the candidate: the dwell starts again at the next crossing. Going back to the
    segment the customer left less than ``return_window_s`` ago (default ``dwell_s``) needs twice
    the margin.
    """
    best = min(distances, key=distances.__getitem__)
    current = state.cluster
    if current is None:
        return _move(state, best, "first_assignment", now, distances, None, dwell_s)
    if current not in distances:
        return _move(state, best, "segment_retired", now, distances, None, dwell_s)
    d_cur, d_best = distances[current], distances[best]
    window = dwell_s if return_window_s is None else max(return_window_s, dwell_s)
    if best == state.previous_cluster and state.switched_at is not None and now - state.switched_at < window:
        margin = min(2.0 * margin, 0.9)  # going straight back is a flap: ask for twice the evidence
    if best == current or not d_best < (1.0 - margin) * d_cur:
        state.candidate = state.candidate_since = None
        return None
    if state.candidate != best:
        state.candidate, state.candidate_since = best, now
    if now - (state.candidate_since if state.candidate_since is not None else now) >= dwell_s:
        return _move(state, best, "better_fit", now, distances, d_cur, dwell_s)
    return None


def _move(state: CustomerState, new: str, reason: str, now: float, distances: dict[str, float],
          d_prev: float | None, dwell_s: float) -> ClusterMove:
    flap = (reason == "better_fit" and new == state.previous_cluster
            and state.switched_at is not None and now - state.switched_at <= dwell_s)
    previous = state.cluster
    state.previous_cluster, state.cluster = previous, new
    state.cluster_since = state.switched_at = now
    state.candidate = state.candidate_since = None
    if flap:
        state.flaps += 1
    return ClusterMove(previous, new, reason, flap, d_prev, distances[new])
