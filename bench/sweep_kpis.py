"""What counting segment KPIs adds to a sweep pass, side by side in one process, alternating.

    python bench/sweep_kpis.py --customers 5000 --rounds 3

A synthetic population with profiles is replayed through the engine (with the demo's rule
segments); then, ``--rounds`` times each, alternating: (A) a sweep pass's evaluation of every
customer as of the end, in batches of 2,000 (:meth:`models.pipeline.Pipeline.evaluate_many`, what
the worker's sweep runs), and (B) the same plus the KPIs of the pass (:meth:`Pipeline.kpi_rows`
fed to :meth:`Pipeline.new_kpis`' accumulator, what the worker's sweep adds). Prints CPU
microseconds per customer of each and the ratio B / A of the medians.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from models.config import EngineConfig, SegmentationConfig
from models.synthetic import generate_population
from streams.replay import Replay

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "streams" / "resources" / "segments.toml"
END = 1_767_225_600.0
BATCH = 2000


def sweep(replay: Replay, with_kpis: bool) -> float:
    """CPU seconds of one pass over every customer."""
    pipeline = replay.pipeline
    states = [replay.states[cid] for cid in sorted(replay.states)]
    kpis = pipeline.new_kpis() if with_kpis else None
    fields = pipeline.kpi_fields
    started = time.process_time()
    for start in range(0, len(states), BATCH):
        batch = states[start:start + BATCH]
        times = [END] * len(batch)
        pipeline.evaluate_many(batch, times)
        if kpis is not None:
            for memberships, values, z in pipeline.kpi_rows(batch, times, fields):
                kpis.add(memberships, values, z)
    if kpis is not None:
        kpis.figures()  # what the pass's end computes once
    return time.process_time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pop = generate_population(args.customers, seed=3, end=END, profiles=True)
    config = EngineConfig(segmentation=SegmentationConfig(rules_file=str(RULES)))
    replay = Replay(config, END)
    replay.feed_events(pop.events)
    replay.finish()
    n = len(replay.states)
    cost: dict[str, list[float]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        for name, with_kpis in (("A", False), ("B", True)):
            cost[name].append(sweep(replay, with_kpis) / n * 1e6)
            print(f"round {round_ + 1} {name}: {cost[name][-1]:.1f} CPU µs per customer", flush=True)
    a, b = statistics.median(cost["A"]), statistics.median(cost["B"])
    print(f"{n} customers: sweep evaluation {a:.1f} µs, with KPIs {b:.1f} µs per customer; B / A = {b / a:.2f}")


if __name__ == "__main__":
    main()
