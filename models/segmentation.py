"""The segmenter: trains the online model on customers, snapshots it, and assigns with hysteresis.

Training and assignment are separate on purpose. :meth:`Segmenter.train` (one place: the replay,
or the single trainer of a worker group) learns from the customer sample and publishes a
versioned :class:`~models.snapshot.ModelSnapshot`. :meth:`Segmenter.assign` only needs a snapshot,
so every worker that installed the same version assigns the same way, cheaply (numpy, no river).
"""

from __future__ import annotations

import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.clustering import CustomerSample, OnlineClusterer, Scaler
from models.config import SegmentationConfig, ValueConfig
from models.drift import DriftMonitor, DriftSignal, SnapshotDrift
from models.features import FEATURES, FeatureBasis, matrix_at, profiles_at
from models.rules import RuleSet
from models.valuation import Valuation
from models.membership import ClusterMove, decide
from models.segments import SegmentRegistry, describe
from models.snapshot import ModelSnapshot
from models.state import SECONDS_PER_DAY, CustomerState
from models.thresholds import update_thresholds

_VALUE, _SAT = FEATURES.index("value"), FEATURES.index("satisfaction")


@dataclass(frozen=True, slots=True)
class ClusterChange:
    """A cluster move with the why: distances and the features that made the difference."""

    move: ClusterMove
    model_version: int
    label: str
    previous_label: str | None
    distances: dict[str, float]
    drivers: list[dict[str, Any]]


@dataclass
class MembershipCounters:
    """Exact membership flows seen by this engine (sizes, churn in/out, transitions, flaps)."""

    sizes: Counter[str] = field(default_factory=Counter)
    entered: Counter[str] = field(default_factory=Counter)  # since the last snapshot
    left: Counter[str] = field(default_factory=Counter)
    transitions: Counter[tuple[str | None, str]] = field(default_factory=Counter)
    moves: int = 0
    flaps: int = 0

    def record(self, move: ClusterMove) -> None:
        if move.previous is not None:
            self.sizes[move.previous] -= 1
            self.left[move.previous] += 1
        self.sizes[move.new] += 1
        self.entered[move.new] += 1
        self.transitions[(move.previous, move.new)] += 1
        self.moves += 1
        self.flaps += move.flap

    def remove(self, segment_id: str | None) -> None:
        if segment_id is not None:
            self.sizes[segment_id] -= 1
            self.left[segment_id] += 1


class Segmenter:
    #: Sampled customers fed to the feature drift detectors per training round.
    DRIFT_SAMPLE = 2000

    def __init__(self, config: SegmentationConfig, rules: RuleSet | None = None):
        self.config = config
        self.rules = rules
        self.drift = DriftMonitor(FEATURES)
        self.signals: deque[DriftSignal] = deque(maxlen=1000)  # recent detections, newest last
        self._shuffle = np.random.default_rng(config.seed + 1)
        self.sample = CustomerSample(config.sample_size)
        self.clusterer = OnlineClusterer(config, len(FEATURES))
        self.registry = SegmentRegistry(config.match_threshold)
        self.scaler: Scaler | None = None
        self.snapshot: ModelSnapshot | None = None
        self.counters = MembershipCounters()
        self.dwell_s = config.dwell_days * SECONDS_PER_DAY
        self._trainings = 0

    # ---- training (one trainer) --------------------------------------------------------------

    def observe(self, customer_id: str, basis: FeatureBasis) -> None:
        """Offer a customer's current feature basis to the training sample."""
        self.sample.observe(customer_id, basis)

    def train(self, now: float, valuation: Valuation, value_config: ValueConfig,
              bases: list[FeatureBasis] | None = None) -> ModelSnapshot | None:
        """Learn from the customer sample, valued as of ``now``, and install a new snapshot
        (None while there are too few customers).

        ``bases`` is a copy of the sample taken by the caller: a trainer that trains in a thread
        copies it first, so the sample can keep changing while the training runs.
        """
        if bases is None:
            bases = self.sample.values()
        if len(bases) < self.config.min_customers_to_train:
            return None
        matrix = matrix_at(bases, now, valuation, value_config)
        # Random order: drift detectors and streaming quantiles read order as time.
        order = self._shuffle.permutation(len(matrix))
        new_signals = [sig for i in order[: self.DRIFT_SAMPLE] for sig in self.drift.observe_features(matrix[i])]
        thresholds = self._rule_thresholds(bases, matrix, order)
        scaler = Scaler.fit(matrix)
        if self.scaler is not None:
            self.clusterer.rescale(self.scaler, scaler)
        self.scaler = scaler
        z = scaler.transform(matrix)
        self.clusterer.learn(z, passes=self.config.train_passes)
        self.clusterer.reseed_empty(z)
        self._trainings += 1
        self._maybe_challenge(z)
        centroids = self.clusterer.centroids()
        if len(centroids) == 0:
            return None
        version = (self.snapshot.version if self.snapshot else 0) + 1
        matching = self.registry.update(centroids, version, now)
        labels, descriptions = [], []
        for c in centroids:
            label, desc = describe(c, scaler.inverse(c))
            labels.append(label)
            descriptions.append(desc)
        labels = _unique_labels(labels, matching.ids)
        snap = ModelSnapshot(
            version=version, created_at=now, algorithm=self.config.algorithm, features=FEATURES,
            mean=scaler.mean, std=scaler.std, centroids=centroids, segment_ids=tuple(matching.ids),
            labels=tuple(labels), descriptions=tuple(descriptions),
            lifecycle=tuple(e.to_dict() for e in matching.lifecycle), valuation=valuation.to_dict(),
        )
        stats = self._segment_stats(snap, matrix, z)
        drift = self._snapshot_drift(snap, stats)
        new_signals.extend(drift.signals)
        self.signals.extend(new_signals)
        snap = ModelSnapshot(**{
            **snap.__dict__, "stats": stats,
            "drift": {"centroid_shift": {k: round(v, 4) for k, v in drift.centroid_shift.items()},
                      "max_centroid_shift": _finite_or_none(drift.max_centroid_shift),
                      "share_tvd": round(drift.share_tvd, 4),
                      "signals": [{"kind": g.kind, "feature": g.feature, "value": _finite_or_none(g.value),
                                   "detail": g.detail} for g in new_signals]},
            "definition_version": self.rules.version if self.rules else None,
            "rule_thresholds": thresholds,
            "sample_size": len(bases), "sample_threshold": self.sample.threshold(),
            "next_segment_number": self.registry.next_number,
        })
        self.install(snap)
        self.drift.reset_distance()  # a new model: distances start afresh
        return snap

    def resume(self, snapshot: ModelSnapshot) -> None:
        """Continue training from a published snapshot (a new trainer after a restart or a
        rebalance): same centroids, scaler and segment ids, so customers keep their segments."""
        self.install(snapshot)
        if len(snapshot.centroids) == 0:
            return
        self.scaler = Scaler(snapshot.mean, snapshot.std)
        self.clusterer.warm_start(snapshot.centroids)
        self.registry.resume(snapshot.segment_ids, snapshot.centroids, snapshot.next_segment_number)
        # A resumed model has settled: challengers only at the post-warm-up cadence.
        self._trainings = max(self._trainings, self.config.restart_warmup + 1)

    def _maybe_challenge(self, z: np.ndarray) -> None:
        """Restarts while the model is young; rarer and with a higher bar once it has settled, so
        stationary traffic keeps its segments (a new optimum must be clearly better to win)."""
        c = self.config
        if self._trainings <= c.restart_warmup:
            gain = c.restart_min_gain
        elif c.restart_every and self._trainings % c.restart_every == 0:
            gain = 3 * c.restart_min_gain
        else:
            return
        self.clusterer.challenge(z, c.restart_candidates, gain, c.train_passes)

    def _rule_thresholds(self, bases: list[FeatureBasis], matrix: np.ndarray, order: np.ndarray) -> dict[str, float]:
        """Population percentiles the rules refer to, entry and relaxed (``rule_band``): exact
        quantiles of the customer sample, kept from the previous snapshot while this sample does
        not contradict them (:func:`models.thresholds.update_thresholds`). ``order`` is not used:
        the result is the same for any order of the sample."""
        if self.rules is None or not self.rules.percentiles_needed():
            return {}
        previous = self.snapshot.rule_thresholds if self.snapshot is not None else None
        return update_thresholds(profiles_at(bases, matrix), self.rules.percentiles_needed(self.config.rule_band),
                                 previous, min_samples=self.config.threshold_min_samples,
                                 z=self.config.threshold_z).thresholds

    def _snapshot_drift(self, snap: ModelSnapshot, stats: dict[str, dict]) -> SnapshotDrift:
        prev = self.snapshot
        new_centroids = dict(zip(snap.segment_ids, snap.centroids))
        new_shares = {sid: st["sample_share"] for sid, st in stats.items()}
        if prev is None or not prev.stats:
            return SnapshotDrift({}, float("nan"), 0.0, tuple(snap.segment_ids), (), ())
        prev_centroids = dict(zip(prev.segment_ids, prev.centroids))
        prev_shares = {sid: st.get("sample_share", 0.0) for sid, st in prev.stats.items()}
        return self.drift.compare_snapshots(prev_centroids, new_centroids, prev_shares, new_shares)

    def _segment_stats(self, snap: ModelSnapshot, matrix: np.ndarray, z: np.ndarray) -> dict[str, dict]:
        """What a marketer needs to judge each segment: substantial, profitable, distinct, stable."""
        nearest = snap.assign_many(matrix)
        stats: dict[str, dict] = {}
        k = len(snap.segment_ids)
        gaps = np.linalg.norm(snap.centroids[:, None, :] - snap.centroids[None, :, :], axis=2)
        np.fill_diagonal(gaps, np.inf)
        for i, sid in enumerate(snap.segment_ids):
            members = matrix[nearest == i]
            spread = float(np.linalg.norm(z[nearest == i] - snap.centroids[i], axis=1).mean()) if len(members) else 0.0
            clv = np.expm1(members[:, _VALUE]) if len(members) else np.empty(0)
            sat = members[:, _SAT] if len(members) else np.empty(0)
            # Exact sizes where this engine assigns (a replay); a trainer that only sees a sample
            # estimates them from the sample share and the sample's population estimate.
            size = (max(self.counters.sizes.get(sid, 0), 0) if self.counters.moves
                    else round(len(members) / len(matrix) * self.sample.population_estimate()))
            stats[sid] = {
                "sample_share": round(len(members) / len(matrix), 4),
                "size": size,
                "mean_clv": round(float(clv.mean()), 2) if len(clv) else 0.0,
                "total_clv_estimate": round(float(clv.mean()) * size, 2) if len(clv) else 0.0,
                "nps_mix": {
                    "promoter": round(float((sat >= 9).mean()), 3) if len(sat) else 0.0,
                    "passive": round(float(((sat >= 7) & (sat < 9)).mean()), 3) if len(sat) else 0.0,
                    "detractor": round(float((sat < 7).mean()), 3) if len(sat) else 0.0,
                },
                "nearest_segment": snap.segment_ids[int(gaps[i].argmin())] if k > 1 else None,
                "separation": round(float(gaps[i].min()) / max(spread, 1e-9), 3) if k > 1 else None,
                "entered": self.counters.entered.get(sid, 0),
                "left": self.counters.left.get(sid, 0),
            }
        self.counters.entered.clear()
        self.counters.left.clear()
        return stats

    # ---- assignment (every worker) -----------------------------------------------------------

    def install(self, snapshot: ModelSnapshot) -> None:
        """Use ``snapshot`` for assignment from now on (a worker receiving a broadcast does this)."""
        if self.snapshot is None or snapshot.version >= self.snapshot.version:
            self.snapshot = snapshot

    def assign(self, state: CustomerState, vector: list[float], now: float) -> ClusterChange | None:
        """Update the customer's cluster membership; a change when they moved."""
        snap = self.snapshot
        if snap is None:
            return None
        d = snap.distances(vector)
        distances = dict(zip(snap.segment_ids, d.tolist()))
        previous = state.cluster
        if state.cluster in distances:
            self.signals.extend(self.drift.observe_distance(distances[state.cluster]))
        move = decide(state, distances, now, self.config.margin, self.dwell_s)
        if move is None:
            return None
        self.counters.record(move)
        return ClusterChange(
            move=move, model_version=snap.version, label=snap.label(move.new),
            previous_label=snap.label(previous) if previous else None,
            distances={k: round(v, 4) for k, v in distances.items()},
            drivers=self._drivers(snap, vector, previous, move.new),
        )

    @staticmethod
    def _drivers(snap: ModelSnapshot, vector: list[float], previous: str | None, new: str,
                 top: int = 3) -> list[dict[str, Any]]:
        """Features that pull the customer toward the new segment and away from the old one."""
        z = snap.standardise(vector)
        c_new = snap.centroids[snap.index(new)]
        if previous is None or snap.index(previous) is None:
            # What sets the segment apart (centroid far from average) that the customer shares;
            # a feature on which everyone is alike explains nothing.
            gain = np.abs(c_new) - np.abs(z - c_new)
        else:
            c_old = snap.centroids[snap.index(previous)]
            gain = (z - c_old) ** 2 - (z - c_new) ** 2
        order = [i for i in np.argsort(-gain)[:top] if math.isfinite(gain[i])]
        # Only features that speak for the new segment (the best one even if none does).
        order = [i for n, i in enumerate(order) if n == 0 or gain[i] > 0]
        return [{"feature": FEATURES[i], "value": round(float(vector[i]), 4), "z": round(float(z[i]), 3),
                 "segment_centroid_z": round(float(c_new[i]), 3)} for i in order]


def _finite_or_none(value: float) -> float | None:
    return round(float(value), 4) if value is not None and math.isfinite(value) else None


def _unique_labels(labels: list[str], ids: list[str]) -> list[str]:
    seen = Counter(labels)
    return [f"{lab} ({sid})" if seen[lab] > 1 else lab for lab, sid in zip(labels, ids)]
