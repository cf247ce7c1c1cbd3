"""Stable segment identities across model updates and their lifecycle (labels: ``models.labels``).

An online model's cluster numbers mean nothing from one update to the next (river's DBSTREAM
renumbers macro-clusters on every recluster). Each new set of centroids is therefore matched to
the previous segments by minimum total centroid movement (Hungarian algorithm,
``scipy.optimize.linear_sum_assignment``): a segment keeps its id while its centroid moves less
than ``match_threshold`` standard deviations. Unmatched new centroids are **born** with a new id
(ids are never reused); unmatched old segments are **merged** into the nearest new segment when
it is within the threshold, else **retired**.

>>> import numpy as np
>>> reg = SegmentRegistry(match_threshold=1.0)
>>> first = reg.update(np.array([[0.0, 0.0], [5.0, 5.0]]), version=1, at=0.0)
>>> [s for s in first.ids], [e.kind for e in first.lifecycle]
(['c1', 'c2'], ['born', 'born'])
>>> second = reg.update(np.array([[5.2, 5.0], [0.1, 0.0]]), version=2, at=1.0)
>>> second.ids   # order of the new centroids differs, identities do not
['c2', 'c1']
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


__all__ = ["LifecycleEvent", "Matching", "SegmentRegistry"]


@dataclass(frozen=True)
class LifecycleEvent:
    kind: str  # born | merged | retired
    segment_id: str
    version: int
    at: float
    into: str | None = None  # for merged

    def to_dict(self) -> dict:
        return {"kind": self.kind, "segment_id": self.segment_id, "version": self.version, "at": self.at,
                "into": self.into}


@dataclass(frozen=True)
class Matching:
    ids: list[str]  # segment id of each new centroid, in the new centroids' order
    lifecycle: list[LifecycleEvent]
    moved: dict[str, float]  # centroid movement of each kept id (std units)


@dataclass
class SegmentRegistry:
    match_threshold: float = 1.5
    _next: int = 1
    _centroids: dict[str, np.ndarray] = field(default_factory=dict)
    born_version: dict[str, int] = field(default_factory=dict)
    history: list[LifecycleEvent] = field(default_factory=list)

    @property
    def next_number(self) -> int:
        return self._next

    def ids(self) -> list[str]:
        """The current segment ids, in the order of their centroids."""
        return list(self._centroids)

    def resume(self, ids: tuple[str, ...], centroids: np.ndarray, next_number: int) -> None:
        """Continue from a published model: its ids keep their centroids, and new ids never reuse
        one handed out before (retired ones included)."""
        self._centroids = {sid: c.copy() for sid, c in zip(ids, centroids)}
        self._next = max(self._next, next_number)

    def update(self, centroids: np.ndarray, version: int, at: float) -> Matching:
        """Match ``centroids`` (k x d) to the current segments and make the result current."""
        matching = self.match(centroids, version, at)
        self.commit(matching, centroids)
        return matching

    def match(self, centroids: np.ndarray, version: int, at: float,
              previous: np.ndarray | None = None, lineage: bool = False,
              reseeded: Collection[int] = ()) -> Matching:
        """The ids ``centroids`` would get, without changing the registry (a candidate model is
        judged before it is adopted). ``previous``: the current segments' centroids expressed in
        the space of ``centroids`` (k' x d, in the current ids' order) when the standardisation
        changed; default the stored ones. New ids are numbered from :attr:`next_number`.

        ``lineage``: ``centroids`` are the current segments trained further, row for row (the
        model in force retrained on new data): each keeps its id however far the data moved it.
        Matching by position would retire every segment of a population that drifted as a whole
        (customers ageing on the event clock) and move every customer to a new id with the same
        label. ``reseeded``: rows of a lineage that are not the segment trained further but a centre
        moved onto other customers (:meth:`models.clustering.OnlineClusterer.reseed_empty`): the old
        segment is retired and the row is born under a new id, so an id never changes its meaning."""
        old_ids = list(self._centroids)
        if previous is None:
            previous = np.array([self._centroids[i] for i in old_ids]) if old_ids else np.empty((0, centroids.shape[1]))
        if lineage and len(old_ids) == len(centroids):
            ids_of_rows, events, number = list(old_ids), [], self._next
            for r in sorted(set(reseeded)):
                events.append(LifecycleEvent("retired", old_ids[r], version, at))
                ids_of_rows[r] = f"c{number}"
                number += 1
                events.append(LifecycleEvent("born", ids_of_rows[r], version, at))
            kept_moved = {sid: float(np.linalg.norm(previous[r] - centroids[r]))
                          for r, sid in enumerate(old_ids) if r not in set(reseeded)}
            return Matching(ids=ids_of_rows, lifecycle=events, moved=kept_moved)
        ids: list[str | None] = [None] * len(centroids)
        lifecycle: list[LifecycleEvent] = []
        moved: dict[str, float] = {}
        if old_ids and len(centroids):
            cost = np.linalg.norm(previous[:, None, :] - centroids[None, :, :], axis=2)
            rows, cols = linear_sum_assignment(cost)
            for r, c in zip(rows, cols):
                if cost[r, c] <= self.match_threshold:
                    ids[c] = old_ids[r]
                    moved[old_ids[r]] = float(cost[r, c])
        number = self._next
        for c, sid in enumerate(ids):
            if sid is None:
                sid = ids[c] = f"c{number}"
                number += 1
                lifecycle.append(LifecycleEvent("born", sid, version, at))
        kept = set(moved)
        for r, sid in enumerate(old_ids):
            if sid in kept:
                continue
            dist = np.linalg.norm(centroids - previous[r], axis=1) if len(centroids) else np.array([])
            if len(dist) and dist.min() <= self.match_threshold:
                lifecycle.append(LifecycleEvent("merged", sid, version, at, into=ids[int(dist.argmin())]))
            else:
                lifecycle.append(LifecycleEvent("retired", sid, version, at))
        return Matching(ids=[s for s in ids if s is not None], lifecycle=lifecycle, moved=moved)

    def commit(self, matching: Matching, centroids: np.ndarray) -> None:
        """Make a :meth:`match` result current: its ids now stand for ``centroids``."""
        for event in matching.lifecycle:
            if event.kind == "born":
                self.born_version[event.segment_id] = event.version
                self._next = max(self._next, int(event.segment_id[1:]) + 1)
        self._centroids = {sid: centroids[c].copy() for c, sid in enumerate(matching.ids)}
        self.history.extend(matching.lifecycle)

