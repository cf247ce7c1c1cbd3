"""One typed settings object for the whole application, read from the environment.

Every option has an environment variable: ``SEGSTREAM_<FIELD>`` and, for nested sections,
``SEGSTREAM_<SECTION>__<FIELD>`` (for example ``SEGSTREAM_TOPICS__PREFIX=prod.``). The Kafka
bootstrap address also answers to the conventional ``KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import EngineConfig


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segstream"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TopicSettings(_Section):
    """Topic names (with a common prefix) and how they are created."""

    prefix: str = Field("segstream.", description="Prepended to every topic name.")
    partitions: int = Field(
        4, ge=1, le=1024, description="Partitions of every input topic; tables are co-partitioned with them."
    )
    replication_factor: int = Field(1, ge=1)
    purchases: str = "purchases"
    engagements: str = "engagements"
    feedback: str = "feedback"
    segment_changes: str = "segment-changes"
    dead_letter: str = "dead-letter"
    erasures: str = Field("erasures", description="Erase requests (key = customer_id).")
    reevaluate: str = Field("reevaluate", description="Internal: clock-driven re-evaluation batches.")
    trainer_samples: str = Field("trainer-samples", description="Internal: sampled customers to the trainer.")
    model_snapshots: str = Field("model-snapshots", description="Compacted: the latest model for every worker.")

    def name(self, topic: str) -> str:
        return f"{self.prefix}{getattr(self, topic)}"

    @property
    def input_topics(self) -> dict[str, str]:
        """Event type -> full topic name."""
        return {
            "purchase": self.name("purchases"),
            "engagement": self.name("engagements"),
            "feedback": self.name("feedback"),
        }


class LocalKafkaSettings(_Section):
    """The single-node KRaft broker started from Maven Central jars for tests and local runs."""

    version: str = Field("4.1.1", description="Apache Kafka version (org.apache.kafka:kafka_2.13).")
    cache_dir: Path = Field(default_factory=_default_cache_dir, description="Where the jars are cached.")
    heap: str = Field("512m", description="JVM -Xmx of the broker.")
    start_timeout_s: float = Field(90.0, gt=0)
    port: int = Field(0, ge=0, le=65535, description="Broker port; 0 picks a free one.")


class WorkerSettings(_Section):
    app_id: str = Field("segstream", description="Faust app id = Kafka consumer group.")
    web_host: str = Field("127.0.0.1", description="Host name other workers reach this one at (lookups "
                          "are forwarded to the owner); also the bind address unless web_bind is set.")
    web_bind: str | None = Field(None, description="Interface to listen on, e.g. 0.0.0.0 in a container "
                                 "(default: web_host, so localhost only).")
    web_port: int = Field(6066, ge=1, le=65535)
    data_dir: Path = Field(Path("./.segstream-data"), description="Faust data directory (tables, RocksDB).")
    store: str = Field("memory://", description="Table store: memory:// or rocksdb://")
    processing_guarantee: str = Field("at_least_once", pattern="^(at_least_once|exactly_once)$")
    log_level: str = Field("info", pattern="^(?i)(debug|info|warning|error)$")
    standby_replicas: int = Field(1, ge=0, le=3, description="Standby copies of each table partition "
                                  "on other workers (faster failover, more memory).")
    clock: str = Field("wall", pattern="^(wall|event)$", description="Time segments are evaluated at: "
                       "'wall' (now) or 'event' (latest event time seen: for replaying history).")
    sweep_interval_s: float = Field(1.0, gt=0, description="Tick of the clock-driven re-evaluation.")
    sweep_batch: int = Field(2000, ge=1, description="Customers re-evaluated per tick at most.")
    sweep_period_s: float = Field(600.0, ge=0, description="A full pass over the table starts at most this often.")
    train_interval_s: float = Field(60.0, gt=0, description="The trainer publishes a new model at most this often.")
    sample_flush_interval_s: float = Field(1.0, gt=0, description="Sampled customers are sent to the trainer this often.")
    batch_max: int = Field(500, ge=1, le=10_000, description="Messages processed together at most "
                           "(one table read and write per customer, one wait for acknowledgements).")
    batch_within_s: float = Field(0.005, gt=0, le=1, description="...or what arrived within this time.")
    producer_linger_s: float = Field(0.005, ge=0, le=1, description="Producer batching delay: changelog "
                                     "writes and changes leave in batches instead of one request each.")
    lag_interval_s: float = Field(10.0, gt=0, description="Consumer lag is measured this often (for /metrics).")


class Settings(BaseSettings):
    """All configuration of segstream. Build once at start-up and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix="SEGSTREAM_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("KAFKA_BOOTSTRAP_SERVERS", "SEGSTREAM_BOOTSTRAP_SERVERS"),
        description="Kafka bootstrap servers; unset means 'start a local broker' where that makes sense.",
    )
    security_protocol: str = Field("PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$")
    topics: TopicSettings = TopicSettings()
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    engine: EngineConfig = EngineConfig()
