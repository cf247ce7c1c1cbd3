"""Versioned, compact model snapshots: what every worker assigns customers with.

A snapshot is the standardisation and the centroids (standardised space) with their stable segment
ids, labels and the marketer-facing statistics at training time. Assigning against a snapshot is a
small numpy computation, far cheaper than a river ``predict_one``, and every worker holding the
same version assigns identically.

>>> import numpy as np
>>> snap = ModelSnapshot(version=1, created_at=0.0, algorithm="kmeans", features=("a", "b"),
...     mean=np.zeros(2), std=np.ones(2), centroids=np.array([[0.0, 0.0], [4.0, 4.0]]),
...     segment_ids=("c1", "c2"), labels=("low", "high"), descriptions=("", ""))
>>> snap.nearest([3.5, 4.0])[0]
'c2'
>>> ModelSnapshot.from_bytes(snap.to_bytes()).segment_ids
('c1', 'c2')
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from models.features import FEATURES

from models.clustering import population_estimate
from schemas.errors import ContractError

FORMAT = 1


@dataclass(frozen=True)
class ModelSnapshot:
    version: int
    created_at: float
    algorithm: str
    features: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    centroids: np.ndarray  # k x d, standardised
    segment_ids: tuple[str, ...]
    labels: tuple[str, ...]
    descriptions: tuple[str, ...]
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # segment id -> marketer stats
    lifecycle: tuple[dict, ...] = ()  # lifecycle events of this version
    valuation: dict | None = None  # the BTYD parameters in force (models.valuation.Valuation.to_dict)
    drift: dict | None = None  # snapshot-to-snapshot drift figures
    definition_version: str | None = None  # rule definitions in force
    rule_thresholds: dict[str, float] = field(default_factory=dict)  # e.g. {"clv:p80": 412.3}
    # The trainer's customer sample: its size and the largest kept id hash (bottom-k). Workers only
    # forward customers hashing at or below it; (k-1)/threshold also estimates the population.
    sample_size: int = 0
    sample_threshold: int | None = None
    next_segment_number: int = 1  # ids are never reused, also by a trainer resuming from here
    # How this version's cluster model was adopted (models.segmentation.Adoption.to_dict): the
    # gain over the model it replaced and the share of sampled customers it moves.
    adoption: dict | None = None
    # Last label of each segment id no longer in the model (retired or merged), so a change that
    # leaves it still names it; carried from version to version (models.segmentation).
    retired_labels: dict[str, str] = field(default_factory=dict)
    # Quartiles of the raw features over the training sample (models.figures.PopulationFigures).
    population: dict | None = None

    @property
    def population_estimate(self) -> int | None:
        """Distinct customers, estimated from the trainer's bottom-k sample; None without one."""
        return population_estimate(self.sample_size, self.sample_threshold) or None

    def index(self, segment_id: str) -> int | None:
        try:
            return self.segment_ids.index(segment_id)
        except ValueError:
            return None

    def label(self, segment_id: str) -> str:
        """The segment's label, also for an id retired from the model (its last label); the
        bare id only for an id this snapshot never heard of.

        >>> snap = ModelSnapshot(version=2, created_at=0.0, algorithm="kmeans", features=("a",),
        ...     mean=np.zeros(1), std=np.ones(1), centroids=np.zeros((1, 1)), segment_ids=("c2",),
        ...     labels=("recent",), descriptions=("",), retired_labels={"c1": "lapsed"})
        >>> snap.label("c2"), snap.label("c1"), snap.label("c9")
        ('recent', 'lapsed', 'c9')
        """
        i = self.index(segment_id)
        return self.labels[i] if i is not None else self.retired_labels.get(segment_id, segment_id)

    def standardise(self, vector: list[float] | np.ndarray) -> np.ndarray:
        """Standardised features; a missing trait feature (NaN) is 0, the mean
        (:meth:`models.clustering.Scaler.transform`)."""
        return _impute((np.asarray(vector, dtype=float) - self.mean) / self.std)

    def distances(self, vector: list[float] | np.ndarray) -> np.ndarray:
        """Euclidean distance of a raw feature vector to every centroid (standardised space)."""
        z = self.standardise(vector)
        return np.sqrt(((self.centroids - z) ** 2).sum(axis=1))

    def distances_many(self, matrix: np.ndarray) -> np.ndarray:
        """:meth:`distances` of every row of ``matrix`` (n x features): n x segments. Row by row
        the same arithmetic as :meth:`distances`, so a batch decides exactly as one by one."""
        z = _impute((matrix - self.mean) / self.std)
        return np.sqrt(((self.centroids[None, :, :] - z[:, None, :]) ** 2).sum(axis=2))

    def nearest(self, vector: list[float] | np.ndarray) -> tuple[str, np.ndarray]:
        d = self.distances(vector)
        return self.segment_ids[int(d.argmin())], d

    def assign_many(self, matrix: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid for each row of raw feature vectors."""
        z = _impute((matrix - self.mean) / self.std)
        d = ((z[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        return d.argmin(axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": self.version, "created_at": self.created_at,
            "algorithm": self.algorithm, "features": list(self.features),
            "mean": self.mean.tolist(), "std": self.std.tolist(), "centroids": self.centroids.tolist(),
            "segments": [
                {"id": sid, "label": lab, "description": desc, **({"stats": self.stats[sid]} if sid in self.stats else {})}
                for sid, lab, desc in zip(self.segment_ids, self.labels, self.descriptions)
            ],
            "lifecycle": list(self.lifecycle), "valuation": self.valuation, "drift": self.drift,
            "definition_version": self.definition_version, "rule_thresholds": self.rule_thresholds,
            "sample_size": self.sample_size, "sample_threshold": self.sample_threshold,
            "next_segment_number": self.next_segment_number, "adoption": self.adoption,
            "retired_labels": self.retired_labels, "population": self.population,
        }

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "ModelSnapshot":
        if doc.get("format") != FORMAT:
            raise ContractError(f"unknown snapshot format {doc.get('format')!r}")
        segs = doc["segments"]
        return cls(
            version=doc["version"], created_at=doc["created_at"], algorithm=doc["algorithm"],
            features=tuple(doc["features"]), mean=np.array(doc["mean"]), std=np.array(doc["std"]),
            centroids=np.array(doc["centroids"]).reshape(len(segs), len(doc["features"])),
            segment_ids=tuple(s["id"] for s in segs), labels=tuple(s["label"] for s in segs),
            descriptions=tuple(s["description"] for s in segs),
            stats={s["id"]: s["stats"] for s in segs if "stats" in s},
            lifecycle=tuple(doc.get("lifecycle", ())), valuation=doc.get("valuation"), drift=doc.get("drift"),
            definition_version=doc.get("definition_version"), rule_thresholds=doc.get("rule_thresholds") or {},
            sample_size=int(doc.get("sample_size", 0)), sample_threshold=doc.get("sample_threshold"),
            next_segment_number=int(doc.get("next_segment_number", 1)), adoption=doc.get("adoption"),
            retired_labels=dict(doc.get("retired_labels") or {}), population=doc.get("population"),
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> "ModelSnapshot":
        return cls.from_dict(orjson.loads(raw))


def _impute(z: np.ndarray) -> np.ndarray:
    if z.shape[-1] == len(FEATURES):  # no trait feature: every value is a number (the hot path)
        return z
    missing = np.isnan(z)
    return np.where(missing, 0.0, z) if missing.any() else z
