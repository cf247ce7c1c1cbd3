"""Rule segment changes over retrainings of an unchanged population (issue #17, item 3).

A seeded synthetic population (``models.synthetic``) is replayed through the engine with the
example rule file (``clv > p80``, ``engagement >= p75``, ...), a model is trained and every customer
evaluated as of the end. Then, with the clock frozen and no input, the model is retrained
``--trainings`` times and every customer re-evaluated after each training:

* ``same sample``: each training sees the whole population (as a trainer whose bounded sample
  holds every customer);
* ``resampled``: each training sees a fresh random half of the customers (another draw of the
  same population, as when the bottom-k sample turns over).

Nothing a rule depends on changes, so every rule change counted is a defect.

    python bench/rule_flaps.py --customers 2000 --trainings 30 [--band 0] [--z 0]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parent.parent

from models.config import EngineConfig, SegmentationConfig
from models.features import basis_of
from models.pipeline import Pipeline
from models.rules import RuleSet
from models.synthetic import generate_population
from streams.replay import Replay


def run(customers: int, trainings: int, seed: int, resample: bool, **rule_settings: float) -> dict:
    pop = generate_population(customers, seed=seed, activity=0.3)
    config = EngineConfig(segmentation=SegmentationConfig(n_segments=5, **rule_settings))
    rules = RuleSet.from_file(ROOT / "examples/segments.toml")
    replay = Replay(config, as_of=pop.end,
                    pipeline=Pipeline(config, auto_refit=False, auto_train=False, rules=rules)).feed_events(pop.events)
    pipeline, states = replay.pipeline, replay.states
    pipeline.values.refit(pop.end)
    pipeline.segmenter.train(pop.end, pipeline.values.valuation, config.value)
    for state in states.values():
        pipeline.evaluate(state, pop.end)
    rng = np.random.default_rng(seed)
    bases = [basis_of(s, config.value) for s in states.values()]
    by_reason: Counter[str] = Counter()
    moved_customers: set[str] = set()
    started = time.perf_counter()
    for _ in range(trainings):
        sample = [bases[i] for i in rng.permutation(len(bases))[: len(bases) // 2]] if resample else None
        pipeline.segmenter.train(pop.end, pipeline.values.valuation, config.value, sample)
        for state in states.values():
            for change in pipeline.evaluate(state, pop.end):
                if change.kind.value == "rule":
                    by_reason[change.reason.code.value] += 1
                    moved_customers.add(change.customer_id)
    return {"customers": len(states), "trainings": trainings, "rule_changes": sum(by_reason.values()),
            "by_reason": dict(by_reason), "customers_changed": len(moved_customers),
            "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--trainings", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--band", type=float, help="rule_band (default: the configuration's)")
    parser.add_argument("--z", type=float, help="threshold_z (default: the configuration's)")
    args = parser.parse_args()
    settings = {k: v for k, v in (("rule_band", args.band), ("threshold_z", args.z)) if v is not None}
    for resample in (False, True):
        result = run(args.customers, args.trainings, args.seed, resample, **settings)
        print(("resampled   " if resample else "same sample ") + orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
