"""Training in another process: the model goes there pickled, without the sample, and comes back."""

from __future__ import annotations

import pickle

import numpy as np

from models.config import EngineConfig, SegmentationConfig
from models.features import FeatureBasis
from models.trainer import ModelTrainer, train_detached

CONFIG = EngineConfig(segmentation=SegmentationConfig(min_customers_to_train=20, n_segments=3))
NOW = 20100 * 86400.0


def _trainer(customers: int = 200) -> ModelTrainer:
    trainer = ModelTrainer(CONFIG)
    for i in range(customers):
        trainer.observe(f"c{i}", FeatureBasis(x=i % 7, t_x=(i % 7) * 9, first_day=20000 - i % 50,
                                              last_purchase_ts=(20000 + i % 40) * 86400.0, monetary=5.0 + i % 11,
                                              order_value=7.0 + i % 13, engagement=float(i % 5), purchase_count=1 + i % 7))
    return trainer


def _detached_round(trainer: ModelTrainer, now: float):  # noqa: ANN202
    bases = trainer.copy_sample()
    shipped = pickle.loads(pickle.dumps((trainer.detached_segmenter(), trainer.valuation, now, CONFIG.value, bases)))
    trained, valuation, snapshot = pickle.loads(pickle.dumps(train_detached(*shipped)))  # what a process pool does
    trainer.adopt(trained, valuation)
    return snapshot


def test_a_detached_training_gives_the_model_an_in_process_training_gives() -> None:
    here, there = _trainer(), _trainer()
    for round_ in range(3):  # verdicts, versions, segment ids and centroids carry on from round to round
        now = NOW + round_ * 86400.0
        expected = here.train(now, here.copy_sample())
        got = _detached_round(there, now)
        # The same verdict (a first model, then retrainings on unchanged data that are not
        # adopted: models keep their word) and the same model in force.
        assert (got is None) == (expected is None) and (round_ > 0 or got is not None)
        assert there.segmenter.last_adoption == here.segmenter.last_adoption
        assert there.snapshot is not None and here.snapshot is not None
        assert there.snapshot.version == here.snapshot.version
        assert there.snapshot.segment_ids == here.snapshot.segment_ids
        np.testing.assert_allclose(there.snapshot.centroids, here.snapshot.centroids)
        assert there.valuation == here.valuation


def test_the_sample_stays_with_the_trainer_and_keeps_its_updates() -> None:
    trainer = _trainer()
    bases = trainer.copy_sample()
    detached = trainer.detached_segmenter()
    assert detached.sample.population_estimate() == 200 and not hasattr(detached.sample, "observe")
    trainer.observe("late", FeatureBasis(x=1, t_x=3, first_day=20010, last_purchase_ts=20013 * 86400.0))
    trained, valuation, _ = train_detached(pickle.loads(pickle.dumps(detached)), trainer.valuation, NOW, CONFIG.value,
                                           bases)
    trainer.adopt(trained, valuation)
    assert trainer.sample_size == 201  # the update made during the training is kept
    assert trainer.updates == 1


def test_the_training_process_runs_niced() -> None:
    """Training yields the cores to the worker's event loop and the broker."""
    import os

    from streams.training import TRAINER_NICENESS, TrainerHost

    host = TrainerHost(CONFIG, "wall", 60.0, 600.0, listener=None)  # type: ignore[arg-type]
    try:
        assert host._fit_pool().submit(os.nice, 0).result(timeout=60) == min(os.nice(0) + TRAINER_NICENESS, 19)
    finally:
        host.close()


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's reaper may be slow to collect it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_killed_worker_leaves_no_training_process_behind() -> None:
    """SIGKILL gives the worker no chance to stop its pool: the training process must go with it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import os, sys, time\n"
        "from tests.test_trainer_detached import CONFIG\n"
        "from streams.training import TrainerHost\n"
        "host = TrainerHost(CONFIG, 'wall', 60.0, 600.0, listener=None)\n"
        "print(host._fit_pool().submit(os.getpid).result(timeout=60), flush=True)\n"
        "time.sleep(120)\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    worker = subprocess.Popen([sys.executable, "-c", script], cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        child = int(worker.stdout.readline())  # type: ignore[union-attr]
        assert _running(child)  # alive while the worker is
        worker.send_signal(signal.SIGKILL)
        worker.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not _running(child):
                break
            time.sleep(0.1)
        else:
            os.kill(child, signal.SIGKILL)
            raise AssertionError("the training process outlived its SIGKILLed worker")
    finally:
        if worker.poll() is None:
            worker.kill()
