"""The engine with and without a worker setting, side by side in one process, alternating.

    python bench/engine_ab.py --customers 1000 --set STATE_CACHE_SIZE=0 --rounds 2

Runs ``streams.harnesses.bench.run_engine`` (the worker's ``CustomerProcessor`` over the synthetic
population's messages, no Kafka) with the current settings (A) and with ``--set`` applied to the
worker settings (B), ``--rounds`` times each, alternating so the noisy machine hits both alike;
prints events per CPU second of each run and the ratio B / A of the medians.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from streams.harnesses.bench import build_messages, run_engine
from streams.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a worker setting for B (e.g. STATE_CACHE_SIZE=0, BATCH_MAX=500)")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    a = Settings()
    overrides = {name.lower(): value for name, value in (item.split("=", 1) for item in args.set)}
    b = a.model_copy(update={"worker": a.worker.model_validate({**a.worker.model_dump(), **overrides})})
    messages = build_messages(args.customers, 1)
    rates: dict[str, list[float]] = {"A": [], "B": []}
    for round_ in range(args.rounds):
        for name, settings in (("A", a), ("B", b)):
            result, _ = run_engine(settings, messages)
            rates[name].append(result["events_per_s_per_core"])
            print(f"round {round_ + 1} {name}: {result['events_per_s_per_core']:,.0f} events/s per core "
                  f"({result['trainings']} trainings, {result['train_cpu_s']:.1f} of {result['cpu_s']:.1f} CPU s)",
                  flush=True)
    ratio = statistics.median(rates["B"]) / statistics.median(rates["A"])
    print(f"B ({', '.join(args.set) or 'no change'}) / A = {ratio:.2f}")


if __name__ == "__main__":
    main()
