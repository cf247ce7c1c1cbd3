"""The Faust application, wired from one Settings object (so tests can run several apps side by
side): topics, the customer table, the :class:`~streams.runtime.Runtime` the agents and web views
share, the agents (:mod:`streams.agents`) and the web views (:mod:`streams.web`). Nothing imports
this module back but the CLI.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import faust

from models.pipeline import Pipeline
from monitoring.metrics import WorkerMetrics
from streams.clock import WorkerClock
from streams.fixups.durable_table import DurableTable
from streams.fixups.kafka_transport import use_worker_transport
from streams.fixups.quiet_monitor import QuietMonitor
from streams.sampling import SampleForwarder
from streams.settings import Settings
from streams.snapshots import SnapshotListener
from streams.group_member import group_instance_id
from streams.outside_view import OutsideView
from streams.partitioning import HomePartitions
from streams.sweep import Sweeper
from streams.topics import Topics, declare_topics
from streams.training import TrainerHost
from streams.runtime import Runtime
from streams.web import register_web
from streams.agents import publish_snapshot, register_agents
from schemas.errors import ConfigurationError


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(","))


@dataclass
class SegstreamApp:
    app: faust.App
    settings: Settings
    runtime: Runtime

    @property
    def topics(self) -> Topics:
        return self.runtime.topics


def use_event_loop(settings: Settings) -> None:
    """Install the configured event loop policy (uvloop or asyncio's own). Call before any loop
    exists: faust's consumer thread makes its own loop from the policy too."""
    if settings.worker.event_loop == "uvloop":
        import mode.loop

        mode.loop.use("uvloop")


def faust_app(settings: Settings, app_id: str | None = None, **overrides: Any) -> faust.App:
    """The faust app with the worker's Kafka clients (the worker's, and the benchmark's faust floor)."""
    if not settings.bootstrap_servers:
        raise ConfigurationError("no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS")
    w = settings.worker
    app = faust.App(
        app_id or w.app_id,
        broker=broker_url(settings.bootstrap_servers),
        broker_credentials=settings.kafka.faust_credentials(),
        store=w.store,
        datadir=str(w.data_dir),
        web_host=w.web_host,
        web_port=w.web_port,
        web_bind=w.web_bind or w.web_host,
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        table_standby_replicas=w.standby_replicas,
        processing_guarantee=w.processing_guarantee,
        # Concurrency stays 1 everywhere (faust-streaming #606 loses messages on commit otherwise).
        stream_buffer_maxsize=4096,
        producer_linger=w.producer_linger_s,
        broker_session_timeout=w.session_timeout_s,
        broker_heartbeat_interval=min(3.0, w.session_timeout_s / 3),  # a few beats per session timeout
        consumer_group_instance_id=group_instance_id(w),
        Monitor=QuietMonitor,
        consumer_auto_offset_reset="earliest",
        autodiscover=False,
        loghandlers=[],
        **overrides,
    )
    use_worker_transport(app, w.fetch_min_bytes, w.fetch_max_wait_ms)
    return app


def create_app(settings: Settings) -> SegstreamApp:
    w = settings.worker
    app = faust_app(settings)
    topics = declare_topics(app, settings)
    # bytes key and value types make faust use the 'raw' codec: keys are the same bytes as the
    # input topics' message keys, so table_route sends lookups to the right worker.
    # DurableTable: the worker waits for each batch's changelog writes (see streams.fixups.durable_table).
    table = app.tables.add(DurableTable(app, name="customers", key_type=bytes, value_type=bytes,
                                        partitions=settings.topics.partitions, beacon=app.tables.beacon))
    forwarder = SampleForwarder()
    pipeline = Pipeline(settings.engine, train_locally=False, on_basis=forwarder.offer)
    metrics = WorkerMetrics()
    listener = SnapshotListener(settings.broker(), topics.model_snapshots.get_topic_name(),
                              **settings.kafka_client_kwargs())
    trainer = TrainerHost(settings.engine, w.clock, w.train_interval_s, w.sweep_period_s, listener)
    home = HomePartitions(settings.topics.partitions)
    # The isolation level of faust's consumer at at_least_once (the only guarantee the settings
    # accept). Not read from app.in_transaction: faust caches that property, and reading it this
    # early, before faust marks the app as a worker, cached False and kept its transactions off.
    view = OutsideView(settings.broker(), w.app_id, "read_uncommitted", **settings.kafka_client_kwargs())
    # docs/worker.md: how far the event clock may jump, and the input watermark it waits for
    clock = WorkerClock(w.clock, settings.engine.value.max_future_skew_s, held_by_input=True)
    runtime = Runtime(app=app, settings=settings, topics=topics, table=table, pipeline=pipeline,
                      clock=clock, forwarder=forwarder, listener=listener, trainer=trainer,
                      sweeper=Sweeper(settings.topics.partitions, w.sweep_batch, w.sweep_period_s, home),
                      metrics=metrics, home=home, view=view)
    listener.on_snapshot = runtime.install
    trainer.publish = functools.partial(publish_snapshot, runtime)
    register_agents(app, runtime)
    register_web(app, runtime)
    return SegstreamApp(app=app, settings=settings, runtime=runtime)
