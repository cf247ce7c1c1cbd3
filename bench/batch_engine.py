"""The batch engine against its per-customer reference, side by side in one process, alternating.

    python -m bench.batch_engine --customers 1000 --rounds 2

Runs ``streams.harnesses.bench.run_engine`` (the worker's ``CustomerProcessor`` over the synthetic
population's messages in the worker's batches, no Kafka) with each batch's customers evaluated
together (``Pipeline.evaluate_many``: A) and one after the other (``Pipeline.evaluate``, the
reference: B), ``--rounds`` times each, alternating so the noisy machine hits both alike; prints
events per CPU second of each run, the share of CPU in evaluation, and the ratio A / B of the
medians. ``--rules`` evaluates the demo's rule segments too.
"""

from __future__ import annotations

import argparse
import statistics

from streams.demo import RULES
from streams.harnesses.bench import build_messages, run_engine
from streams.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rules", action="store_true", help="with the demo's rule segments")
    args = parser.parse_args()
    settings = Settings()
    if args.rules:
        seg = settings.engine.segmentation.model_copy(update={"rules_file": str(RULES)})
        settings = settings.model_copy(update={"engine": settings.engine.model_copy(update={"segmentation": seg})})
    messages = build_messages(args.customers, 1)
    rates: dict[str, list[float]] = {"batch": [], "per-customer": []}
    for round_ in range(args.rounds):
        for name, per_customer in (("batch", False), ("per-customer", True)):
            result, _ = run_engine(settings, messages, per_customer=per_customer)
            rates[name].append(result["events_per_s_per_core"])
            print(f"round {round_ + 1} {name}: {result['events_per_s_per_core']:,.0f} events/s per core "
                  f"({result['events']:,} events, {result['changes']:,} changes, "
                  f"{result['trainings']} trainings, {result['train_cpu_s']:.1f} of {result['cpu_s']:.1f} CPU s)",
                  flush=True)
    ratio = statistics.median(rates["batch"]) / statistics.median(rates["per-customer"])
    print(f"ratio batch / per-customer = {ratio:.2f}")


if __name__ == "__main__":
    main()
