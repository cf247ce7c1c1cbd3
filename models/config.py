"""Typed configuration of the pure engine.

These are plain pydantic models (no environment access) so that `models/` stays usable from a
replay, a benchmark or a notebook. `streams.settings.Settings` nests them and fills them from
environment variables (``SEGSTREAM_ENGINE__VALUE__HORIZON_DAYS=365`` and so on).
"""

from __future__ import annotations

import math
import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.traits import CLUSTERING_TRAITS
from schemas.errors import ConfigurationError


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
    recent_spend_days: int = Field(
        90, ge=1, le=366, description="The window of recent_spend (net spend on the last this many UTC days) "
        "and of retention (bought in this window, and in the one before it). The state keeps each purchase "
        "day's spend for this many days back from the latest one: a longer window set later fills in as "
        "purchases come."
    )

    @field_validator("currency_rates")
    @classmethod
    def _iso_codes(cls, rates: dict[str, float]) -> dict[str, float]:
        # Environment variables are case-insensitive (CURRENCY_RATES__EUR arrives as "eur"): a
        # key that is not an upper-case ISO 4217 code would never match an event's currency.
        codes = {code.upper(): rate for code, rate in rates.items()}
        bad = [code for code in codes if not re.fullmatch(r"[A-Z]{3}", code)]
        if bad:
            raise ConfigurationError(f"currency codes must be ISO 4217 (three letters): {', '.join(bad)}")
        bad = [code for code, rate in codes.items() if not (math.isfinite(rate) and rate > 0)]
        if bad:
            raise ConfigurationError(f"rates must be positive numbers: {', '.join(bad)}")
        return codes
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
    first_model_min_tenure_days: float = Field(
        30.0, ge=0, description="The first model waits until the median buyer of the training sample has this many "
        "days since the first purchase: features of customers a few days old (one purchase, no gap yet) describe "
        "their age rather than their behaviour, and a model built on them is rebuilt as they grow up, moving most "
        "customers (0 = no wait). Rule segments do not wait for it.")
    restart_warmup: int = Field(20, ge=0, description="Challenge the model with fresh k-means++ restarts "
                                "at each of the first this many trainings (each goes through the adoption rule)...")
    restart_every: int = Field(10, ge=0, description="...then every this many trainings (0 = never).")
    restart_candidates: int = Field(3, ge=1, le=20)
    polish_iterations: int = Field(
        20, ge=0, le=200, description="Lloyd iterations on the customer sample after river's passes (0 = none): "
        "river's constant-step KMeans leaves centroids jittering around the optimum; Lloyd steps settle them, so "
        "retraining on unchanged data reproduces the model in force.")
    adopt_min_gain: float = Field(
        0.02, ge=0, lt=1, description="A new model (training, challenger restart, BTYD refit) is adopted only if it "
        "lowers the unexplained share of variance (within / total sum of squares on the sample; under standardise = "
        "within_segments models.clustering.within_segment_unexplained of each model's partition) by this share...")
    adopt_max_moved_share: float = Field(
        0.05, ge=0, le=1, description="...and would move at most this share of the sampled customers (with the "
        "margin), segment retirements included.")
    adopt_overhaul_gain: float = Field(
        0.25, gt=0, le=1, description="A model this much better is adopted however many customers it moves: the "
        "model in force no longer describes the population (a young model, a population that changed shape).")
    adopt_restructure_gain: float = Field(
        0.05, gt=0, le=1, description="A k-means++ restart this much better than the model in force retrained is "
        "adopted even if it moves more than adopt_max_moved_share, once the structure in force has stood for "
        "restructure_cooldown trainings: a model stuck in a worse local optimum is not kept for ever.")
    restructure_cooldown: int = Field(
        20, ge=1, description="Trainings a structure stands (since the first model or the last adopted restart) "
        "before a restart may replace it under adopt_restructure_gain.")
    margin: float = Field(0.20, ge=0, lt=1, description="A customer moves only to a segment this much closer "
                          "(relative distance)...")
    dwell_days: float = Field(7.0, ge=0, description="...that stayed that much closer for this long "
                              "(event or clock time; margin AND dwell).")
    return_window_days: float = Field(
        90.0, ge=0, description="Going back to the segment a customer left less than this long ago needs twice "
        "the margin: a regular buyer's days since the last purchase rise and fall with each purchase, and must "
        "not carry it back and forth between two neighbouring segments (counted as a flap).")
    standardise: str = Field(
        "within_segments", pattern="^(population|within_segments)$",
        description="Scale of each feature before clustering: its pooled standard deviation inside the segments of "
        "the model in force (within_segments, the default: a feature that is mostly noise inside segments, such as a "
        "regular buyer's days since the last purchase, weighs less; the first model is searched in that metric, "
        "first_model_scale_starts; models are compared on models.clustering.within_segment_unexplained, which no "
        "metric enters; see models.clustering.Scaler.fit), or its standard deviation over the training sample "
        "(population: every feature weighs the same). On bench/stability.py's personas within_segments reaches ARI "
        "0.997-0.998 with 1.31-1.32 cluster changes per stable customer per year (population: 0.97-0.98, 1.49-1.52), "
        "and 0.988 on tests/test_segmentation.py's population, where a group appears late (population: 0.995) "
        "(docs/benchmarks.md, fourth pass of issue #17).")
    within_scale_floor: float = Field(
        0.1, gt=0, le=1, description="within_segments: a feature's scale is at least this share of its population "
        "standard deviation (bounds the weight of a feature nearly constant inside every segment).")
    first_model_scale_starts: int = Field(
        10, ge=1, le=50, description="within_segments: the first model (no model in force to take the metric from) "
        "is the best, by models.clustering.within_segment_objective, of this many k-means++ starts, each iterated "
        "with its own within-segment metric to a fixed point (models.clustering.within_segment_partition).")
    first_model_scale_rounds: int = Field(
        20, ge=1, le=100, description="within_segments: at most this many rounds (metric from the partition, Lloyd "
        "steps in that metric) per start of the first model's search.")
    match_threshold: float = Field(1.5, gt=0, description="Max centroid move (std units) that keeps an id.")
    rules_file: str | None = Field(None, description="TOML file of rule segment definitions.")
    rule_band: float = Field(
        5.0, ge=0, lt=50, description="Hysteresis of percentile clauses, in percentile points: a customer "
        "enters 'clv > p80' above the 80th percentile and stays while above the 75th (band 5); 'clv < p20' "
        "enters below p20 and stays while below p25. Literal clauses stay exact. 0 = no hysteresis. "
        "5 points is over 5 binomial standard errors of a percentile's rank (sqrt(q (1 - q) / n): 0.9 points "
        "at p80 in a 2,000-customer sample), so a member near the entry threshold is not pushed out by the "
        "sampling noise of a re-estimated threshold."
    )
    threshold_z: float = Field(
        3.0, ge=0, le=10, description="A training keeps a percentile's previous threshold while the share "
        "of its sample at or below it is within this many binomial standard errors, "
        "z * sqrt(q (1 - q) / n), of the percentile q (models.thresholds). 0 = re-estimate every time."
    )
    threshold_min_samples: int = Field(
        50, ge=1, description="A percentile threshold needs this many customers with a value of the field "
        "in the training sample; until then its clauses are false."
    )
    label_min_z: float = Field(0.5, gt=0, description="A label word needs the segment this many standard "
                               "deviations from the population on the word's feature (and a figure that "
                               "backs it: models.labels.WORDS).")
    driver_min_z: float = Field(0.5, gt=0, description="A change's driver needs the customer this many standard "
                                "deviations from the population on the feature, and the two segments this "
                                "far apart on it (a feature on which the customer is average explains nothing).")
    retired_labels_kept: int = Field(1000, ge=0, description="Labels of retired segment ids kept in each snapshot "
                                     "(a change leaving one names it); the oldest go first. 30 bytes each.")
    trait_features: tuple[str, ...] = Field(
        (), description="Traits added as clustering features after the nine behaviour features, in this order "
        f"(a JSON list; default none: segments as on behaviour and value alone). Offered: {', '.join(CLUSTERING_TRAITS)}. "
        "age: years as of the evaluation time (calendar year minus birth_year); household_size as is; income_band, "
        "education and company_size: their rank 0..k-1 in the contract's order (schemas.events). A customer whose "
        "trait is unknown is standardised to 0 (the sample's mean): it pulls them toward no segment. Categorical "
        "traits such as country are not offered (docs/segmentation.md, section 3). Changing the list starts a new "
        "model (new segment ids).")
    seed: int = 42

    @field_validator("trait_features")
    @classmethod
    def _offered_traits(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        bad = [n for n in names if n not in CLUSTERING_TRAITS]
        if bad:
            raise ConfigurationError(
                f"trait_features: {', '.join(map(str, bad))} cannot be clustering features; offered: "
                f"{', '.join(CLUSTERING_TRAITS)} (categorical traits such as country are not: docs/segmentation.md)")
        if len(set(names)) != len(names):
            raise ConfigurationError("trait_features: a trait is listed twice")
        return tuple(names)


class ReplayConfig(_Config):
    """How the offline replay (``streams.replay``, ``segstream replay``) stands in for a live
    worker. Read by the replay only: a worker sweeps on wall time (``SEGSTREAM_WORKER__SWEEP_*``)."""

    sweep_every_s: float = Field(
        86_400.0, ge=0, description="Event-time cadence of the replay's sweep: at every multiple of this "
        "many seconds since the epoch (UTC midnights by default) every customer is re-evaluated as of "
        "that time, as a live worker's sweep re-evaluates everyone as of its clock; a time-driven change "
        "(a lapse) appears at the first tick after it happens. One day matches the resolution of the "
        "day-based features; costs one evaluation per customer and tick (docs/benchmarks.md). "
        "0: no sweep (evaluated at their own events and at the as-of time only)."
    )
    sort_buffer_events: int = Field(
        1_000_000, ge=1, description="The replay orders the file's events in memory up to this many "
        "(about 0.4 KB each with the line: 0.4 GB); past it, in sorted runs of this many spilled to "
        "temporary files and merged."
    )


class ScorecardConfig(_Config):
    """Thresholds of the viability scorecard each segment is judged by (models.scorecard: each
    criterion's computation and source)."""

    min_share: float = Field(
        0.02, ge=0, le=1, description="Substantial: the segment holds at least this share of all customers.")
    min_measurable_share: float = Field(
        0.8, ge=0, le=1, description="Measurable: at least this share of its members have every field that defines "
        "the segment known (a rule's clause fields; a cluster's value and behaviour figures, which a customer who "
        "never bought lacks: models.pipeline.CLUSTER_DEFINING_FIELDS).")
    min_reachable_share: float = Field(
        0.5, ge=0, le=1, description="Accessible: at least this share of its members consented to at least one "
        "channel (email, sms or push; unknown consent is not consent).")
    min_separation: float = Field(
        1.0, ge=0, description="Differentiable: the distance between the segment's mean and the nearest other "
        "segment's of the same kind, in standardised feature space, is at least this many times the two segments' "
        "root mean within-segment spread (a Fisher-like separation).")
    max_weekly_churn: float = Field(
        0.2, ge=0, description="Stable: customers entering plus leaving the segment in a week are at most this share "
        "of its size.")
    min_profit_ratio: float = Field(
        1.0, ge=0, description="Profitable: the members' mean CLV is at least this many times their mean acquisition "
        "cost plus their mean cost to serve.")
    service_unit_cost: float | None = Field(
        None, ge=0, description="Money (base currency) per unit of service load, to price the cost to serve. A unit "
        "is one support ticket (a complaint counts value.complaint_weight), decayed with "
        "value.feedback_half_life_days: a steady r tickets a day holds a load of r x half-life / ln 2, so pricing the "
        "CLV horizon at c per ticket is c x ln 2 x horizon_days / feedback_half_life_days (2.81 c with the defaults). "
        "None: the cost to serve is not priced and profitability weighs CLV against CAC alone.")


class EngineConfig(_Config):
    """Everything the pure engine needs; one object shared by worker, replay and benchmarks."""

    value: ValueConfig = ValueConfig()
    segmentation: SegmentationConfig = SegmentationConfig()
    replay: ReplayConfig = ReplayConfig()
    scorecard: ScorecardConfig = ScorecardConfig()
