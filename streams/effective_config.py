"""What a running worker actually uses, read back from the parts that use it: ``GET /config``.

A setting can be accepted and still not act: ``processing_guarantee=exactly_once`` was read
before faust marked the app as a worker, faust cached "no transactions", and the worker ran
at-least-once while its settings said otherwise. So this document does not echo the settings
object: each value is read from the component it configures (faust's app configuration, the
Kafka clients faust created, the agents' timers and batches, the engine), under the name of the
environment variable that sets it. ``tests/test_effective_config.py`` starts a worker with every
worker and topic setting changed and checks each one here, and fails for a setting that has no
reading, so a new setting cannot be added without showing where it acts.

Secrets are shown as ``"set"`` or ``null``, never their value.

Reads into faust's and aiokafka's private attributes (the producer's linger, the consumer's fetch
sizes, session timeout and group instance id, which have no public getter) live here and only
here, for reporting; a changed attribute name shows as ``null`` and fails the test above.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from streams.runtime import Runtime

__all__ = ["effective_config"]

W, T = "SEGSTREAM_WORKER__", "SEGSTREAM_TOPICS__"


def effective_config(rt: Runtime) -> dict[str, Any]:
    """``{environment variable: value in force}`` for every worker and topic setting, plus the
    engine configuration the pipeline and the trainer use (``SEGSTREAM_ENGINE``)."""
    return {**_app(rt), **_clients(rt), **_agents(rt), **_topics(rt),
            "SEGSTREAM_ENGINE": rt.pipeline.config.model_dump(mode="json"),
            "SEGSTREAM_ENGINE (trainer)": rt.trainer.config.model_dump(mode="json")}


def _app(rt: Runtime) -> dict[str, Any]:
    conf = rt.app.conf
    return {
        W + "APP_ID": conf.id,
        W + "WEB_HOST": conf.web_host,
        W + "WEB_BIND": conf.web_bind,
        W + "WEB_PORT": conf.web_port,
        W + "API_TOKEN": "set" if rt.wiring.get("api_token") else None,
        W + "DATA_DIR": str(conf.datadir),
        W + "STORE": _store_url(conf.store),
        W + "PROCESSING_GUARANTEE": str(conf.processing_guarantee.value),
        W + "STANDBY_REPLICAS": conf.table_standby_replicas,
        W + "LOG_LEVEL": logging.getLevelName(_emitted_level()).lower(),
        W + "CLOCK": rt.clock.mode,
        W + "SHUTDOWN_TIMEOUT_S": rt.wiring.get("shutdown_timeout_s"),
        W + "EVENT_LOOP": "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio",
    }


def _store_url(url: Any) -> str:
    """faust's store as the setting writes it: faust keeps a yarl URL, whose text drops the empty
    authority of ``memory://`` (``"memory:"``); a URL with a host or path is shown as it is."""
    text = str(url)
    scheme = getattr(url, "scheme", "")
    return f"{scheme}://" if scheme and text == f"{scheme}:" else text


def _emitted_level() -> int:
    """The lowest level that reaches the log: the root logger's and its handlers' filter both.
    faust's terminal spinner (a handler at DEBUG that writes no lines) does not count."""
    root = logging.getLogger()
    handlers = [h.level for h in root.handlers if type(h).__name__ != "SpinnerHandler"]
    return max(root.getEffectiveLevel(), min(handlers)) if handlers else root.getEffectiveLevel()


def _clients(rt: Runtime) -> dict[str, Any]:
    producer = getattr(rt.app.producer, "_producer", None)  # aiokafka's, once started
    consumer = _aiokafka_consumer(rt)
    fetcher = getattr(consumer, "_fetcher", None)
    linger = getattr(getattr(producer, "_message_accumulator", None), "_linger_time", None)
    session_ms = getattr(consumer, "_session_timeout_ms", None)
    instance = getattr(consumer, "_group_instance_id", None)
    return {
        W + "PRODUCER_LINGER_S": linger,
        W + "FETCH_MIN_BYTES": getattr(fetcher, "_fetch_min_bytes", None),
        W + "FETCH_MAX_WAIT_MS": getattr(fetcher, "_fetch_max_wait_ms", None),
        W + "SESSION_TIMEOUT_S": session_ms / 1000 if session_ms is not None else None,
        W + "STATIC_MEMBERSHIP": instance is not None if consumer is not None else None,
        W + "GROUP_INSTANCE_ID": instance,
    }


def _aiokafka_consumer(rt: Runtime) -> Any:
    thread = getattr(rt.app.consumer, "_thread", None)  # faust's consumer thread
    return getattr(thread, "_consumer", None)


def _agents(rt: Runtime) -> dict[str, Any]:
    timers = rt.wiring.get("timers", {})
    return {
        W + "SWEEP_INTERVAL_S": timers.get("sweep"),
        W + "SWEEP_BATCH": rt.sweeper.batch,
        W + "SWEEP_PERIOD_S": rt.sweeper.period_s,
        W + "TRAIN_INTERVAL_S": rt.trainer.train_interval_s,
        W + "SAMPLE_FLUSH_INTERVAL_S": timers.get("flush_samples"),
        W + "LAG_INTERVAL_S": timers.get("measure_lag"),
        W + "BATCH_MAX": rt.wiring.get("batch_max"),
        W + "BATCH_WITHIN_S": rt.wiring.get("batch_within_s"),
        W + "STATE_CACHE_SIZE": rt.wiring.get("state_cache_size"),
        W + "WRITE_BEHIND": rt.wiring.get("write_behind"),
        # what the transport does, not what was asked: topics routed to a batch channel
        W + "DELIVERY": "batch" if getattr(rt.app.transport, "batch_routes", None) else "faust",
    }


def _topics(rt: Runtime) -> dict[str, Any]:
    topics, conf = rt.topics, rt.app.conf
    prefix = rt.settings.topics.prefix
    consumed = set(topics.customer_source.topics)  # what the customer agent subscribes to
    inputs = {etype: name if name in consumed else "" for etype, name in topics.inputs.items()}
    names = {
        "PURCHASES": inputs["purchase"], "ENGAGEMENTS": inputs["engagement"],
        "FEEDBACK": inputs["feedback"], "PROFILE": inputs["profile"], "SEGMENT_CHANGES": topics.segment_changes.get_topic_name(),
        "DEAD_LETTER": topics.dead_letter.get_topic_name(), "ERASURES": topics.erasures.get_topic_name(),
        "REEVALUATE": topics.reevaluate.get_topic_name(), "REPARTITION": topics.repartition.get_topic_name(),
        "TRAINER_SAMPLES": topics.trainer_samples.get_topic_name(),
        "MODEL_SNAPSHOTS": topics.model_snapshots.get_topic_name(),
    }
    doc: dict[str, Any] = {T + key: name.removeprefix(prefix) or None for key, name in names.items()}
    doc[T + "PREFIX"] = prefix if all(name.startswith(prefix) for name in names.values()) else None
    doc[T + "PARTITIONS"] = conf.topic_partitions
    doc[T + "REPLICATION_FACTOR"] = conf.topic_replication_factor
    return doc
