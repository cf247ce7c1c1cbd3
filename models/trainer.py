"""The model trainer of a worker group: one model for the whole population, however many workers.

Workers own disjoint sets of customers, so none of them sees the population. They forward the
feature bases of *sampled* customers (bottom-k by id hash: every customer has the same chance,
however often they buy) to a single trainer, which refits BTYD on the sample, trains the
clusterer and publishes a versioned :class:`~models.snapshot.ModelSnapshot` that every worker
installs. Pure: the streams layer decides when to train and carries samples and snapshots.

>>> from models.config import EngineConfig, ValueConfig, SegmentationConfig
>>> from models.features import FeatureBasis
>>> config = EngineConfig(segmentation=SegmentationConfig(min_customers_to_train=10, n_segments=2))
>>> trainer = ModelTrainer(config)
>>> for i in range(40):
...     trainer.observe(f"c{i}", FeatureBasis(x=i % 5, t_x=i % 5 * 10, first_day=20000,
...                                           last_purchase_ts=20000 * 86400.0, monetary=10.0 + i % 3))
>>> snap = trainer.train(now=20100 * 86400.0, bases=trainer.copy_sample())
>>> snap.version, len(snap.segment_ids), snap.sample_size
(1, 2, 40)
"""

from __future__ import annotations

import copy

from models.config import EngineConfig, ValueConfig
from models.features import FeatureBasis
from models.profile import load_rules
from models.rules import RuleSet
from models.segmentation import Segmenter
from models.snapshot import ModelSnapshot
from models.state import utc_day
from models.valuation import BtydPopulation, Valuation, fit_valuation, pinned_valuation


class ModelTrainer:
    def __init__(self, config: EngineConfig, rules: RuleSet | None = None):
        self.config = config
        if rules is None and config.segmentation.rules_file:
            rules = load_rules(config.segmentation.rules_file)
        self.segmenter = Segmenter(config.segmentation, rules)
        self.valuation: Valuation = pinned_valuation(config.value)
        self.updates = 0  # sample updates since the last training

    @property
    def snapshot(self) -> ModelSnapshot | None:
        return self.segmenter.snapshot

    @property
    def sample_size(self) -> int:
        return len(self.segmenter.sample)

    def sample_threshold(self) -> int | None:
        return self.segmenter.sample.threshold()

    def observe(self, customer_id: str, basis: FeatureBasis) -> None:
        """A sampled customer's current basis. Sweeps re-send unchanged ones too (that is how a new
        trainer refills its sample), and they count: time passes for them as well (recency, P(alive)),
        and every training gives the drift detectors another look at the population."""
        self.segmenter.observe(customer_id, basis)
        self.updates += 1

    def forget(self, customer_id: str) -> None:
        """Erasure: the customer leaves the sample (and so every later model)."""
        self.segmenter.sample.forget(customer_id)

    def resume(self, snapshot: ModelSnapshot) -> None:
        """Continue from the latest published model (a new trainer after a restart or rebalance)."""
        self.segmenter.resume(snapshot)
        if snapshot.valuation:
            self.valuation = Valuation.from_dict(snapshot.valuation)

    def copy_sample(self) -> list[FeatureBasis]:
        """The sample as it is now: take it in the thread that feeds :meth:`observe`, then
        :meth:`train` may run elsewhere."""
        self.updates = 0
        return self.segmenter.sample.values()

    def train(self, now: float, bases: list[FeatureBasis]) -> ModelSnapshot | None:
        """Refit the lifetime-value model on the sample, then the clusterer; the new snapshot (None
        while the sample is too small)."""
        return self.train_with(self.refit(now, bases), now, bases)

    def refit(self, now: float, bases: list[FeatureBasis]) -> Valuation:
        """The BTYD refit alone: pure and picklable, so a worker can run it in another process
        (the Gamma-Gamma fit can take seconds of CPU that the event loop needs)."""
        return refit_valuation(bases, now, self.config.value, self.valuation)

    def detached_segmenter(self) -> Segmenter:
        """A copy of the segmenter's model with only the figures of the sample (which stays here and
        keeps taking updates while a training runs elsewhere), for :func:`train_detached`."""
        detached = copy.copy(self.segmenter)
        detached.sample = self.segmenter.sample.figures()  # type: ignore[assignment]
        return detached

    def adopt(self, trained: Segmenter, valuation: Valuation) -> None:
        """Take the model trained by :func:`train_detached`; the sample stays ours."""
        sample = self.segmenter.sample
        self.segmenter.__dict__.update(trained.__dict__)
        self.segmenter.sample = sample
        self.valuation = self.segmenter.valuation or valuation  # a rejected refit is not in force

    def train_with(self, valuation: Valuation, now: float, bases: list[FeatureBasis]) -> ModelSnapshot | None:
        """Train the clusterer on ``bases`` valued with ``valuation`` (from :meth:`refit`)."""
        snap = self.segmenter.train(now, valuation, self.config.value, bases=bases)
        # The refit comes into force with the model judged on it; a rejected one leaves the old.
        self.valuation = self.segmenter.valuation or valuation
        return snap


def train_detached(segmenter: Segmenter, previous: Valuation, now: float, value_config: ValueConfig,
                   bases: list[FeatureBasis]) -> tuple[Segmenter, Valuation, ModelSnapshot | None]:
    """A whole training for another process, in one trip: the BTYD refit on ``bases`` (from the
    ``previous`` valuation), then :meth:`Segmenter.train` on a segmenter sent without its sample
    (see :meth:`ModelTrainer.detached_segmenter`). Pure and picklable; returns the trained
    segmenter and the valuation (for :meth:`ModelTrainer.adopt`) and the snapshot."""
    valuation = refit_valuation(bases, now, value_config, previous)
    return segmenter, valuation, segmenter.train(now, valuation, value_config, bases=bases)


def refit_valuation(bases: list[FeatureBasis], now: float, config: ValueConfig, previous: Valuation) -> Valuation:
    return fit_valuation(population_of(bases), utc_day(now), config, previous)


def population_of(bases: list[FeatureBasis]) -> BtydPopulation:
    """BTYD statistics of the sampled buyers (a uniform sample fits the same parameters)."""
    population = BtydPopulation()
    for i, b in enumerate(bases):
        if b.first_day is not None:
            population.update(str(i), b.first_day, b.first_day + b.t_x, b.x, b.monetary)
    return population
