"""One typed settings object for the whole application, read from the environment.

Every option has an environment variable: ``SEGSTREAM_<FIELD>`` and, for nested sections,
``SEGSTREAM_<SECTION>__<FIELD>`` (for example ``SEGSTREAM_TOPICS__PREFIX=prod.``). The Kafka
bootstrap address also answers to the conventional ``KAFKA_BOOTSTRAP_SERVERS``.
"""

from __future__ import annotations

import difflib
import os
import ssl
import typing
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.config import EngineConfig
from schemas.errors import ConfigurationError


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "segstream"


def _none_if_empty(value: Any) -> Any:
    return None if value == "" else value


#: ``FOO=`` in an env file or in docker-compose means "not set".
EmptyIsUnset = BeforeValidator(_none_if_empty)


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
    profile: str = Field("profile", description="Profile updates: a customer's traits (schemas.events.ProfileEvent).")
    segment_changes: str = "segment-changes"
    dead_letter: str = "dead-letter"
    erasures: str = Field("erasures", description="Erase requests (key = customer_id).")
    reevaluate: str = Field("reevaluate", description="Internal: clock-driven re-evaluation batches.")
    repartition: str = Field("repartition", description="Internal: input messages forwarded to their "
                             "customer's home partition (producers with another partitioner than murmur2).")
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
            "profile": self.name("profile"),
        }


class KafkaSecurity(_Section):
    """How every Kafka client of segstream authenticates and encrypts (worker, producer, tail, ...).

    ``SASL_SSL`` with ``SCRAM-SHA-512`` is the usual production choice; ``ssl_cafile`` is needed
    when the brokers' certificates are not signed by a CA the system trusts, ``ssl_certfile`` and
    ``ssl_keyfile`` for mutual TLS.
    """

    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    sasl_username: Annotated[str | None, EmptyIsUnset] = None
    sasl_password: Annotated[SecretStr | None, EmptyIsUnset] = Field(None, description="Never logged or shown.")
    ssl_cafile: Annotated[Path | None, EmptyIsUnset] = Field(None, description="CA bundle (PEM) the brokers' certificates are checked against.")
    ssl_certfile: Annotated[Path | None, EmptyIsUnset] = Field(None, description="Client certificate (PEM), for mutual TLS.")
    ssl_keyfile: Annotated[Path | None, EmptyIsUnset] = Field(None, description="Client private key (PEM), for mutual TLS.")
    ssl_check_hostname: bool = True

    @model_validator(mode="after")
    def _complete(self) -> "KafkaSecurity":
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ConfigurationError(f"{self.security_protocol} needs kafka.sasl_username and kafka.sasl_password")
        return self

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_ssl:
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        context.check_hostname = self.ssl_check_hostname
        if self.ssl_certfile:
            context.load_cert_chain(str(self.ssl_certfile), str(self.ssl_keyfile) if self.ssl_keyfile else None)
        return context

    def aiokafka_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"security_protocol": self.security_protocol}
        if self.uses_ssl:
            kwargs["ssl_context"] = self.ssl_context()
        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None  # checked by _complete
            kwargs.update(sasl_mechanism=self.sasl_mechanism, sasl_plain_username=self.sasl_username,
                          sasl_plain_password=self.sasl_password.get_secret_value())
        return kwargs

    def faust_credentials(self) -> Any:
        """The same, as faust's ``broker_credentials`` (None for PLAINTEXT)."""
        import faust

        if self.security_protocol.startswith("SASL"):
            assert self.sasl_password is not None
            return faust.SASLCredentials(username=self.sasl_username, password=self.sasl_password.get_secret_value(),
                                         mechanism=self.sasl_mechanism, ssl_context=self.ssl_context())
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(self.ssl_context())
        return None


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
    api_token: Annotated[SecretStr | None, EmptyIsUnset] = Field(None, description="If set, GET and DELETE /customers/{id} (customer "
                                        "data) require 'Authorization: Bearer <token>'. Health, readiness, "
                                        "metrics and /segments stay open.")
    data_dir: Path = Field(Path("./.segstream-data"), description="Faust data directory (tables, RocksDB).")
    store: str = Field("memory://", pattern="^(memory|rocksdb)://$", description="Table store: memory:// or rocksdb://")
    processing_guarantee: str = Field("at_least_once", description="Only at_least_once: with the offsets "
                                      "in the state and the outbox, every event is applied once and a repeated "
                                      "change_id carries the same content (docs/reliability.md).")
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
    batch_max: int = Field(1000, ge=1, le=10_000, description="Messages processed together at most "
                           "(one table read and write per customer, one wait for acknowledgements).")
    batch_within_s: float = Field(0.02, gt=0, le=1, description="...or what arrived within this time "
                                  "(see docs/benchmarks.md for what bigger and smaller batches measured).")
    producer_linger_s: float = Field(0.005, ge=0, le=1, description="Producer batching delay: changelog "
                                     "writes and changes leave in batches instead of one request each.")
    fetch_min_bytes: int = Field(65536, ge=1, description="The broker holds a fetch until this much has "
                                 "arrived for the worker's partitions... (faust's own: 1, every fetch answered "
                                 "at the first message; see streams.fixups.kafka_transport)")
    fetch_max_wait_ms: int = Field(10, ge=0, le=1500, description="...or this long passed: live events are "
                                   "fetched in windows of at most this delay, a third less CPU each (faust's "
                                   "own: 1500).")
    write_behind: bool = Field(True, description="Write a customer's state to the table's changelog once "
                               "per offset commit instead of once per batch (written and acknowledged "
                               "before every commit; a state with segment changes still before they are "
                               "sent). false: every batch writes and waits for its states.")
    delivery: Literal["faust", "batch"] = Field("faust", description="How the customer agent gets its "
                                                 "messages: 'faust' (faust's per-message delivery, batched by "
                                                 "take_events, holes re-read by streams.delivery_guard) or "
                                                 "'batch' (each partition's fetched records as whole batches, in "
                                                 "offset order by construction: streams.fixups.batch_delivery). "
                                                 "Both: faust's app, consumer group, tables and commits.")
    state_cache_size: int = Field(20_000, ge=0, description="Decoded customer states kept between batches "
                                  "(about 3.7 KB each; checked against the table's bytes; 0: decode every batch).")
    event_loop: str = Field("uvloop", pattern="^(uvloop|asyncio)$", description="The worker's event loop: "
                            "uvloop (faust's per-message machinery about a fifth faster), or asyncio.")
    session_timeout_s: float = Field(30.0, ge=6, le=300, description="A worker that stops heartbeating is "
                                     "out of the group after this; its partitions move to the others.")
    static_membership: bool = Field(True, description="Join the consumer group as a static member: a "
                                    "restarted worker gets its partitions back at once instead of after a "
                                    "rebalance (streams.group_member).")
    group_instance_id: Annotated[str | None, EmptyIsUnset] = Field(None, description="The static member's id, "
                                          "unique per worker (default: the host name and a hash of the data "
                                          "directory, e.g. a pod name in a StatefulSet).")
    @field_validator("processing_guarantee")
    @classmethod
    def _only_at_least_once(cls, value: str) -> str:
        if value == "exactly_once":
            raise ConfigurationError("exactly_once is not supported: faust-streaming's transactions were never "
                             "started by the worker, so it ran at-least-once anyway. Use at_least_once (the "
                             "default): with the offsets in the state every event is applied once "
                             "(docs/reliability.md)")
        if value != "at_least_once":
            raise ConfigurationError("must be at_least_once")
        return value

    lag_interval_s: float = Field(10.0, gt=0, description="Consumer lag is measured this often (for /metrics).")
    shutdown_timeout_s: float = Field(30.0, gt=0, description="A graceful stop (SIGTERM) taking longer than "
                                      "this ends the process anyway (exit code 1; nothing is lost).")


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
    kafka: KafkaSecurity = KafkaSecurity()
    topics: TopicSettings = TopicSettings()

    @field_validator("bootstrap_servers")
    @classmethod
    def _host_port_list(cls, value: str | None) -> str | None:
        # Checked here, not by the Kafka client: aiokafka raises a bare ValueError deep in its
        # start-up for "localhost:9092x", a traceback instead of one line.
        if not value:
            return None
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                raise ConfigurationError(f"expected host:port[,host:port...] with ports 1-65535, not {server.strip()!r}")
        return value
    local_kafka: LocalKafkaSettings = LocalKafkaSettings()
    worker: WorkerSettings = WorkerSettings()
    engine: EngineConfig = EngineConfig()

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> "Settings":
        # pydantic-settings ignores a SEGSTREAM_ variable that names no setting (a typo in a
        # section name, SEGSTREAM_WORKERS__BATCH_MAX): the user would run with the default.
        unknown = unknown_variables(os.environ)
        if unknown:
            raise ConfigurationError("; ".join(unknown))
        return self

    def broker(self) -> str:
        """The bootstrap servers; :class:`~schemas.errors.ConfigurationError` when none is set
        (commands check first and say so in one line)."""
        if not self.bootstrap_servers:
            raise ConfigurationError("no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS")
        return self.bootstrap_servers

    def kafka_client_kwargs(self) -> dict[str, Any]:
        """Security options for every aiokafka client (producer, consumer, admin)."""
        return self.kafka.aiokafka_kwargs()


ENV_PREFIX = "SEGSTREAM_"
#: Variables with the prefix that are not settings of the application.
NOT_SETTINGS = frozenset({"SEGSTREAM_IMAGE"})  # docker-compose.yml's image tag


def setting_variables() -> tuple[frozenset[str], tuple[str, ...]]:
    """Every environment variable that names a setting (sections too: a JSON value), and the
    prefixes under which any name is a key (dict-valued settings such as currency rates)."""
    names: set[str] = {"KAFKA_BOOTSTRAP_SERVERS", "SEGSTREAM_BOOTSTRAP_SERVERS"}
    open_prefixes: list[str] = []
    for name, annotation in _fields(Settings, ENV_PREFIX):
        names.add(name)
        if _is_mapping(annotation):
            open_prefixes.append(name + "__")
    return frozenset(names), tuple(open_prefixes)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One message per ``SEGSTREAM_`` variable of ``environ`` that names no setting, with the
    closest real name when there is one."""
    names, open_prefixes = setting_variables()
    # Suggested: leaf settings, compared without the common prefix (which alone made SEGSTREAM_FOO
    # "close" to the section SEGSTREAM_KAFKA).
    leaves = {n[len(ENV_PREFIX):]: n for n in names
              if n.startswith(ENV_PREFIX) and not any(o.startswith(n + "__") for o in names)}
    problems = []
    for var in sorted(environ):
        upper = var.upper()
        if (not upper.startswith(ENV_PREFIX) or upper in names or upper in NOT_SETTINGS
                or upper.startswith(open_prefixes)):
            continue
        close = difflib.get_close_matches(upper[len(ENV_PREFIX):], leaves, n=1, cutoff=0.75)
        hint = f" (did you mean {leaves[close[0]]}?)" if close else " (docs/worker.md lists the settings)"
        problems.append(f"unknown setting {var}{hint}")
    return problems


def expected_json(path: Sequence[str]) -> str | None:
    """What the setting at ``path`` (field names from :class:`Settings` down, as in a validation
    error's location) takes when its value is JSON: a section or a parameter set (a JSON object
    with its keys) or a mapping; None for a scalar setting or a path that names no setting.

    >>> expected_json(["engine", "value", "beta_geo"])
    'a JSON object with the keys r, alpha, a, b (BG/NBD parameters in days)'
    >>> expected_json(["engine", "value", "currency_rates"])
    'a JSON object of names to numbers'
    >>> expected_json(["worker", "web_port"]) is None
    True
    """
    model: type[BaseModel] | None = Settings
    annotation: Any = None
    for part in path:
        info = model.model_fields.get(str(part).lower()) if model is not None else None
        if info is None:
            return None
        annotation = info.annotation
        models = _model_types(annotation)
        model = models[0] if models else None
    if model is not None:
        keys = list(model.model_fields)
        if len(keys) > 6:  # a whole section: its keys are what matters, and they are many
            return f"a JSON object with some of the keys {', '.join(keys[:6])}, ... ({len(keys)} in all)"
        what = " ".join((model.__doc__ or "").replace("``", "").split()).split(". ")[0].rstrip(".")
        return f"a JSON object with the keys {', '.join(keys)}" + (f" ({what})" if what else "")
    while annotation is not None and typing.get_origin(annotation) not in (dict, Mapping):  # X | None, Annotated
        annotation = next((arg for arg in typing.get_args(annotation) if _is_mapping(arg)), None)
    if annotation is None:
        return None
    args = typing.get_args(annotation)
    return f"a JSON object of names to {_JSON_KINDS.get(args[1], 'values') if len(args) == 2 else 'values'}"


_JSON_KINDS: dict[Any, str] = {float: "numbers", int: "integers", str: "strings", bool: "booleans"}


def json_variables() -> dict[str, list[str]]:
    """Every environment variable whose value is JSON (a section, a parameter set, a mapping) ->
    the path of its setting (for :func:`expected_json`)."""
    return {name: name[len(ENV_PREFIX):].lower().split("__") for name, annotation in _fields(Settings, ENV_PREFIX)
            if _model_types(annotation) or _is_mapping(annotation)}


def _fields(model: type[BaseModel], prefix: str) -> Iterator[tuple[str, Any]]:
    for field_name, info in model.model_fields.items():
        if field_name == "bootstrap_servers":
            continue  # its names are its aliases
        name = prefix + field_name.upper()
        yield name, info.annotation
        for member in _model_types(info.annotation):
            yield from _fields(member, name + "__")


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models inside ``annotation`` (``X``, ``X | None``, ``Annotated[X, ...]``)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _model_types(arg)]


def _is_mapping(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (dict, Mapping):
        return True
    return any(_is_mapping(arg) for arg in typing.get_args(annotation) if arg is not type(None))
