"""The group's one trainer, hosted by whichever worker holds the trainer-samples partition.

Kafka's group protocol is the leader election: the trainer-samples topic has one partition, so
exactly one worker consumes it. That worker feeds the samples to a :class:`ModelTrainer`, trains
in a thread (the event loop keeps processing events and heartbeats), and publishes the snapshot to
the compacted model-snapshots topic, from which every worker, itself included, installs it.

A worker that becomes the trainer (start, restart, rebalance) resumes from the latest published
snapshot, so segment ids and centroids carry on; its sample refills within one sweep period,
because the sweeps re-offer every sampled customer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import math
import os
import signal
import time
from typing import Awaitable, Callable

from models.config import EngineConfig
from models.snapshot import ModelSnapshot
from models.trainer import ModelTrainer, train_detached
from streams.child_process import arm_parent_death_signal
from streams.clock import WorkerClock
from streams.sampling import decode_samples
from streams.snapshots import SnapshotListener

log = logging.getLogger("segstream.trainer")

#: Added to the training process's niceness: it yields the cores to the worker and the broker.
TRAINER_NICENESS = 10
#: A resumed trainer waits for this share of the previous sample before training again.
REFILL_SHARE = 0.9


def training_process_init(worker_pid: int) -> None:
    """Set up the training process: niced (training is background work, events and the broker
    come first on the cores), and bound to its worker. A worker that is SIGKILLed (the OOM killer,
    a crash test) cannot stop its pool, and the orphaned process would wait for work forever:
    Linux's parent-death signal ends it with the worker."""
    os.nice(TRAINER_NICENESS)
    arm_parent_death_signal(signal.SIGKILL, worker_pid)


class TrainerHost:
    def __init__(self, config: EngineConfig, clock_mode: str, train_interval_s: float, refill_wait_s: float,
                 listener: SnapshotListener,
                 publish: Callable[[ModelSnapshot], Awaitable[None]] | None = None):
        self.config = config
        self.clock_mode = clock_mode
        self.train_interval_s = train_interval_s
        self.refill_wait_s = refill_wait_s
        self.listener = listener
        self.publish = publish
        self.trainer: ModelTrainer | None = None
        self.clock = WorkerClock(clock_mode, config.value.max_future_skew_s)
        self._since = 0.0  # monotonic time this worker became the trainer
        self._resumed_from: ModelSnapshot | None = None
        self._resumed = False
        self._last_train = -math.inf
        self.trainings = 0
        self._training = False
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    def on_samples(self, raw: bytes) -> None:
        """One trainer-samples message (from any worker)."""
        trainer = self._ensure()
        samples, forget, clock = decode_samples(raw)
        if clock is not None:
            self.clock.observe(clock)
        for customer_id, basis in samples:
            trainer.observe(customer_id, basis)
        for customer_id in forget:
            trainer.forget(customer_id)

    def release(self) -> None:
        """This worker no longer holds the trainer partition: another one trains now."""
        if self.trainer is not None:
            log.info("trainer role moved to another worker")
        self.trainer = None

    async def maybe_train(self) -> ModelSnapshot | None:
        """Train and publish when due. Called periodically on the trainer's worker."""
        if not self.listener.started.is_set():
            return None  # the latest published model is not known yet: resuming needs it
        trainer = self._ensure()
        self._resume_once(trainer)
        now = self.clock.now()
        if self._training or now is None or not self._due(trainer):
            return None
        bases = trainer.copy_sample()
        self._training = True
        started = time.perf_counter()
        loop = asyncio.get_running_loop()
        try:
            # Both in a child process: the BTYD refit's optimiser and river's pure-Python k-means
            # would hold the GIL for seconds and stall the event loop (every event's latency).
            # The model travels there and back; the sample stays here and keeps taking updates.
            trained, valuation, snapshot = await loop.run_in_executor(
                self._fit_pool(), train_detached, trainer.detached_segmenter(), trainer.valuation, now,
                self.config.value, bases)
            if self.trainer is trainer:  # still the trainer (the role may have moved meanwhile)
                trainer.adopt(trained, valuation)
                self.trainings += 1
        finally:
            self._training = False
            self._last_train = time.monotonic()
        if snapshot is None:
            return None
        log.info("trained model v%d on %d sampled customers in %.2fs", snapshot.version, len(bases),
                 time.perf_counter() - started)
        if self.publish is not None:
            await self.publish(snapshot)
        return snapshot

    def status(self) -> dict | None:
        """For /ready: what the trainer is doing (None on workers that are not the trainer)."""
        trainer = self.trainer
        if trainer is None:
            return None
        return {"sample_size": trainer.sample_size, "pending_updates": trainer.updates, "training": self._training,
                "trainings": self.trainings,  # run by this worker, adopted or not (a rejected model publishes nothing)
                "seconds_since_training": round(time.monotonic() - self._last_train, 1)
                if self._last_train > -math.inf else None,
                "model_version": trainer.snapshot.version if trainer.snapshot else None}

    def _fit_pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the worker has threads and an event loop that a fork would copy.
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=training_process_init, initargs=(os.getpid(),))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _ensure(self) -> ModelTrainer:
        if self.trainer is None:
            log.info("this worker is the trainer now")
            self.trainer = ModelTrainer(self.config)
            self.clock = WorkerClock(self.clock_mode, self.config.value.max_future_skew_s)
            self._since = time.monotonic()
            self._resumed = False
        return self.trainer

    def _resume_once(self, trainer: ModelTrainer) -> None:
        """Continue from the group's latest model (before this trainer's first training), so the
        versions go on increasing and segment ids and centroids carry over."""
        if self._resumed:
            return
        self._resumed = True
        latest = self.listener.latest
        self._resumed_from = latest
        if latest is not None:
            trainer.resume(latest)
            self.clock.observe(latest.created_at)
            log.info("trainer resumes from model v%d", latest.version)

    def _due(self, trainer: ModelTrainer) -> bool:
        min_customers = self.config.segmentation.min_customers_to_train
        if trainer.snapshot is None:
            return trainer.sample_size >= min_customers
        if trainer.updates == 0 or time.monotonic() - self._last_train < self.train_interval_s:
            return False
        resumed = self._resumed_from
        if resumed is not None and trainer.snapshot is resumed:
            # Right after a resume the sample is still refilling: training on a fraction of it
            # would move the centroids toward whichever customers happened to be active.
            refilled = trainer.sample_size >= REFILL_SHARE * resumed.sample_size
            return refilled or time.monotonic() - self._since >= self.refill_wait_s
        return True
