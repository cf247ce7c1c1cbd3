"""Bytes per customer of the serialised state (what the worker's table and changelog hold).

    python bench/state_size.py --customers 2000
"""

from __future__ import annotations

import argparse
import statistics

import orjson


from models.config import ValueConfig
from models.state import CustomerState
from models.synthetic import generate_population
from schemas.events import parse_event


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    config = ValueConfig()
    states: dict[str, CustomerState] = {}
    events = generate_population(args.customers, seed=args.seed).events
    for raw in events:
        event = parse_event(orjson.dumps(raw))
        states.setdefault(event.customer_id, CustomerState(event.customer_id)).apply(event, config)
    sizes = sorted(len(s.to_bytes()) for s in states.values())
    seen = [sum(len(ids) * 12 for ids in s.seen.values()) for s in states.values()]  # 8-byte fingerprint + 4-byte minute
    print(f"{len(events):,} events, {len(states):,} customers: mean {statistics.mean(sizes):,.0f} B, "
          f"median {sizes[len(sizes) // 2]:,} B, p99 {sizes[int(0.99 * len(sizes))]:,} B per customer; "
          f"dedupe windows {statistics.mean(seen):,.0f} B on average")


if __name__ == "__main__":
    main()
