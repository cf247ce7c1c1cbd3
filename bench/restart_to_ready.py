"""Worker restart to ready with N customers in the table, memory:// and rocksdb:// (issue #20).

    python -m bench.restart_to_ready --customers 100000 --json-out /tmp/restart-100k.json
    python -m bench.restart_to_ready --customers 1000000

Fills the customers table's changelog with N real customer states (on their home partitions),
then starts ``segstream worker`` on it: an empty-table baseline, memory://, rocksdb:// cold (an
empty data directory), rocksdb:// warm (the same directory again); each timed from process start
to web / ``/ready`` / first input event consumed, then its RSS, a lookup check of the table and a
SIGTERM timed to exit (:mod:`streams.harnesses.restart`). Uses KAFKA_BOOTSTRAP_SERVERS if set,
else starts a local broker. Everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from streams.harnesses.restart import RUN_STORES, RestartConfig, run, summary_lines, to_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--template-customers", type=int, default=1000,
                        help="synthetic customers run through the engine; their states are copied")
    parser.add_argument("--runs", default=",".join(RUN_STORES), help=f"comma-separated, of {', '.join(RUN_STORES)}")
    parser.add_argument("--lookups", type=int, default=500, help="filled ids looked up after each recovery (0: all)")
    parser.add_argument("--work-dir", type=Path, default=None, help="broker data, worker logs and data (kept)")
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a SEGSTREAM_ variable for every worker run (repeatable)")
    parser.add_argument("--no-raw-restore", action="store_true",
                        help="skip reading the changelog with a plain aiokafka consumer (the restore ceiling)")
    parser.add_argument("--py-spy", default=None, metavar="PATH",
                        help="a py-spy binary: profile each worker from its start to ready (collapsed stacks beside its log)")
    args = parser.parse_args()
    runs = tuple(r for r in args.runs.split(",") if r)
    unknown = [r for r in runs if r not in RUN_STORES]
    if unknown:
        parser.error(f"unknown runs {unknown}")
    config = RestartConfig(customers=args.customers, partitions=args.partitions,
                           template_customers=args.template_customers, runs=runs, lookups=args.lookups,
                           work_dir=args.work_dir, py_spy=args.py_spy, raw_restore=not args.no_raw_restore, worker_env=dict(e.split("=", 1) for e in args.env))
    results = run(config)
    if args.json_out:
        args.json_out.write_bytes(to_json(results))
    for line in summary_lines(results):
        print(line)


if __name__ == "__main__":
    main()
