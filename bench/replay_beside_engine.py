"""`segstream replay` beside the engine in process, on the same events, alternating.

    python -m bench.replay_beside_engine --customers 6000 --rounds 2      # 1,028,030 events

Writes the synthetic population of ``--customers`` (seed 1) as contract JSONL, then, ``--rounds``
times each, alternating so a noisy machine hits both alike:

* **replay**: ``segstream replay FILE --as-of END`` as its own process (what a user runs: read,
  validate, apply and evaluate every event, the event-time sweep, local trainings; profiles
  written), timed by wall clock and by the child's CPU time (``resource.getrusage``);
* **engine**: the worker's ``CustomerProcessor`` over the same events in batches, in process
  (``streams.harnesses.bench.run_engine``, the figure ``segstream bench`` reports), in a child
  process too, so both start cold.

Prints events per CPU second and per wall second of every run, and the medians' ratio
replay / engine.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

ENGINE_CHILD = """
import json, sys
from streams.harnesses.bench import build_messages, run_engine
from streams.settings import Settings
result, _ = run_engine(Settings(), build_messages(int(sys.argv[1]), 1))
print(json.dumps(result))
"""


def child_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_replay(path: Path, as_of: str, work: Path) -> dict[str, float]:
    cpu0, wall0 = child_cpu_s(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(path), "--as-of", as_of,
                    "--profiles-out", str(work / "profiles.jsonl")],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return {"cpu_s": child_cpu_s() - cpu0, "wall_s": time.perf_counter() - wall0}


def run_engine_child(customers: int) -> dict[str, float]:
    cpu0, wall0 = child_cpu_s(), time.perf_counter()
    out = subprocess.run([sys.executable, "-c", ENGINE_CHILD, str(customers)], cwd=ROOT, check=True,
                         capture_output=True).stdout
    result = json.loads(out.splitlines()[-1])
    # the engine's own CPU, the drive loop only (the child's total includes building the messages)
    return {"cpu_s": result["cpu_s"], "wall_s": result["wall_s"], "process_cpu_s": child_cpu_s() - cpu0,
            "process_wall_s": time.perf_counter() - wall0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from streams.harnesses.bench import build_messages

    messages = build_messages(args.customers, 1)
    end = max(json.loads(value)["timestamp"] for _, _, value in messages)
    with tempfile.TemporaryDirectory(prefix="segstream-replay-bench-") as tmp:
        work = Path(tmp)
        path = work / "events.jsonl"
        path.write_bytes(b"\n".join(value for _, _, value in messages) + b"\n")
        n = len(messages)
        print(f"{n:,} events of {args.customers:,} customers, as of {end}", flush=True)
        rates: dict[str, list[float]] = {"replay": [], "engine": []}
        for round_ in range(args.rounds):
            replay = run_replay(path, end, work)
            rates["replay"].append(n / replay["cpu_s"])
            print(f"round {round_ + 1} replay: {n / replay['cpu_s']:,.0f} events/s per core, "
                  f"{n / replay['wall_s']:,.0f} events/s wall ({replay['cpu_s']:.1f} CPU s, "
                  f"{replay['wall_s']:.1f} s)", flush=True)
            engine = run_engine_child(args.customers)
            rates["engine"].append(n / engine["cpu_s"])
            print(f"round {round_ + 1} engine: {n / engine['cpu_s']:,.0f} events/s per core, "
                  f"{n / engine['wall_s']:,.0f} events/s wall ({engine['cpu_s']:.1f} CPU s)", flush=True)
    replay_median, engine_median = statistics.median(rates["replay"]), statistics.median(rates["engine"])
    print(f"medians: replay {replay_median:,.0f}, engine {engine_median:,.0f} events/s per core; "
          f"replay / engine {replay_median / engine_median:.2f}")


if __name__ == "__main__":
    main()
