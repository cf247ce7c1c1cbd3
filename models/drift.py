"""Drift monitoring of the online customer segmentation.

Three views of "the segmentation no longer describes the customers":

* **feature drift**: one detector per standardised feature, fed with the customer-weighted
  training samples (each sampled customer's current vector, not one value per event). ADWIN by
  default; Page-Hinkley on request. Both watch the *mean* of a feature: a change of spread or
  shape with the same mean is not seen.
* **fit drift**: a one-sided (``mode="up"``) Page-Hinkley test on each assigned customer's
  distance to its centroid. Rising distances mean the centroids no longer sit where the
  customers are.
* **snapshot drift**: when a re-trained model is published, how far each matched centroid moved
  (L2 in standardised space) and how much the segment population shares changed (total
  variation distance).

The detectors are river's (:class:`river.drift.ADWIN`, :class:`river.drift.PageHinkley`). Their
state is not persisted: they restart with the worker, and :meth:`DriftMonitor.reset` restarts
them on demand.

Feed the detectors in a random order. ADWIN and Page-Hinkley test for a change *in time*, so
iterating a training sample sorted by anything correlated with a feature (customer id assigned at
sign-up, insertion order, segment) looks like drift on every pass.

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> monitor = DriftMonitor(("value", "recency"))
>>> fired = []
>>> for i in range(4000):
...     x = rng.standard_normal(2)
...     if i >= 2000:
...         x[1] += 1.5                     # recency moves by 1.5 std
...     fired += monitor.observe_features(x)
>>> [(s.kind, s.feature) for s in fired]
[('feature', 'recency')]
>>> 2000 <= fired[0].sample_index <= 2100
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Union

import numpy as np
from river import drift

from models.river_fixups import ph_statistic
from schemas.errors import ConfigurationError, ContractError

__all__ = ["DriftSignal", "SnapshotDrift", "DriftMonitor", "total_variation_distance"]

SignalKind = Literal["feature", "distance", "centroid_shift", "population_share"]
Vector = Union[Sequence[float], np.ndarray]

# Keys of ``DriftMonitor.detections`` besides the feature names; a feature may not use them.
RESERVED_KEYS = ("distance", "centroid_shift", "population_share")


@dataclass(frozen=True, slots=True)
class DriftSignal:
    """One detection.

    Parameters
    ----------
    kind
        ``"feature"``, ``"distance"``, ``"centroid_shift"`` or ``"population_share"``.
    feature
        The feature name (``"feature"``), the segment id that moved most (``"centroid_shift"``),
        else None.
    value
        The statistic: the recent window mean (ADWIN), the Page-Hinkley statistic in
        warm-up standard deviations, the largest centroid shift, or the share TVD.
    detail
        One human-readable line.
    sample_index
        Observations so far when it fired: feature vectors for ``"feature"`` and the snapshot
        kinds, distances for ``"distance"``.

    Examples
    --------
    >>> DriftSignal("population_share", None, 0.2, "share TVD 0.200 > 0.1", 5000).value
    0.2
    """

    kind: SignalKind
    feature: str | None
    value: float
    detail: str
    sample_index: int


@dataclass(frozen=True, slots=True)
class SnapshotDrift:
    """How a newly published segmentation differs from the previous one.

    Parameters
    ----------
    centroid_shift
        L2 distance (standard deviations) each matched centroid moved, keyed by its NEW id.
    max_centroid_shift
        The largest of those; nan when no segment is matched.
    share_tvd
        Total variation distance between the two population-share distributions, in [0, 1].
        A retired segment counts with a new share of 0, a born one with a previous share of 0.
    born
        New segment ids with no previous counterpart.
    retired
        Previous segment ids with no new counterpart.
    signals
        The signals raised (only for statistics above their thresholds).

    Examples
    --------
    >>> SnapshotDrift({"a": 0.1}, 0.1, 0.0, (), (), ()).max_centroid_shift
    0.1
    """

    centroid_shift: dict[str, float]
    max_centroid_shift: float
    share_tvd: float
    born: tuple[str, ...]
    retired: tuple[str, ...]
    signals: tuple[DriftSignal, ...]


def total_variation_distance(p: Mapping[Any, float], q: Mapping[Any, float]) -> float:
    """Half the L1 distance between two discrete distributions, each normalised to sum 1.

    Keys missing from one side have probability 0 there.

    Parameters
    ----------
    p, q
        Non-negative finite weights with a positive total.

    Examples
    --------
    >>> total_variation_distance({"a": 0.5, "b": 0.5}, {"a": 0.7, "b": 0.3})
    0.2
    >>> total_variation_distance({"a": 1.0}, {"b": 2.0})
    1.0
    """
    p_total, q_total = _total("previous_shares", p), _total("new_shares", q)
    diff = sum(abs(p.get(k, 0.0) / p_total - q.get(k, 0.0) / q_total) for k in p.keys() | q.keys())
    return round(0.5 * diff, 12)  # so that exact inputs give exact-looking outputs


def _total(name: str, shares: Mapping[object, float]) -> float:
    # Shares come from decayed counts, so they sum to 1 only approximately; normalising makes the
    # TVD a true distance in [0, 1]. Negative or non-finite shares are bugs upstream.
    total = 0.0
    for key, share in shares.items():
        if not (math.isfinite(share) and share >= 0):
            raise ContractError(f"{name}[{key!r}] must be finite and >= 0, got {share!r}")
        total += share
    if total <= 0:
        raise ContractError(f"{name} must have a positive total, got {total!r}")
    return total


def _scales(rows: Sequence[Sequence[float]] | Sequence[float]) -> np.ndarray:
    # Standard deviation of the warm-up sample; a constant stream gets scale 1 so that a later
    # jump is measured in raw units instead of dividing by zero.
    std = np.atleast_1d(np.std(np.asarray(rows, dtype=float), axis=0, ddof=1))
    return np.where(std > 1e-12, std, 1.0)


class DriftMonitor:
    """Drift detectors over the customer-weighted training samples of the segmentation.

    Parameters
    ----------
    feature_names
        The ``d`` standardised features, in vector order (e.g. ``models.features.FEATURES``).
    feature_detector
        ``"adwin"`` (default) or ``"page_hinkley"``, one detector per feature. ADWIN is
        scale-free and needs no tuning; Page-Hinkley reacts a little faster to large shifts.
    adwin_delta
        ADWIN significance. Smaller means fewer false alarms and slower detection.
    adwin_clock
        ADWIN tests for a cut every this many samples (river's default 32): detections land on
        multiples of it, and it is what keeps ADWIN cheap.
    ph_delta
        Page-Hinkley tolerance, in warm-up standard deviations: mean changes smaller than this
        are allowed to accumulate slowly or not at all (CUSUM's ``k``; ~ half the smallest
        shift worth detecting).
    ph_threshold
        Page-Hinkley alarm level (CUSUM's ``h``), in warm-up standard deviations. With
        ``ph_delta=0.25`` and ``25`` no false alarm was seen in 800k stationary Gaussian samples,
        and a 1.5 std shift is caught within ~25 samples.
    ph_alpha
        Page-Hinkley forgetting factor on the cumulative sums. 1 (no forgetting) on purpose:
        river's default 0.9999 pulls the sums toward ``-delta / (1 - alpha)``, after which the
        statistic "current - all-time minimum" crosses any fixed threshold on stationary data
        roughly every 1 / (1 - alpha) samples.
    distance_mode
        Direction watched on the distances. ``"up"`` (default): only a rise means the model
        fits worse; distances fall right after a re-train, and that must not alarm.
    grace_samples
        Warm-up per stream (features; distances since the last :meth:`reset_distance`): no
        signal before this many observations. Page-Hinkley streams use the warm-up to estimate
        their scale (standard deviation) and start testing after it. Below 2, Page-Hinkley
        inputs are taken as already standardised.
    centroid_shift_threshold
        Signal when a matched centroid moved further than this (std units) between snapshots.
        Segment matching upstream keeps an id for moves up to ``match_threshold`` (1.5), so this
        must be smaller to mean anything.
    share_shift_threshold
        Signal when the segment shares' total variation distance exceeds this.

    Attributes
    ----------
    detections
        Signals raised so far, keyed by feature name, ``"distance"``, ``"centroid_shift"`` and
        ``"population_share"`` (all present, starting at 0).
    samples_seen
        Feature vectors observed.
    distances_seen
        Distances observed.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> monitor = DriftMonitor(("value", "recency"))
    >>> d = np.sqrt(rng.chisquare(2, 3000))
    >>> d[2000:] *= 1.5                         # customers now sit further from their centroids
    >>> fired = [s for x in d for s in monitor.observe_distance(x)]
    >>> [s.kind for s in fired], 2000 <= fired[0].sample_index <= 2100
    (['distance'], True)
    >>> monitor.detections["distance"], monitor.distances_seen
    (1, 3000)
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        *,
        feature_detector: Literal["adwin", "page_hinkley"] = "adwin",
        adwin_delta: float = 0.002,
        adwin_clock: int = 32,
        ph_delta: float = 0.25,
        ph_threshold: float = 25.0,
        ph_alpha: float = 1.0,
        distance_mode: Literal["up", "both"] = "up",
        grace_samples: int = 500,
        centroid_shift_threshold: float = 0.5,
        share_shift_threshold: float = 0.1,
    ):
        names = tuple(feature_names)
        if not names:
            raise ConfigurationError("feature_names must not be empty")
        if len(set(names)) != len(names):
            raise ConfigurationError(f"feature_names must be unique, got {names}")
        if clash := set(names) & set(RESERVED_KEYS):
            raise ConfigurationError(f"feature names {sorted(clash)} are reserved for other detections")
        if feature_detector not in ("adwin", "page_hinkley"):
            raise ConfigurationError(f"feature_detector must be 'adwin' or 'page_hinkley', got {feature_detector!r}")
        if distance_mode not in ("up", "both"):
            raise ConfigurationError(f"distance_mode must be 'up' or 'both', got {distance_mode!r}")
        if not 0 < adwin_delta < 1:
            raise ConfigurationError(f"adwin_delta must be in (0, 1), got {adwin_delta}")
        if adwin_clock < 1 or grace_samples < 0:
            raise ConfigurationError("adwin_clock must be >= 1 and grace_samples >= 0")
        if ph_delta < 0 or ph_threshold <= 0 or not 0 < ph_alpha <= 1:
            raise ConfigurationError("need ph_delta >= 0, ph_threshold > 0 and 0 < ph_alpha <= 1")
        if centroid_shift_threshold < 0 or not 0 <= share_shift_threshold <= 1:
            raise ConfigurationError("need centroid_shift_threshold >= 0 and share_shift_threshold in [0, 1]")
        self.feature_names = names
        self.feature_detector = feature_detector
        self.adwin_delta = adwin_delta
        self.adwin_clock = adwin_clock
        self.ph_delta = ph_delta
        self.ph_threshold = ph_threshold
        self.ph_alpha = ph_alpha
        self.distance_mode = distance_mode
        self.grace_samples = grace_samples
        self.centroid_shift_threshold = centroid_shift_threshold
        self.share_shift_threshold = share_shift_threshold
        self.reset()

    # -- lifecycle ---------------------------------------------------------------------------

    def reset(self) -> None:
        """Fresh detectors, warm-ups and counters, as after a worker restart.

        Examples
        --------
        >>> m = DriftMonitor(("a",))
        >>> _ = m.observe_features([0.0]); m.reset(); m.samples_seen
        0
        """
        self.samples_seen = 0
        self.detections: dict[str, int] = dict.fromkeys((*self.feature_names, *RESERVED_KEYS), 0)
        self._detectors = [self._new_feature_detector() for _ in self.feature_names]
        # Page-Hinkley measures in raw units, so its inputs are divided by a warm-up std; ADWIN's
        # bound adapts to the variance itself and is fed from the first sample.
        self._calibrating = self.feature_detector == "page_hinkley" and self.grace_samples >= 2
        self._warmup: list[list[float]] = []
        self._inv_scales: list[float] | None = (
            [1.0] * len(self.feature_names) if self.feature_detector == "page_hinkley" else None
        )
        self.reset_distance()
        self.distances_seen = 0

    def reset_distance(self) -> None:
        """Restart the distance detector and its warm-up (counters are kept).

        Call it when a new model snapshot is published: distances to the new centroids are a
        different stream (usually smaller), and both their scale and their Page-Hinkley
        reference must be re-learnt.

        Examples
        --------
        >>> m = DriftMonitor(("a",), grace_samples=10)
        >>> m.reset_distance(); m.distances_seen
        0
        """
        self._distance_ph = drift.PageHinkley(
            min_instances=30, delta=self.ph_delta, threshold=self.ph_threshold,
            alpha=self.ph_alpha, mode=self.distance_mode,
        )
        self._distance_warmup: list[float] = []
        self._distance_inv_scale = 1.0 if self.grace_samples < 2 else None
        self._distance_since_reset = 0

    def _new_feature_detector(self) -> drift.ADWIN | drift.PageHinkley:
        if self.feature_detector == "adwin":
            return drift.ADWIN(delta=self.adwin_delta, clock=self.adwin_clock)
        return drift.PageHinkley(
            min_instances=30, delta=self.ph_delta, threshold=self.ph_threshold,
            alpha=self.ph_alpha, mode="both",
        )

    # -- per sample --------------------------------------------------------------------------

    def observe_features(self, vector: Vector) -> list[DriftSignal]:
        """Feed one sampled customer's standardised feature vector.

        Parameters
        ----------
        vector
            ``d`` finite floats in ``feature_names`` order.

        Returns
        -------
        list[DriftSignal]
            One ``"feature"`` signal per feature whose detector fired on this sample (usually
            none).

        Examples
        --------
        >>> m = DriftMonitor(("value", "recency"))
        >>> m.observe_features([0.1, -0.3]), m.samples_seen
        ([], 1)
        """
        if isinstance(vector, np.ndarray):
            if vector.ndim != 1:
                raise ContractError(f"vector must be 1-D, got shape {vector.shape}")
            values = vector.tolist()  # Python floats: the detectors are per-scalar calls
        else:
            values = list(vector)
        if len(values) != len(self.feature_names):
            raise ContractError(f"expected {len(self.feature_names)} features, got {len(values)}")
        # One sum instead of d isfinite calls; a NaN would poison the detectors' sums for good.
        if not math.isfinite(sum(values)):
            bad = [n for n, v in zip(self.feature_names, values) if not math.isfinite(v)]
            if bad:
                raise ContractError(f"non-finite feature values: {bad}")

        self.samples_seen += 1
        if self._calibrating:
            self._warmup.append(values)
            if len(self._warmup) >= self.grace_samples:
                self._inv_scales = (1.0 / _scales(self._warmup)).tolist()
                self._warmup, self._calibrating = [], False
            return []

        signals: list[DriftSignal] = []
        in_grace = self.samples_seen <= self.grace_samples
        if self._inv_scales is None:  # ADWIN: the hot path, no scaling
            for i, (detector, x) in enumerate(zip(self._detectors, values)):
                detector.update(x)
                if detector.drift_detected and not in_grace:
                    signals.append(self._feature_signal(i))
        else:
            for i, (detector, x, inv) in enumerate(zip(self._detectors, values, self._inv_scales)):
                detector.update(x * inv)
                if detector.drift_detected and not in_grace:
                    signals.append(self._feature_signal(i))
        return signals

    def _feature_signal(self, i: int) -> DriftSignal:
        name, detector = self.feature_names[i], self._detectors[i]
        self.detections[name] += 1
        if isinstance(detector, drift.ADWIN):
            # Right after a cut ADWIN still holds the recent sub-window (the next update() wipes
            # it), so its mean is the best cheap estimate of the feature's new level.
            value = float(detector.estimation)
            detail = (f"feature {name!r}: mean changed (ADWIN delta={self.adwin_delta}), "
                      f"recent mean {value:+.3f} over {int(detector.width)} samples")
        else:
            value = ph_statistic(detector)
            detail = (f"feature {name!r}: mean changed, Page-Hinkley statistic {value:.1f} > "
                      f"{self.ph_threshold} (warm-up std units)")
        return DriftSignal("feature", name, value, detail, self.samples_seen)

    def observe_distance(self, distance: float) -> list[DriftSignal]:
        """Feed one assigned customer's distance to its segment centroid.

        Parameters
        ----------
        distance
            Finite, non-negative, in standardised units.

        Returns
        -------
        list[DriftSignal]
            ``[DriftSignal("distance", ...)]`` when the distances rose significantly, else ``[]``.

        Examples
        --------
        >>> m = DriftMonitor(("a",))
        >>> m.observe_distance(1.2)
        []
        """
        d = float(distance)
        if not (math.isfinite(d) and d >= 0):
            raise ContractError(f"distance must be finite and >= 0, got {distance!r}")
        self.distances_seen += 1
        self._distance_since_reset += 1
        if self._distance_inv_scale is None:
            self._distance_warmup.append(d)
            if len(self._distance_warmup) >= self.grace_samples:
                self._distance_inv_scale = float(1.0 / _scales(self._distance_warmup)[0])
                self._distance_warmup = []
            return []
        self._distance_ph.update(d * self._distance_inv_scale)
        if not self._distance_ph.drift_detected or self._distance_since_reset <= self.grace_samples:
            return []
        self.detections["distance"] += 1
        value = ph_statistic(self._distance_ph)
        direction = "rising" if self.distance_mode == "up" else "changed"
        return [DriftSignal(
            "distance", None, value,
            f"distance to centroid {direction}: Page-Hinkley statistic {value:.1f} > "
            f"{self.ph_threshold} (warm-up std {1.0 / self._distance_inv_scale:.3f})",
            self.distances_seen,
        )]

    # -- per snapshot ------------------------------------------------------------------------

    def compare_snapshots(
        self,
        previous_centroids: Mapping[str, Vector],
        new_centroids: Mapping[str, Vector],
        previous_shares: Mapping[str, float],
        new_shares: Mapping[str, float],
        matched: Mapping[str, str] | None = None,
    ) -> SnapshotDrift:
        """Compare a newly published segmentation with the previous one.

        Parameters
        ----------
        previous_centroids, new_centroids
            Segment id -> centroid (``d`` standardised coordinates).
        previous_shares, new_shares
            Segment id -> population share (normalised here; a missing id has share 0).
        matched
            Previous id -> new id, one-to-one. Default: a segment keeps its id, so ids present
            in both snapshots are matched and the others are retired / born.

        Returns
        -------
        SnapshotDrift
            The numbers (always) and the signals (only above the thresholds).

        Examples
        --------
        >>> import numpy as np
        >>> m = DriftMonitor(("value", "recency"))
        >>> prev = {"a": np.array([0.0, 0.0]), "b": np.array([1.0, 1.0])}
        >>> new = {"a": np.array([0.6, 0.8]), "b": np.array([1.0, 1.1])}
        >>> r = m.compare_snapshots(prev, new, {"a": 0.5, "b": 0.5}, {"a": 0.55, "b": 0.45})
        >>> r.centroid_shift["a"], r.share_tvd, [s.kind for s in r.signals]
        (1.0, 0.05, ['centroid_shift'])
        """
        d = len(self.feature_names)
        prev_c = {k: _centroid(f"previous_centroids[{k!r}]", v, d) for k, v in previous_centroids.items()}
        new_c = {k: _centroid(f"new_centroids[{k!r}]", v, d) for k, v in new_centroids.items()}
        prev_ids = prev_c.keys() | previous_shares.keys()
        new_ids = new_c.keys() | new_shares.keys()
        if matched is None:
            pairs = {k: k for k in prev_ids & new_ids}
        else:
            pairs = dict(matched)
            if unknown := [k for k in pairs if k not in prev_ids]:
                raise ContractError(f"matched refers to unknown previous segments {sorted(unknown)}")
            if unknown := [v for v in pairs.values() if v not in new_ids]:
                raise ContractError(f"matched refers to unknown new segments {sorted(unknown)}")
            if len(set(pairs.values())) != len(pairs):
                raise ContractError("matched must be one-to-one (two previous segments map to one new)")

        shift: dict[str, float] = {}
        for old, new in pairs.items():
            if old in prev_c and new in new_c:
                shift[new] = float(np.linalg.norm(new_c[new] - prev_c[old]))
        max_shift = max(shift.values(), default=math.nan)

        # Shares on a common support: previous ids renamed to their match; an unmatched previous
        # id is tagged so that it cannot collide with a new segment that reuses the same string.
        prev_on_new = {(pairs[k] if k in pairs else ("retired", k)): s for k, s in previous_shares.items()}
        tvd = total_variation_distance(prev_on_new, dict(new_shares))
        matched_new = set(pairs.values())
        born = tuple(sorted(k for k in new_ids if k not in matched_new))
        retired = tuple(sorted(k for k in prev_ids if k not in pairs))

        signals: list[DriftSignal] = []
        if max_shift > self.centroid_shift_threshold:  # False for nan: nothing matched
            self.detections["centroid_shift"] += 1
            top = max(shift, key=shift.__getitem__)
            moved = sorted((k for k, v in shift.items() if v > self.centroid_shift_threshold),
                           key=shift.__getitem__, reverse=True)
            signals.append(DriftSignal(
                "centroid_shift", top, max_shift,
                f"centroids moved > {self.centroid_shift_threshold} std: "
                + ", ".join(f"{k} {shift[k]:.2f}" for k in moved),
                self.samples_seen,
            ))
        if tvd > self.share_shift_threshold:
            self.detections["population_share"] += 1
            signals.append(DriftSignal(
                "population_share", None, tvd,
                f"segment shares changed: TVD {tvd:.3f} > {self.share_shift_threshold}"
                f" (born {list(born)}, retired {list(retired)})",
                self.samples_seen,
            ))
        return SnapshotDrift(shift, max_shift, tvd, born, retired, tuple(signals))


def _centroid(name: str, value: Vector, d: int) -> np.ndarray:
    c = np.asarray(value, dtype=float)
    if c.shape != (d,):
        raise ContractError(f"{name} must have shape ({d},), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ContractError(f"{name} must be finite")
    return c
