"""Typed configuration of the pure engine.

These are plain pydantic models (no environment access) so that `models/` stays usable from a
replay, a benchmark or a notebook. `streams.settings.Settings` nests them and fills them from
environment variables (``SEGSTREAM_ENGINE__VALUE__HORIZON_DAYS=365`` and so on).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BetaGeoPinned(_Config):
    """BG/NBD parameters in days. When set, the periodic refit is skipped."""

    r: float = Field(gt=0)
    alpha: float = Field(gt=0)
    a: float = Field(gt=0)
    b: float = Field(gt=0)


class GammaGammaPinned(_Config):
    """Gamma-Gamma spend parameters. When set, the periodic refit is skipped."""

    p: float = Field(gt=0)
    q: float = Field(gt=1)
    v: float = Field(gt=0)


class ValueConfig(_Config):
    """How per-customer value state is kept and valued."""

    horizon_days: int = Field(365, ge=1, le=3650, description="Horizon of expected purchases and CLV.")
    monthly_discount_rate: float = Field(0.01, ge=0, le=1, description="Discount rate per 30 days in CLV.")
    engagement_half_life_days: float = Field(14.0, gt=0, description="Half-life of engagement activity.")
    feedback_half_life_days: float = Field(90.0, gt=0, description="Half-life of the decayed NPS.")
    complaint_weight: float = Field(3.0, ge=0, description="A complaint costs this many support tickets.")
    dedupe_window_days: float = Field(
        7.0, ge=0, le=366, description="A repeated event_id (same customer and event type) is applied once "
        "if the original was applied less than this many days of the customer's event time ago "
        "(models.dedupe: 12 bytes per id remembered)."
    )
    dedupe_keep_last: int = Field(
        16, ge=1, le=1024, description="...or is among the customer's last this many events of its type, "
        "however long ago."
    )
    dedupe_max_ids: int = Field(
        4096, ge=16, le=100_000, description="At most this many ids remembered per customer and event type "
        "(49 KiB); a customer past it within the window keeps the most recent."
    )
    base_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    currency_rates: dict[str, float] = Field(
        default_factory=dict,
        description="Rates to the base currency, e.g. {'EUR': 1.08}. Other currencies are rejected.",
    )
    max_future_skew_s: float = Field(
        300.0, ge=0, description="Events stamped further than this past 'now' are rejected."
    )
    refit_every_events: int = Field(
        50_000, ge=1, description="Refit BG/NBD and Gamma-Gamma after this many applied purchases."
    )
    min_customers_for_fit: int = Field(200, ge=10, description="No fit below this many customers.")
    beta_geo: BetaGeoPinned | None = None
    gamma_gamma: GammaGammaPinned | None = None


class SegmentationConfig(_Config):
    """Online clustering, segment identity, membership hysteresis and rule segments."""

    algorithm: str = Field("kmeans", pattern="^(kmeans|streamkmeans|dbstream)$",
                           description="river clusterer: kmeans (default), streamkmeans or dbstream.")
    n_segments: int = Field(6, ge=2, le=50, description="k of kmeans/streamkmeans.")
    halflife: float = Field(0.01, gt=0, le=1, description="KMeans step size toward each sample.")
    dbstream_clustering_threshold: float = Field(1.5, gt=0)
    dbstream_fading_factor: float = Field(0.01, gt=0)
    sample_size: int = Field(20_000, ge=100, description="Customers kept in the training sample.")
    train_every_events: int = Field(100_000, ge=1, description="Train and snapshot after this many events.")
    train_passes: int = Field(3, ge=1, le=20, description="Passes over the customer sample per training.")
    min_customers_to_train: int = Field(300, ge=10)
    restart_warmup: int = Field(20, ge=0, description="Challenge the model with fresh k-means++ restarts "
                                "at each of the first this many trainings...")
    restart_every: int = Field(10, ge=0, description="...then every this many trainings (0 = never).")
    restart_candidates: int = Field(3, ge=1, le=20)
    restart_min_gain: float = Field(0.01, ge=0, lt=1, description="A challenger must lower inertia this much "
                                    "(three times as much after the warm-up).")
    margin: float = Field(0.15, ge=0, lt=1, description="Switch when the new segment is this much closer.")
    dwell_days: float = Field(7.0, ge=0, description="...or when it has been closer for this long.")
    match_threshold: float = Field(1.5, gt=0, description="Max centroid move (std units) that keeps an id.")
    rules_file: str | None = Field(None, description="TOML file of rule segment definitions.")
    label_min_z: float = Field(0.5, gt=0, description="A label word needs the segment this many standard "
                               "deviations from the population on the word's feature (and a figure that "
                               "backs it: models.labels.WORDS).")
    driver_min_z: float = Field(0.5, gt=0, description="A change's driver needs the customer this many standard "
                                "deviations from the population on the feature, and the two segments this "
                                "far apart on it (a feature on which the customer is average explains nothing).")
    retired_labels_kept: int = Field(1000, ge=0, description="Labels of retired segment ids kept in each snapshot "
                                     "(a change leaving one names it); the oldest go first. 30 bytes each.")
    seed: int = 42


class EngineConfig(_Config):
    """Everything the pure engine needs; one object shared by worker, replay and benchmarks."""

    value: ValueConfig = ValueConfig()
    segmentation: SegmentationConfig = SegmentationConfig()
