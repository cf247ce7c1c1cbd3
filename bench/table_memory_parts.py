"""What a memory:// worker holds per customer after recovery, part by part, in a fresh process.

    python -m bench.table_memory_parts --customers 1000000

The states of the restart benchmark (``streams.harnesses.restart.state_templates``: 1,000
synthetic customers through the worker's own code, copied under new ids), then, one after the
other, the RSS growth per customer of: the table's dict (id bytes -> state bytes, what faust's
memory store holds as ``data``); the store's second dict, key -> partition (faust's
``stores/memory.py`` keeps it for every key); the sweep's pass queue (``streams.sweep.Sweeper``'s
own, built at the first tick after recovery: the table's keys).
"""

from __future__ import annotations

import argparse
import gc
import pickle
import subprocess
import sys

from streams.harnesses.bench import _rss_bytes, bench_settings, fill_table
from streams.harnesses.restart import state_templates
from streams.settings import Settings
from streams.sweep import Sweeper


def measure(templates: list[bytes], n: int, partitions: int) -> None:
    """In a fresh process (the engine run that made the templates would lend the table its freed memory)."""
    gc.collect()
    start = _rss_bytes()
    table, key_value = fill_table(templates, n)
    gc.collect()
    after_table = _rss_bytes()
    key_partition = {key: i % partitions for i, key in enumerate(table)}
    gc.collect()
    after_index = _rss_bytes()
    sweeper = Sweeper(partitions, batch=2000, period_s=600.0)
    sweeper.tick(table.keys(), set(range(partitions)))  # the pass's queue, and one tick's home cache
    gc.collect()
    after_queue = _rss_bytes()
    print(f"{n:,} customers, key + value {key_value / n:,.0f} B on average")
    print(f"table dict (data):                          {(after_table - start) / n:6,.0f} B per customer")
    print(f"memory store's key -> partition dict:       {(after_index - after_table) / n:6,.0f} B per customer")
    print(f"sweep pass queue (and its home cache):      {(after_queue - after_index) / n:6,.0f} B per customer")
    print(f"together:                                   {(after_queue - start) / n:6,.0f} B per customer")
    del key_partition, sweeper


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # templates pickled on stdin
    args = parser.parse_args()
    if args.child:
        measure(pickle.load(sys.stdin.buffer), args.customers, args.partitions)
        return
    templates = state_templates(bench_settings("127.0.0.1:9", "tmpl.", args.partitions, Settings()), 1000, 1)
    subprocess.run([sys.executable, "-m", "bench.table_memory_parts", "--child", "--customers", str(args.customers),
                    "--partitions", str(args.partitions)], input=pickle.dumps(templates), check=True)


if __name__ == "__main__":
    main()
