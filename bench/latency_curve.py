"""Latency and worker CPU across input rates, on one worker with a trained model.

    python bench/latency_curve.py --rates 5,100,300,800,1500 --customers 1000
    python bench/latency_curve.py --loads 0.1,0.3,0.5,0.7,0.9 --customers 1000   # shares of the drain rate

The population of ``--customers`` (seed 1) is produced and drained first (the drain rate and the
mean batch are printed), then, once the model is trained, each rate runs for ``--seconds`` with
the traffic of ``segstream bench``'s latency phase (one message in ten a brand-new customer whose
first-assignment change is timed from send to consumption). Per rate: p50 / p99 of those
latencies, the worker's mean batch and its CPU (cores) during the phase: how much a live event
costs compared with a backlog one. Each latency is split at the change record's timestamp: the
worker's part (send -> change sent) and the subscriber's (change sent -> consumed); ``--trace``
keeps every probe, to line up slow ones with the worker's log (``--keep`` keeps it). The
worker's stalls in each phase (garbage collections, write-outs before a commit) come from its
``/metrics``.
Worker settings come from the environment
(``SEGSTREAM_WORKER__*``), so two settings compare side by side.

Uses KAFKA_BOOTSTRAP_SERVERS if set, else starts a local broker. Everything on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from monitoring.exposition import metric_sum
from streams import worker_process
from streams.harnesses import bench
from streams.settings import Settings


def batch_figures(port: int) -> tuple[float, float]:
    return bench.batch_figures((worker_process.http_get(port, "/metrics") or b"").decode())


def stall_figures(port: int) -> dict[str, float]:
    """Counts and summed seconds of the worker's stalls: garbage collections (all, and the full
    ones: generation 2) and the write-outs before offset commits."""
    text = (worker_process.http_get(port, "/metrics") or b"").decode()
    return {"gc": metric_sum(text, "segstream_gc_pause_seconds_count"),
            "gc_s": metric_sum(text, "segstream_gc_pause_seconds_sum"),
            "gc2": metric_sum(text, "segstream_gc_pause_seconds_count", generation="2"),
            "gc2_s": metric_sum(text, "segstream_gc_pause_seconds_sum", generation="2"),
            "commits": metric_sum(text, "segstream_commit_write_seconds_count"),
            "commits_s": metric_sum(text, "segstream_commit_write_seconds_sum")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="5,100,300,800,1500", help="events/s, comma-separated")
    parser.add_argument("--loads", default=None, help="shares of the measured drain rate, comma-separated "
                        "(instead of --rates; issue #20 asks for 10 %% ... 90 %%)")
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=15.0, help="per rate")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (the broker's data, "
                        "worker.log: to line a --trace up with the worker's log); removed otherwise")
    parser.add_argument("--trace", default=None, help="append each probe to this file: rate, seconds since "
                        "the rate's first send, total ms, worker ms, subscriber ms, Unix time of the send (tab-separated)")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    base = Settings()
    work = Path(tempfile.mkdtemp(prefix="segstream-latency-curve-"))
    print(f"work dir: {work}" + ("" if args.keep else " (removed at the end: --keep keeps it)"), flush=True)
    try:
        messages = bench.build_messages(args.customers, 1)
        with bench.broker(base, work, print) as bootstrap:
            settings = bench.bench_settings(bootstrap, f"lc{uuid.uuid4().hex[:8]}.", 4, base)
            asyncio.run(bench.create_topics(settings))
            asyncio.run(bench.produce_messages(settings, messages))
            with bench.running_worker(settings, work) as (proc, port, log):
                worker_process.wait_ready(proc, port, log)
                drain = bench.measure_worker_drain(proc, port, log, len(messages))
                print(f"drain: {drain['events_per_s']:,.0f} events/s, batches of {drain['mean_batch']:.0f}", flush=True)
                if args.loads:
                    rates = [float(share) * drain["events_per_s"] for share in args.loads.split(",")]
                worker_process.wait_ready(proc, port, log, 600, model=True)
                for rate in rates:
                    batches0, messages0 = batch_figures(port)
                    stalls0 = stall_figures(port)
                    cpu0 = bench.process_cpu_s(proc.pid)
                    r = asyncio.run(bench.measure_latency(settings, messages, rate, args.seconds, 0.1))
                    batches1, messages1 = batch_figures(port)
                    stalls = {k: v - stalls0[k] for k, v in stall_figures(port).items()}
                    cpu1 = bench.process_cpu_s(proc.pid)
                    batch = (messages1 - messages0) / max(batches1 - batches0, 1)
                    cores = (cpu1 - cpu0) / r["seconds"] if cpu0 is not None and cpu1 is not None else float("nan")
                    share = f" ({rate / drain['events_per_s']:4.0%} of the drain)"
                    print(f"rate {rate:6,.0f}/s{share} (achieved {r['achieved_rate']:6,.0f}): p50 {r['p50_ms']:7.1f} ms, "
                          f"p99 {r['p99_ms']:7.1f} ms, probes {r['probes_seen']}/{r['probes_sent']}, "
                          f"batches of {batch:.0f}, worker {cores:.2f} cores", flush=True)
                    print(f"    worker (send -> change sent) p50 {r['worker_p50_ms']:7.1f} ms, p99 {r['worker_p99_ms']:7.1f} ms; "
                          f"subscriber (change sent -> consumed) p50 {r['subscriber_p50_ms']:7.1f} ms, "
                          f"p99 {r['subscriber_p99_ms']:7.1f} ms", flush=True)
                    print(f"    stalls: {stalls['gc']:.0f} garbage collections, {1000 * stalls['gc_s']:.0f} ms in all, "
                          f"of which {stalls['gc2']:.0f} full, {1000 * stalls['gc2_s'] / max(stalls['gc2'], 1):.1f} ms each "
                          "on average; "
                          f"{stalls['commits']:.0f} write-outs before a commit, "
                          f"{1000 * stalls['commits_s'] / max(stalls['commits'], 1):.1f} ms each on average", flush=True)
                    if args.trace:
                        with open(args.trace, "a") as out:
                            for probe in r["probes"]:
                                out.write(f"{rate:.0f}\t" + "\t".join(f"{v:.3f}" for v in probe) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
