"""Online clustering of customers with river, trained on customers rather than events.

river's clusterers learn from one point at a time and cannot retract a point. A customer's
feature vector changes with every event, so learning on every event would let a frequent buyer
drag a centroid around (and river's "time" would run with traffic, not with the clock). Instead:

* :class:`CustomerSample` keeps the *latest* vector of a uniform sample of customers (a bottom-k
  sample on a hash of the customer id: bounded, deterministic, mergeable across workers);
* each training round standardises the sample (:class:`Scaler`, exact mean/std over customers)
  and makes ``passes`` over it in random order, so every sampled customer weighs the same;
* :class:`OnlineClusterer` wraps the river model (``KMeans`` by default, seeded with k-means++ on
  the first sample so no centroid starts dead; ``STREAMKMeans`` and ``DBSTREAM`` configurable) and
  exposes the centroids in standardised space.

>>> sample = CustomerSample(capacity=3)
>>> for i in range(10):
...     sample.observe(f"c{i}", [float(i), 1.0])
>>> len(sample), len(sample.values())
(3, 3)
"""

from __future__ import annotations

import hashlib
import heapq
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from river import cluster

from models.config import SegmentationConfig

__all__ = ["CustomerSample", "OnlineClusterer", "SampleFigures", "Scaler", "customer_hash", "fill_missing",
           "impute_missing", "in_sample", "kmeans_plus_plus", "lloyd", "population_estimate", "unexplained_variance", "within_segment_objective",
           "within_segment_partition", "within_segment_unexplained"]

T = TypeVar("T")


def customer_hash(customer_id: str) -> int:
    """Stable 64-bit hash deciding sample membership (the same on every worker and the trainer)."""
    return int.from_bytes(hashlib.blake2b(customer_id.encode(), digest_size=8).digest(), "little")


def in_sample(customer_id: str, threshold: int | None) -> bool:
    """Whether a customer can be in a bottom-k sample whose largest kept hash is ``threshold``
    (None: the sample is not full, everyone can)."""
    return threshold is None or customer_hash(customer_id) <= threshold


def population_estimate(kept: int, threshold: int | None) -> int:
    """Distinct customers behind a bottom-k sample of ``kept`` customers whose largest kept hash is
    ``threshold``: exact (``kept``) while the sample is not full (None), else the KMV estimate
    (k-1) * 2^64 / k-th smallest hash."""
    if threshold is None:
        return kept
    return round((kept - 1) * 2.0**64 / max(threshold, 1))


class CustomerSample(Generic[T]):
    """The latest item (a feature basis) of up to ``capacity`` customers: those with the smallest
    id hashes. Every customer has the same chance to be in it, however often they buy."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self._vectors: dict[str, T] = {}
        self._heap: list[tuple[int, str]] = []  # (-hash, id): max-heap of the kept hashes
        self.customers_offered = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def __contains__(self, customer_id: str) -> bool:
        return customer_id in self._vectors

    def observe(self, customer_id: str, vector: T) -> None:
        if customer_id in self._vectors:
            self._vectors[customer_id] = vector
            return
        self.customers_offered += 1
        h = customer_hash(customer_id)
        if len(self._vectors) < self.capacity:
            heapq.heappush(self._heap, (-h, customer_id))
            self._vectors[customer_id] = vector
        elif h < -self._heap[0][0]:
            _, evicted = heapq.heapreplace(self._heap, (-h, customer_id))
            del self._vectors[evicted]
            self._vectors[customer_id] = vector

    def forget(self, customer_id: str) -> None:
        """Erasure: drop the customer (the heap entry is skipped lazily)."""
        if self._vectors.pop(customer_id, None) is not None:
            self._heap = [(h, c) for h, c in self._heap if c != customer_id]
            heapq.heapify(self._heap)

    def get(self, customer_id: str) -> T | None:
        return self._vectors.get(customer_id)

    def population_estimate(self) -> int:
        """Distinct customers offered so far (see :func:`population_estimate`)."""
        return population_estimate(len(self._vectors), self.threshold())

    def threshold(self) -> int | None:
        """The largest kept hash once the sample is full (None before): customers above it are
        never kept, so workers need not send them."""
        return -self._heap[0][0] if len(self._vectors) >= self.capacity and self._heap else None

    def figures(self) -> "SampleFigures":
        """What a training reads of the sample besides its vectors, frozen now."""
        return SampleFigures(self.population_estimate(), self.threshold())

    def ids(self) -> list[str]:
        return list(self._vectors)

    def values(self) -> list[T]:
        return list(self._vectors.values())


@dataclass(frozen=True)
class SampleFigures:
    """A sample's figures without its vectors: what a model trained elsewhere carries along."""

    population: int
    largest_kept: int | None

    def population_estimate(self) -> int:
        return self.population

    def threshold(self) -> int | None:
        return self.largest_kept


@dataclass(frozen=True)
class Scaler:
    """Standardisation fitted on the customer sample (not on events)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, matrix: np.ndarray, segments: np.ndarray | None = None, floor: float = 0.1) -> "Scaler":
        """Centre on the sample mean and divide by each feature's standard deviation over the
        sample (``segments`` None), or by its **pooled within-segment** standard deviation given
        each row's segment (``segments``: one integer per row), at least ``floor`` times the
        population's.

        Dividing by the population's standard deviation ("autoscaling") gives every feature the
        same weight, however much of its spread lies *inside* the segments: a feature that is noise
        within each segment (days since the last purchase of a regular buyer, a rare count such as
        complaints that only some members of one segment have) weighs as much as one that tells
        segments apart, and its within-segment spread pulls members of a segment towards its
        neighbours. Scaling by the pooled within-cluster spread (estimated from a clustering, so
        without knowing the true groups) is the remedy of Art, Gnanadesikan & Kettenring (1982),
        "Data-based metrics for cluster analysis", Utilitas Mathematica 21A, 75-99, and
        Gnanadesikan, Kettenring & Tsao (1995), "Weighting and selection of variables for cluster
        analysis", Journal of Classification 12, 113-136; it is the diagonal of the within-class
        metric of discriminant analysis. ``floor`` bounds the weight of a feature that is (nearly)
        constant inside every segment (a placeholder shared by all never-buyers).

        >>> m = np.array([[0.0, 0.0], [0.2, 4.0], [10.0, 0.0], [10.2, 4.0]])
        >>> Scaler.fit(m).std.round(2).tolist()
        [5.0, 2.0]
        >>> Scaler.fit(m, np.array([0, 0, 1, 1])).std.round(2).tolist()   # feature 0 separates, 1 is noise
        [0.5, 2.0]

        **Missing values** (NaN: a trait feature whose trait is unknown) are ignored: the mean and
        the standard deviations are over the customers who have the feature (nan-aware), and
        :meth:`transform` imputes the standardised value 0, the mean, so a customer whose trait is
        unknown is pulled toward no segment by it. A matrix without NaN takes exactly the
        arithmetic it always took.

        >>> m = np.array([[0.0, 1.0], [0.2, 3.0], [10.0, np.nan], [10.2, np.nan]])
        >>> s = Scaler.fit(m)
        >>> s.mean.round(2).tolist(), s.std.round(2).tolist(), s.transform(m)[:, 1].tolist()
        ([5.1, 2.0], [5.0, 1.0], [-1.0, 1.0, 0.0, 0.0])
        """
        if np.isnan(matrix).any():
            return cls._fit_missing(matrix, segments, floor)
        std = matrix.std(axis=0)
        std = np.where(std > 1e-9, std, 1.0)
        if segments is None or len(segments) != len(matrix) or len(matrix) == 0:
            return cls(matrix.mean(axis=0), std)
        within = np.zeros(matrix.shape[1])
        for j in np.unique(segments):
            rows = matrix[segments == j]
            within += ((rows - rows.mean(axis=0)) ** 2).sum(axis=0)
        within = np.sqrt(within / len(matrix))
        return cls(matrix.mean(axis=0), np.maximum(within, floor * std))

    @classmethod
    def _fit_missing(cls, matrix: np.ndarray, segments: np.ndarray | None, floor: float) -> "Scaler":
        """:meth:`fit` over the known values of each feature (a feature nobody has: mean 0, std 1)."""
        known = ~np.isnan(matrix)
        count = known.sum(axis=0)
        filled = np.where(known, matrix, 0.0)
        mean = np.divide(filled.sum(axis=0), count, out=np.zeros(matrix.shape[1]), where=count > 0)
        dev = np.where(known, matrix - mean, 0.0)
        std = np.sqrt(np.divide((dev ** 2).sum(axis=0), count, out=np.zeros(matrix.shape[1]), where=count > 0))
        std = np.where(std > 1e-9, std, 1.0)
        if segments is None or len(segments) != len(matrix) or len(matrix) == 0:
            return cls(mean, std)
        within = np.zeros(matrix.shape[1])
        for j in np.unique(segments):
            rows, have = filled[segments == j], known[segments == j]
            n = have.sum(axis=0)
            seg_mean = np.divide(rows.sum(axis=0), n, out=np.zeros(matrix.shape[1]), where=n > 0)
            within += (np.where(have, rows - seg_mean, 0.0) ** 2).sum(axis=0)
        within = np.sqrt(np.divide(within, count, out=np.zeros(matrix.shape[1]), where=count > 0))
        return cls(mean, np.maximum(within, floor * std))

    def transform(self, x: np.ndarray) -> np.ndarray:
        """Standardise ``x``; a missing value (NaN) becomes 0, the mean (see :meth:`fit`)."""
        return impute_missing((x - self.mean) / self.std)

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return z * self.std + self.mean


def impute_missing(z: np.ndarray) -> np.ndarray:
    """Standardised values with each missing one (NaN) set to 0, the population mean: an unknown
    trait pulls a customer toward no segment. ``z`` itself (unchanged) when nothing is missing."""
    missing = np.isnan(z)
    return np.where(missing, 0.0, z) if missing.any() else z


def fill_missing(matrix: np.ndarray) -> np.ndarray:
    """Raw features with each missing value (NaN) set to its column's mean over the known values
    (0 for a column nobody has): what the partition criteria (:func:`within_segment_objective`,
    :func:`within_segment_partition`) and the drift detectors read, which take complete rows.
    ``matrix`` itself when nothing is missing."""
    missing = np.isnan(matrix)
    if not missing.any():
        return matrix
    known = (~missing).sum(axis=0)
    mean = np.divide(np.where(missing, 0.0, matrix).sum(axis=0), known, out=np.zeros(matrix.shape[1]),
                     where=known > 0)
    return np.where(missing, mean, matrix)


def kmeans_plus_plus(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++ seeding (as scikit-learn does): each new centre is the best of
    ``2 + log k`` candidates drawn proportionally to the squared distance to the chosen ones."""
    trials = 2 + int(np.log(k))
    centers = [points[rng.integers(len(points))]]
    d2 = ((points - centers[0]) ** 2).sum(axis=1)
    for _ in range(1, k):
        total = d2.sum()
        if total <= 0:
            centers.append(points[rng.integers(len(points))])
            continue
        candidates = rng.choice(len(points), size=trials, p=d2 / total)
        options = [np.minimum(d2, ((points - points[c]) ** 2).sum(axis=1)) for c in candidates]
        best = int(np.argmin([o.sum() for o in options]))
        centers.append(points[candidates[best]])
        d2 = options[best]
    return np.array(centers)


def lloyd(points: np.ndarray, centroids: np.ndarray, iterations: int) -> np.ndarray:
    """Up to ``iterations`` Lloyd steps (assign each point to its nearest centroid, move each
    centroid to the mean of its points) from ``centroids``; stops when no assignment changes.

    ``points`` is n x d, ``centroids`` k x d (same space); a centroid left without points stays
    where it is. Lloyd (1982), "Least squares quantization in PCM". Each step never raises the
    inertia, so from a model's own fixed point it returns that model unchanged.

    >>> pts = np.array([[0.0], [1.0], [9.0], [11.0]])
    >>> lloyd(pts, np.array([[2.0], [8.0]]), iterations=10).ravel().tolist()
    [0.5, 10.0]
    """
    centres = np.array(centroids, dtype=float, copy=True)
    if len(points) == 0 or len(centres) == 0:
        return centres
    labels = None
    for _ in range(iterations):
        new = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)
        if labels is not None and np.array_equal(new, labels):
            break
        labels = new
        for j in range(len(centres)):
            members = points[labels == j]
            if len(members):
                centres[j] = members.mean(axis=0)
    return centres


def unexplained_variance(points: np.ndarray, centroids: np.ndarray) -> float:
    """Within-cluster sum of squares over the total sum of squares of ``points`` (n x d) with each
    point at its nearest of ``centroids`` (k x d): 1 - R² of the clustering, in [0, 1] for k-means
    centroids; scale-free, so models standardised differently compare. inf without centroids.

    >>> pts = np.array([[0.0], [1.0], [9.0], [11.0]])
    >>> round(unexplained_variance(pts, np.array([[0.5], [10.0]])), 4)
    0.027
    """
    if len(centroids) == 0 or len(points) == 0:
        return float("inf")
    within = ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2).min(axis=1).sum()
    total = ((points - points.mean(axis=0)) ** 2).sum()
    return float(within / total) if total > 0 else 0.0


def within_segment_objective(matrix: np.ndarray, segments: np.ndarray, floor: float = 0.1) -> float:
    """How well a partition fits the raw ``matrix`` (n x d) in its **own** within-segment metric
    (:meth:`Scaler.fit` with ``segments``): lower is better; comparable across partitions, unlike
    the inertia, whose metric each partition sets itself.

    It is the classification likelihood criterion of a Gaussian mixture with one *diagonal*
    covariance shared by all segments, ``n log det Σ + Σ_i (x_i - μ_{s_i})ᵀ Σ⁻¹ (x_i - μ_{s_i})``
    (Celeux & Govaert 1995, "Gaussian parsimonious clustering models", Pattern Recognition 28,
    781-793: the diagonal model [λB]; Scott & Symons 1971), per customer, with Σ at its optimum
    for the partition: each feature's pooled within-segment variance ``w_j``, at least ``floor²``
    times the population's ``v_j`` (Σ's floor, :meth:`Scaler.fit`'s). Per feature that is
    ``log(s_j²/v_j) + w_j/s_j²`` with ``s_j² = max(w_j, floor² v_j)``: a feature counts by the log of
    the share of its variance left inside the segments, so the criterion rewards a partition that
    explains *some* features well, not one that spreads a little explanation over all of them.
    Lloyd's k-means in a partition's metric followed by :meth:`Scaler.fit` on the new partition
    never raises it (coordinate descent: assignment given Σ, then Σ given the assignment).

    >>> m = np.array([[0.0, 1.0], [0.3, 5.0], [0.1, 9.0], [10.0, 2.0], [10.2, 6.0], [10.1, 8.0]])
    >>> round(within_segment_objective(m, np.array([0, 0, 0, 1, 1, 1])), 2)   # split on feature 0
    -3.56
    >>> round(within_segment_objective(m, np.array([0, 0, 1, 0, 0, 1])), 2)   # split on the noise in 1
    0.93
    """
    std = matrix.std(axis=0)
    var = np.where(std > 1e-9, std, 1.0) ** 2
    within = np.zeros(matrix.shape[1])
    for j in np.unique(segments):
        rows = matrix[segments == j]
        within += ((rows - rows.mean(axis=0)) ** 2).sum(axis=0)
    within /= max(len(matrix), 1)
    s2 = np.maximum(within, floor ** 2 * var)
    return float((np.log(s2 / var) + within / s2).sum())


def within_segment_unexplained(matrix: np.ndarray, segments: np.ndarray, floor: float = 0.1) -> float:
    """The share of variance a partition leaves inside its segments, as a geometric mean over the
    features: ``exp(within_segment_objective / d - 1)``, i.e. ``(Π_j w_j / v_j)^(1/d)`` for
    features above the floor (``w_j`` the pooled within-segment variance, ``v_j`` the
    population's), at most 1 and lower for a better partition. It depends on the partition and
    the raw ``matrix`` only, not on any metric, so partitions made in different metrics (the
    model in force and a candidate under ``standardise = within_segments``) compare on it: the
    adoption rule's ``unexplained`` there (:meth:`models.segmentation.Segmenter._judge`).

    >>> m = np.array([[0.0, 1.0], [0.3, 5.0], [0.1, 9.0], [10.0, 2.0], [10.2, 6.0], [10.1, 8.0]])
    >>> round(within_segment_unexplained(m, np.array([0, 0, 0, 1, 1, 1])), 3)   # split on feature 0
    0.062
    >>> round(within_segment_unexplained(m, np.zeros(6, dtype=int)), 3)   # one segment explains nothing
    1.0
    """
    d = matrix.shape[1] if matrix.ndim == 2 else 1
    return float(np.exp(within_segment_objective(matrix, segments, floor) / max(d, 1) - 1.0))


def within_segment_partition(matrix: np.ndarray, k: int, rng: np.random.Generator, starts: int = 10,
                             floor: float = 0.1, rounds: int = 20,
                             polish: int = 20) -> tuple[np.ndarray, Scaler, np.ndarray]:
    """A k-segment partition of the raw ``matrix`` (n x d) in its own within-segment metric, with
    no model to take the metric from (the first model under ``standardise = within_segments``).

    From each of ``starts`` k-means++ seedings (in population standard units) the metric and the
    partition are iterated to a fixed point: Lloyd steps (up to ``polish``) in the metric of the
    latest partition, then :meth:`Scaler.fit` on the partition they reach, up to ``rounds`` times
    or until the partition stops changing. The metric reinforces the partition it comes from (a
    feature the partition leaves noisy weighs less), so different starts end in different fixed
    points, and their inertias are each in their own metric: the one kept has the lowest
    :func:`within_segment_objective`. Returns its segments (one integer per row, in ``0..k-1``),
    its scaler, and its centroids (k x d, standardised with that scaler).

    >>> rng = np.random.default_rng(0)
    >>> a = np.column_stack([rng.normal(0, 1, 60), rng.normal(0, 10, 60)])
    >>> b = np.column_stack([rng.normal(8, 1, 60), rng.normal(0, 10, 60)])
    >>> seg, scaler, centres = within_segment_partition(np.vstack([a, b]), 2, rng)
    >>> sorted(np.bincount(seg).tolist()), bool((seg[:60] == seg[0]).all())
    ([60, 60], True)
    """
    if len(matrix) < k:
        scaler = Scaler.fit(matrix)
        return np.arange(len(matrix)) % max(k, 1), scaler, scaler.transform(matrix)
    population = Scaler.fit(matrix).transform(matrix)
    best: tuple[float, np.ndarray, Scaler, np.ndarray] | None = None
    for _ in range(max(starts, 1)):
        scaler = Scaler.fit(matrix)
        centres = lloyd(population, kmeans_plus_plus(population, k, rng), polish)
        segments = _nearest(population, centres)
        for _ in range(max(rounds, 1)):
            scaler = Scaler.fit(matrix, segments, floor)
            z = scaler.transform(matrix)
            centres = np.array([z[segments == j].mean(axis=0) if (segments == j).any() else centres[j]
                                for j in range(k)])
            centres = lloyd(z, centres, polish)
            new = _nearest(z, centres)
            if np.array_equal(new, segments):
                break
            segments = new
        score = within_segment_objective(matrix, segments, floor)
        if best is None or score < best[0] - 1e-12:
            best = (score, segments, scaler, centres)
    assert best is not None
    return best[1], best[2], best[3]


def _nearest(points: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    return ((points[:, None, :] - centroids[None, :, :]) ** 2).sum(axis=2).argmin(axis=1)


class OnlineClusterer:
    """A river clusterer over standardised vectors, with centroids as a numpy array."""

    CHALLENGE_SAMPLE = 5000

    def __init__(self, config: SegmentationConfig, dim: int):
        self.config = config
        self.dim = dim
        self.rng = np.random.default_rng(config.seed)
        self.model = self._make_model()
        self._initialised = False

    def _make_model(self):  # noqa: ANN202 - a river clusterer
        c = self.config
        if c.algorithm == "kmeans":
            return cluster.KMeans(n_clusters=c.n_segments, halflife=c.halflife, sigma=1.0, seed=c.seed)
        if c.algorithm == "streamkmeans":
            return cluster.STREAMKMeans(chunk_size=max(200, c.sample_size // 20), n_clusters=c.n_segments,
                                        halflife=c.halflife, sigma=1.0, seed=c.seed)
        return cluster.DBSTREAM(clustering_threshold=c.dbstream_clustering_threshold,
                                fading_factor=c.dbstream_fading_factor, cleanup_interval=2,
                                intersection_factor=0.3, minimum_weight=1.0)

    def learn(self, points: np.ndarray, passes: int = 1) -> None:
        """Learn from standardised points (one per customer), in a random order per pass."""
        if len(points) == 0:
            return
        if not self._initialised and isinstance(self.model, cluster.KMeans):
            seeds = kmeans_plus_plus(points, self.config.n_segments, self.rng)
            for i, center in enumerate(seeds):
                self.model.centers[i].clear()
                self.model.centers[i].update({j: float(v) for j, v in enumerate(center)})
        self._initialised = True
        learn = self.model.learn_one
        for _ in range(passes):
            for idx in self.rng.permutation(len(points)):
                learn(dict(enumerate(points[idx].tolist())))

    def warm_start(self, centroids: np.ndarray) -> None:
        """Start from known centroids (standardised) instead of a k-means++ seeding."""
        if not isinstance(self.model, cluster.KMeans) or len(centroids) != self.config.n_segments:
            return  # other algorithms (or another k) re-learn from the sample
        for i, center in enumerate(centroids):
            self.model.centers[i].clear()
            self.model.centers[i].update({j: float(v) for j, v in enumerate(center)})
        self._initialised = True

    def inertia(self, points: np.ndarray) -> float:
        """Mean squared distance of the points to their nearest centroid."""
        centres = self.centroids()
        if len(centres) == 0 or len(points) == 0:
            return float("inf")
        return float(((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2).min(axis=1).mean())

    def challengers(self, points: np.ndarray, candidates: int, passes: int, polish: int) -> list[np.ndarray]:
        """Centroids of ``candidates`` freshly k-means++-seeded models, each trained like this one
        (``passes`` over a subsample, then ``polish`` Lloyd steps on all ``points``).

        Online k-means only ever moves centroids locally, so a bad start (or a population that
        changed shape) can leave it in a poor local optimum for good; batch k-means guards against
        that with restarts (scikit-learn's n_init). The caller decides whether one replaces the
        model in force (:meth:`models.segmentation.Segmenter.train`: the adoption rule).
        """
        if not isinstance(self.model, cluster.KMeans) or len(points) < 2 * self.config.n_segments:
            return []
        # Challengers learn from a subsample (bounded cost) and are polished on the whole sample.
        train_on = points[self.rng.permutation(len(points))[: self.CHALLENGE_SAMPLE]]
        out = []
        for _ in range(candidates):
            rival = OnlineClusterer(self.config.model_copy(update={"seed": int(self.rng.integers(1 << 31))}), self.dim)
            rival.learn(train_on, passes=passes)
            rival.reseed_empty(train_on)
            out.append(lloyd(points, rival.centroids(), polish))
        return out

    def reseed_empty(self, points: np.ndarray, min_share: float = 0.002) -> list[int]:
        """Move centroids that (almost) no customer is closest to onto the worst-served customers.

        An online k-means centroid stranded where customers used to be never recovers on its own
        (mini-batch k-means reassigns such centres too). Returns the indices moved: each becomes
        a new segment identity, recorded as born/retired by the registry.
        """
        if not isinstance(self.model, cluster.KMeans) or not self._initialised or len(points) == 0:
            return []
        centres = self.centroids()
        d2 = ((points[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
        counts = np.bincount(d2.argmin(axis=1), minlength=len(centres))
        moved = [int(i) for i in np.flatnonzero(counts < max(1, min_share * len(points)))]
        if not moved:
            return []
        nearest = d2.min(axis=1)
        for i in moved:
            idx = int(self.rng.choice(len(points), p=nearest / nearest.sum())) if nearest.sum() > 0 else 0
            self.model.centers[i].clear()
            self.model.centers[i].update({j: float(v) for j, v in enumerate(points[idx])})
            nearest = np.minimum(nearest, ((points - points[idx]) ** 2).sum(axis=1))
        # One more pass lets the re-seeded centres settle among their new members.
        self.learn(points, passes=1)
        return moved

    def rescale(self, old: Scaler, new: Scaler) -> None:
        """Keep centroids where they are in raw space when the standardisation changes."""
        if not isinstance(self.model, (cluster.KMeans,)) or not self._initialised:
            return
        for center in self.model.centers.values():
            z = np.array([center.get(j, 0.0) for j in range(self.dim)])
            moved = new.transform(old.inverse(z))
            center.update({j: float(v) for j, v in enumerate(moved)})

    def centroids(self) -> np.ndarray:
        """Centroids (k x dim) in standardised space; empty until trained."""
        if not self._initialised:
            return np.empty((0, self.dim))
        model = self.model
        if isinstance(model, cluster.DBSTREAM):
            model.predict_one({j: 0.0 for j in range(self.dim)})  # forces the macro reclustering
        centers = model.centers
        return np.array([[c.get(j, 0.0) for j in range(self.dim)] for _, c in sorted(centers.items())])
