"""What the agents, timers and web views of a worker share (:class:`Runtime`): the customer
table, the assign-only engine, the clock, the model listener, the trainer host and the sweep.
Built by :func:`streams.app.create_app`; :mod:`streams.agents`, :mod:`streams.web` and
:mod:`streams.documents` use it, and nothing here imports them back.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faust

from models.pipeline import Pipeline
from models.snapshot import ModelSnapshot
from monitoring.metrics import WorkerMetrics
from streams.clock import WorkerClock
from streams.outside_view import OutsideView
from streams.partitioning import HomePartitions
from streams.sampling import SampleForwarder
from streams.settings import Settings
from streams.snapshots import SnapshotListener
from streams.sweep import Sweeper
from streams.topics import Topics
from streams.training import TrainerHost
from streams.watermark import InputWatermark
from streams.write_behind import StateStore

__all__ = ["Runtime"]

log = logging.getLogger("segstream.worker")


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
    # The table behind the write-behind buffer: read customers through it (streams.write_behind)
    store: StateStore = field(init=False)

    def __post_init__(self) -> None:
        w = self.settings.worker
        # On both delivery paths. Batch delivery had it off for a while: with both, the crash test
        # found customers short of their events, a hole of batch delivery at the start of a
        # partition never committed (streams.fixups.batch_delivery, docs/reliability.md).
        self.store = StateStore(self.table, deferred=w.write_behind)

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
