"""No setting is silently ignored: a worker started with every worker and topic setting changed
from its default shows each one in force, read back from the part it configures (GET /config,
streams/effective_config.py), and every setting has such a reading."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams.local_kafka import free_port
from streams.settings import TopicSettings, WorkerSettings
from tests.kafka_helpers import WorkerProcess

pytestmark = pytest.mark.kafka

W, T = "SEGSTREAM_WORKER__", "SEGSTREAM_TOPICS__"


def changed_settings(bootstrap: str, prefix: str, data_dir: Path) -> dict[str, tuple[str, object]]:
    """Every setting (its variable) -> (the value set, the value /config must show): none is a default."""
    port = free_port()
    worker = {
        "APP_ID": (f"{prefix}group", f"{prefix}group"),
        "WEB_HOST": ("localhost", "localhost"),
        "WEB_BIND": ("127.0.0.1", "127.0.0.1"),
        "WEB_PORT": (str(port), port),
        "API_TOKEN": ("not-shown-anywhere", "set"),
        "DATA_DIR": (str(data_dir), str(data_dir)),
        "STORE": ("rocksdb://", "rocksdb://"),  # as set (faust's URL object prints "rocksdb:")
        "PROCESSING_GUARANTEE": ("at_least_once", "at_least_once"),  # the only one accepted
        "LOG_LEVEL": ("warning", "warning"),
        "STANDBY_REPLICAS": ("0", 0),
        "CLOCK": ("event", "event"),
        "SWEEP_INTERVAL_S": ("0.7", 0.7),
        "SWEEP_BATCH": ("123", 123),
        "SWEEP_PERIOD_S": ("45", 45.0),
        "TRAIN_INTERVAL_S": ("33", 33.0),
        "SAMPLE_FLUSH_INTERVAL_S": ("1.5", 1.5),
        "BATCH_MAX": ("77", 77),
        "BATCH_WITHIN_S": ("0.03", 0.03),
        "PRODUCER_LINGER_S": ("0.007", 0.007),
        "FETCH_MIN_BYTES": ("4096", 4096),
        "FETCH_MAX_WAIT_MS": ("20", 20),
        "STATE_CACHE_SIZE": ("99", 99),
        "WRITE_BEHIND": ("false", False),
        "DELIVERY": ("batch", "batch"),
        "EVENT_LOOP": ("asyncio", "asyncio"),
        "SESSION_TIMEOUT_S": ("12", 12.0),
        "STATIC_MEMBERSHIP": ("true", True),  # the default; false is the second worker below
        "GROUP_INSTANCE_ID": (f"{prefix}member", f"{prefix}member"),
        "LAG_INTERVAL_S": ("7", 7.0),
        "SHUTDOWN_TIMEOUT_S": ("20", 20.0),
    }
    topics = {
        "PREFIX": (prefix, prefix), "PARTITIONS": ("3", 3), "REPLICATION_FACTOR": ("1", 1),  # one broker
        **{name.upper(): (f"my-{name}", f"my-{name}") for name in (
            "purchases", "engagements", "feedback", "profile", "segment_changes", "dead_letter", "erasures", "reevaluate",
            "repartition", "trainer_samples", "model_snapshots")},
    }
    return {"KAFKA_BOOTSTRAP_SERVERS": (bootstrap, None), **{W + k: v for k, v in worker.items()},
            **{T + k: v for k, v in topics.items()}}


def test_every_worker_and_topic_setting_has_a_reading() -> None:
    settings = changed_settings("127.0.0.1:9092", "p.", Path("/tmp/x"))
    documented = {W + name.upper() for name in WorkerSettings.model_fields} | {
        T + name.upper() for name in TopicSettings.model_fields}
    assert documented == set(settings) - {"KAFKA_BOOTSTRAP_SERVERS"}


def test_a_worker_runs_with_every_setting_it_was_given(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"config-{tmp_path.name[-6:]}."
    settings = changed_settings(kafka_bootstrap, prefix, tmp_path / "data")
    defaults = {**{W + k.upper(): f.default for k, f in WorkerSettings.model_fields.items()},
                **{T + k.upper(): f.default for k, f in TopicSettings.model_fields.items()}}
    for var, (value, _) in settings.items():  # a value equal to its default would prove nothing
        if var not in (W + "PROCESSING_GUARANTEE", W + "STATIC_MEMBERSHIP", T + "REPLICATION_FACTOR"):
            assert str(defaults.get(var)) != value, var
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    engine = {"SEGSTREAM_ENGINE__VALUE__HORIZON_DAYS": "200", "SEGSTREAM_ENGINE__SEGMENTATION__N_SEGMENTS": "5"}
    worker = WorkerProcess({**env, **engine, **{var: value for var, (value, _) in settings.items()}},
                           tmp_path / "w.log")
    try:
        worker.wait_ready()
        shown = worker.get("/config")
        wrong = {var: (expected, shown.get(var)) for var, (_, expected) in settings.items()  # type: ignore[union-attr]
                 if var != "KAFKA_BOOTSTRAP_SERVERS" and shown.get(var) != expected}  # type: ignore[union-attr]
        assert wrong == {}, wrong
        assert "not-shown-anywhere" not in str(shown) + worker.log_tail(1_000_000)
        for used_by in ("SEGSTREAM_ENGINE", "SEGSTREAM_ENGINE (trainer)"):  # the assigning engine and the trainer
            config = shown[used_by]  # type: ignore[index]
            assert (config["value"]["horizon_days"], config["segmentation"]["n_segments"]) == (200, 5)
        assert worker.request("/customers/anyone")[0] == 401  # the token acts, not only shows
    finally:
        assert worker.stop() == 0, worker.log_tail()
    # Static membership switched off: no instance id reaches the consumer.
    off = {**env, "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, T + "PREFIX": prefix + "off.",
           W + "APP_ID": f"{prefix}off", W + "DATA_DIR": str(tmp_path / "off"), W + "STATIC_MEMBERSHIP": "false"}
    worker = WorkerProcess(off, tmp_path / "off.log")
    try:
        worker.wait_ready()
        shown = worker.get("/config")
        assert (shown[W + "STATIC_MEMBERSHIP"], shown[W + "GROUP_INSTANCE_ID"]) == (False, None)  # type: ignore[index]
        assert shown[W + "STORE"] == "memory://"  # type: ignore[index]  # the default, as it is written
    finally:
        assert worker.stop() == 0, worker.log_tail()
