"""The Faust application: built from one Settings object, so tests can run several apps side by side.

:class:`Runtime` holds what the agents, timers and web views share: the customer table, the
assign-only engine, the clock, the model listener and the trainer host.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any

import faust

from models.figures import figure_meanings
from models.pipeline import Pipeline
from models.segmentation import MembershipCounters
from models.snapshot import ModelSnapshot
from models.state import CustomerState
from monitoring.metrics import WorkerMetrics
from streams.clock import WorkerClock
from streams.watermark import InputWatermark
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
from streams.web import iso, register_web
from streams.agents import publish_snapshot, register_agents


def worker_changes(counters: MembershipCounters, segment_id: str) -> dict[str, int]:
    """Cluster changes into and out of a segment emitted by this worker since it started
    (cumulative: not reset by a new model version)."""
    return {"entered_since_worker_start": counters.entered.get(segment_id, 0),
            "left_since_worker_start": counters.left.get(segment_id, 0)}


def broker_url(bootstrap: str) -> str:
    return ";".join(f"kafka://{server.strip()}" for server in bootstrap.split(","))


log = logging.getLogger("segstream.worker")


def watermark_text(low: float) -> str | None:
    """The input watermark for /ready: a time, ``"caught up"`` (no partition behind), or None
    (not measured yet: nothing is swept)."""
    if math.isfinite(low):
        return iso(low)
    return "caught up" if low > 0 else None


@dataclass
class Runtime:
    app: faust.App
    settings: Settings
    topics: Topics
    table: Any  # faust Table: customer id bytes -> CustomerState bytes
    pipeline: Pipeline
    clock: WorkerClock
    forwarder: SampleForwarder
    listener: SnapshotListener
    trainer: TrainerHost
    sweeper: Sweeper
    metrics: WorkerMetrics
    home: HomePartitions  # where each customer's state lives (streams.partitioning)
    view: OutsideView  # committed and end offsets, read outside faust's consumer
    watermark: InputWatermark = field(default_factory=InputWatermark)  # what the sweep waits for
    started_at: float = field(default_factory=time.time)  # since when this worker counts its changes
    installed: list[int] = field(default_factory=list)  # model versions installed, in order
    # What the agents, timers and web views were set up with, as they were given it (GET /config)
    wiring: dict[str, Any] = field(default_factory=dict)

    # ---- model -----------------------------------------------------------------------------

    def install(self, snapshot: ModelSnapshot) -> None:
        if self.installed and snapshot.version <= self.installed[-1]:
            return  # already in force (the trainer installs its own model before its listener sees it)
        if not self.pipeline.install(snapshot):
            return
        self.forwarder.threshold = snapshot.sample_threshold
        if self.clock.mode == "event":
            self.clock.observe(snapshot.created_at)  # the group's event time, not only ours
        if not self.installed:
            # Customers seen before the first model have no segment yet: assign them now rather
            # than at the next sweep pass, up to SWEEP_PERIOD_S away.
            self.sweeper.start_pass_now()
        self.installed.append(snapshot.version)
        for event in snapshot.lifecycle:
            if event.get("kind") == "relabelled":  # customers keep the id: say that its meaning moved
                log.warning("model v%d: segment %s relabelled %r -> %r (its members' figures moved; its "
                            "customers keep the id)", snapshot.version, event["segment_id"], event["from"], event["to"])
        sizes = {sid: st["size"] for sid, st in snapshot.stats.items() if "size" in st}
        self.metrics.model(snapshot.version, time.time(), sizes, snapshot.drift)

    # ---- assignment --------------------------------------------------------------------------

    def active_partitions(self) -> set[int]:
        """Customer partitions this worker owns now (inputs, erasures, table: co-partitioned)."""
        topic = self.topics.inputs["purchase"]
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    async def input_end_offsets(self) -> dict[str, list[int]]:
        """The input topics' end offsets, one per partition: an erase request's cutoff. The
        repartition topic's too: where to read forwarded events again from (CustomerState.erased)."""
        topics = [*self.topics.inputs.values(), self.topics.repartition.get_topic_name()]
        return await self.view.end_offsets_by_topic(topics, self.settings.topics.partitions)

    def is_trainer(self) -> bool:
        topic = self.topics.trainer_samples.get_topic_name()
        return any(tp.topic == topic for tp in self.app.assignor.assigned_actives())

    # ---- views ---------------------------------------------------------------------------------

    def profile(self, state: CustomerState) -> dict:
        at = self.clock.now() or state.last_event_ts or 0.0
        doc = self.pipeline.profile(state, at)
        doc["as_of"] = iso(at)
        return doc

    def segments(self) -> dict:
        snap = self.pipeline.snapshot
        rule_part = self.pipeline.rule_report(*self.rule_sizes())
        if snap is None:
            return {"model_version": None, "segments": [], **rule_part}
        population = snap.population_estimate
        counters = self.pipeline.segmenter.counters
        members, members_scope = self.cluster_members()
        segments = []
        for sid, label, desc in zip(snap.segment_ids, snap.labels, snap.descriptions):
            stats = snap.stats.get(sid, {})
            share = stats.get("sample_share")
            segments.append({
                "id": sid, "label": label, "description": desc,
                "size_estimate": round(share * population) if share is not None and population else None,
                "members": members.get(sid, 0) if members is not None else None,
                "stats": stats, **worker_changes(counters, sid),
            })
        # Segments retired from the model that this worker's customers left since it started.
        retired = [{"id": sid, "label": snap.label(sid), **worker_changes(counters, sid)}
                   for sid in sorted(set(counters.entered) | set(counters.left)) if snap.index(sid) is None]
        return {
            "members_counted": members_scope,
            "changes_counted": {"since": iso(self.started_at), "by": "this worker, for the customers of its "
                                "partitions (each worker counts the changes it emits)"},
            "retired_segments": retired,
            "model_version": snap.version, "trained_at": iso(snap.created_at), "algorithm": snap.algorithm,
            "features": list(snap.features), "figures_read_as": figure_meanings(),
            "population_estimate": population,
            "segments": segments, **rule_part,
            "definition_version": snap.definition_version, "valuation": snap.valuation,
        }

    def cluster_members(self) -> tuple[dict[str, int] | None, str]:
        """Customers in each cluster segment (their membership, after margin and dwell, not the
        model's nearest centroid: ``size_estimate``), from this worker's last complete sweep pass."""
        counts = self.metrics.population_counts
        if counts is None:
            return None, "not counted yet: members come from the first complete sweep pass of this worker"
        members = {segment: n for (kind, segment), n in counts.items() if kind == "cluster"}
        return members, ("exact over this worker's partitions at its last complete sweep pass: customers in the "
                         "segment (margin and dwell applied); size_estimate is the model's nearest-centroid share")

    def rule_sizes(self) -> tuple[dict[str, int], str]:
        """Rule segment sizes from this worker's last complete sweep pass (the sweep visits every
        customer of its partitions once per pass), and what they cover; none before that pass."""
        counts = self.metrics.population_counts
        if counts is None:
            return {}, "not counted yet: sizes come from the first complete sweep pass of this worker"
        sizes = {segment: n for (kind, segment), n in counts.items() if kind == "rule"}
        rules = self.pipeline.rules
        if rules is not None:
            sizes = {d.id: sizes.get(d.id, 0) for d in rules.definitions.segment}
        return sizes, "exact over this worker's partitions at its last complete sweep pass"

    def readiness(self) -> dict:
        recovered = self.app.tables.recovery.completed.is_set()
        model_feed = self.listener.started.is_set()
        partitions = sorted(self.active_partitions())
        snap = self.pipeline.snapshot
        return {
            "ready": recovered and model_feed and self.app.consumer is not None, "pid": os.getpid(),
            "tables_recovered": recovered, "model_feed": model_feed,
            "partitions": partitions, "trainer": self.is_trainer(),
            "trainer_status": self.trainer.status(),
            "model_version": snap.version if snap else None, "clock": iso(self.clock.now()),
            "input_watermark": watermark_text(self.clock.input_watermark),
        }


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
        raise ValueError("no Kafka broker configured: set KAFKA_BOOTSTRAP_SERVERS")
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
    listener = SnapshotListener(settings.bootstrap_servers, topics.model_snapshots.get_topic_name(),
                              **settings.kafka_client_kwargs())
    trainer = TrainerHost(settings.engine, w.clock, w.train_interval_s, w.sweep_period_s, listener)
    home = HomePartitions(settings.topics.partitions)
    # The isolation level of faust's consumer at at_least_once (the only guarantee the settings
    # accept). Not read from app.in_transaction: faust caches that property, and reading it this
    # early, before faust marks the app as a worker, cached False and kept its transactions off.
    view = OutsideView(settings.bootstrap_servers, w.app_id, "read_uncommitted", **settings.kafka_client_kwargs())
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
