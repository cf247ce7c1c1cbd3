"""The segmenter: trains the online model on customers, snapshots it, and assigns with hysteresis.

Training and assignment are separate on purpose. :meth:`Segmenter.train` (one place: the replay,
or the single trainer of a worker group) learns from the customer sample and publishes a
versioned :class:`~models.snapshot.ModelSnapshot`. :meth:`Segmenter.assign` only needs a snapshot,
so every worker that installed the same version assigns the same way, cheaply (numpy, no river).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.clustering import CustomerSample, OnlineClusterer, Scaler, lloyd, unexplained_variance
from models.config import SegmentationConfig, ValueConfig
from models.drift import DriftMonitor, DriftSignal, SnapshotDrift
from models.features import FEATURES, FeatureBasis, matrix_at, profiles_at
from models.rules import PopulationQuantiles, RuleSet
from models.valuation import Valuation
from models.membership import ClusterMove, decide
from models.segments import Matching, SegmentRegistry, describe
from models.snapshot import ModelSnapshot
from models.state import SECONDS_PER_DAY, CustomerState

__all__ = ["Adoption", "ClusterChange", "MembershipCounters", "Segmenter"]

_VALUE, _SAT = FEATURES.index("value"), FEATURES.index("satisfaction")


@dataclass(frozen=True, slots=True)
class Adoption:
    """How a training's candidate model was judged against the model in force.

    ``unexplained`` is the candidate's within / total sum of squares on the sample
    (:func:`models.clustering.unexplained_variance`), ``gain`` its relative reduction against the
    model in force (``1 - unexplained / unexplained_in_force``), ``moved_share`` the share of sampled
    customers it would move (past the margin, or out of a segment it retires).
    """

    adopted: bool
    rule: str  # first_model | reconfigured | materially_better | overhaul | not_better | moves_too_many
    candidate: str  # retrained (the model in force, trained on) | restart (a k-means++ challenger)
    refit: bool  # the candidate comes with BTYD parameters other than those in force
    unexplained: float
    unexplained_in_force: float | None
    gain: float
    moved_share: float

    def to_dict(self) -> dict[str, Any]:
        return {"adopted": self.adopted, "rule": self.rule, "candidate": self.candidate, "refit": self.refit,
                "unexplained": round(self.unexplained, 5),
                "unexplained_in_force": None if self.unexplained_in_force is None else round(self.unexplained_in_force, 5),
                "gain": round(self.gain, 5), "moved_share": round(self.moved_share, 5)}


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
        self.valuation: Valuation | None = None  # the BTYD parameters of the model in force
        self.last_adoption: Adoption | None = None  # the latest training's verdict, adopted or not
        self.counters = MembershipCounters()
        self.dwell_s = config.dwell_days * SECONDS_PER_DAY
        self._trainings = 0

    # ---- training (one trainer) --------------------------------------------------------------

    def observe(self, customer_id: str, basis: FeatureBasis) -> None:
        """Offer a customer's current feature basis to the training sample."""
        self.sample.observe(customer_id, basis)

    def train(self, now: float, valuation: Valuation, value_config: ValueConfig,
              bases: list[FeatureBasis] | None = None) -> ModelSnapshot | None:
        """Learn a candidate model from the customer sample, valued as of ``now`` with ``valuation``
        (a BTYD refit is part of the candidate), and install it as a new snapshot if the adoption
        rule accepts it (see :meth:`_judge`; the verdict is in :attr:`last_adoption` and the
        snapshot's ``adoption``). None when nothing new is published: too few customers, or a
        rejected candidate (the model in force stays, with its valuation; a new version carries only
        changed rule thresholds then, with the same centroids).

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
        z = scaler.transform(matrix)
        candidates = self._candidates(scaler, z)
        self._trainings += 1
        if not candidates:
            return None
        version = (self.snapshot.version if self.snapshot else 0) + 1
        in_force = self._in_force_points(bases, now, valuation, value_config, matrix)
        verdict, centroids, matching = self._judge(candidates, scaler, z, in_force, valuation, version, now)
        self.last_adoption = verdict
        if not verdict.adopted:
            self.signals.extend(new_signals)
            self._keep_in_force()
            return self._republish(now, thresholds, verdict)
        self.scaler = scaler
        self.clusterer.warm_start(centroids)
        self.registry.commit(matching, centroids)
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
            "adoption": verdict.to_dict(),
        })
        self.install(snap, valuation)
        self.drift.reset_distance()  # a new model: distances start afresh
        return snap

    def _candidates(self, scaler: Scaler, z: np.ndarray) -> list[tuple[str, np.ndarray]]:
        """Candidate centroids (standardised with ``scaler``): the model in force trained on
        (river passes, then Lloyd steps), and k-means++ restarts while the model is young and then
        every ``restart_every`` trainings."""
        c = self.config
        if self.scaler is not None:
            self.clusterer.rescale(self.scaler, scaler)
        self.scaler = scaler
        self.clusterer.learn(z, passes=c.train_passes)
        self.clusterer.reseed_empty(z)
        retrained = self.clusterer.centroids()
        if len(retrained) == 0:
            return []
        out = [("retrained", lloyd(z, retrained, c.polish_iterations))]
        due = self._trainings < c.restart_warmup or (c.restart_every and (self._trainings + 1) % c.restart_every == 0)
        if due:
            out += [("restart", r) for r in self.clusterer.challengers(z, c.restart_candidates, c.train_passes,
                                                                        c.polish_iterations)]
        return out

    def _in_force_points(self, bases: list[FeatureBasis], now: float, valuation: Valuation,
                         value_config: ValueConfig, matrix: np.ndarray) -> np.ndarray | None:
        """The sample as the model in force sees it (its valuation, its standardisation); None
        without a model in force."""
        snap = self.snapshot
        if snap is None or len(snap.centroids) == 0:
            return None
        if self.valuation is not None and self.valuation != valuation:
            matrix = matrix_at(bases, now, self.valuation, value_config)
        return snap.standardise(matrix)

    def _judge(self, candidates: list[tuple[str, np.ndarray]], scaler: Scaler, z: np.ndarray,
               in_force: np.ndarray | None, valuation: Valuation, version: int,
               now: float) -> tuple[Adoption, np.ndarray, Matching]:
        """The adoption rule. A candidate replaces the model in force only if it explains the sample
        materially better (``gain >= adopt_min_gain``) **and** would move at most
        ``adopt_max_moved_share`` of the sampled customers; or if it is better by
        ``adopt_overhaul_gain`` (the model in force no longer describes the population). Of the
        acceptable candidates the one with the largest gain wins; else the verdict of the best
        rejected one is returned (reported, not installed). The first model is always adopted."""
        c = self.config
        refit = self.valuation is not None and self.valuation != valuation
        snap = self.snapshot
        if in_force is None or snap is None:
            kind, centroids = min(candidates, key=lambda kc: unexplained_variance(z, kc[1]))
            verdict = Adoption(True, "first_model", kind, refit, unexplained_variance(z, centroids), None, 0.0, 0.0)
            return verdict, centroids, self.registry.match(centroids, version, now)
        if self.registry.ids() != list(snap.segment_ids):
            self.registry.resume(snap.segment_ids, snap.centroids, snap.next_segment_number)
        before = unexplained_variance(in_force, snap.centroids)
        members = np.asarray(snap.segment_ids)[_nearest(in_force, snap.centroids)]
        previous = scaler.transform(snap.mean + snap.centroids * snap.std)  # the model in force, in the new space
        judged = []
        for kind, centroids in candidates:
            matching = self.registry.match(centroids, version, now, previous=previous)
            after = unexplained_variance(z, centroids)
            gain = 1.0 - after / before if before > 0 else 0.0
            moved = _moved_share(members, z, centroids, matching.ids, c.margin)
            if centroids.shape != snap.centroids.shape:
                rule = "reconfigured"  # the operator changed k (or the features): their model
            elif gain >= c.adopt_overhaul_gain:
                rule = "overhaul"
            elif gain < c.adopt_min_gain:
                rule = "not_better"
            elif moved > c.adopt_max_moved_share:
                rule = "moves_too_many"
            else:
                rule = "materially_better"
            verdict = Adoption(rule in ("reconfigured", "overhaul", "materially_better"), rule, kind, refit, after, before, gain, moved)
            judged.append((verdict, centroids, matching))
        return max(judged, key=lambda j: (j[0].adopted, j[0].gain))

    def _keep_in_force(self) -> None:
        """A rejected candidate: the trainer goes on from the model in force, not from the
        candidate, so retraining on unchanged data keeps returning to the same model."""
        snap = self.snapshot
        assert snap is not None
        self.scaler = Scaler(snap.mean, snap.std)
        self.clusterer.warm_start(snap.centroids)

    def _republish(self, now: float, thresholds: dict[str, float], verdict: Adoption) -> ModelSnapshot | None:
        """After a rejected candidate: a new version only if the rule thresholds changed, with the
        model in force unchanged (same centroids, ids, labels, valuation: no cluster change)."""
        snap = self.snapshot
        assert snap is not None
        if thresholds == snap.rule_thresholds:
            return None
        new = dataclasses.replace(snap, version=snap.version + 1, created_at=now, rule_thresholds=thresholds,
                                  lifecycle=(), adoption=verdict.to_dict(),
                                  definition_version=self.rules.version if self.rules else None)
        self.install(new, self.valuation)
        return new

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

    def _rule_thresholds(self, bases: list[FeatureBasis], matrix: np.ndarray, order: np.ndarray) -> dict[str, float]:
        """Population percentiles the rules refer to, from streaming quantiles over the customer sample."""
        if self.rules is None or not self.rules.percentiles_needed():
            return {}
        quantiles = PopulationQuantiles.for_rules(self.rules)
        profiles = profiles_at(bases, matrix)
        for i in order:
            quantiles.learn(profiles[i])
        return quantiles.thresholds()

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

    def install(self, snapshot: ModelSnapshot, valuation: Valuation | None = None) -> None:
        """Use ``snapshot`` for assignment from now on (a worker receiving a broadcast does this),
        with ``valuation`` (default: the snapshot's own BTYD parameters)."""
        if self.snapshot is None or snapshot.version >= self.snapshot.version:
            self.snapshot = snapshot
            if valuation is None and snapshot.valuation:
                valuation = Valuation.from_dict(snapshot.valuation)
            self.valuation = valuation or self.valuation

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


def _nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


def _moved_share(members: np.ndarray, z: np.ndarray, centroids: np.ndarray, ids: list[str], margin: float) -> float:
    """Share of customers a candidate would move: those whose segment (``members``, their
    segment under the model in force) it retires, and those it puts closer to another segment by
    the hysteresis margin (they move once the dwell has passed)."""
    d = np.sqrt(((z[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2))
    position = {sid: j for j, sid in enumerate(ids)}
    current = np.array([position.get(str(m), -1) for m in members])
    rows = np.arange(len(z))
    best = d.argmin(axis=1)
    d_current = d[rows, np.maximum(current, 0)]
    moved = (current < 0) | ((best != current) & (d[rows, best] < (1.0 - margin) * d_current))
    return float(moved.mean()) if len(moved) else 0.0


def _finite_or_none(value: float) -> float | None:
    return round(float(value), 4) if value is not None and math.isfinite(value) else None


def _unique_labels(labels: list[str], ids: list[str]) -> list[str]:
    seen = Counter(labels)
    return [f"{lab} ({sid})" if seen[lab] > 1 else lab for lab, sid in zip(labels, ids)]
