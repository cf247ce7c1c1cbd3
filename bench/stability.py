"""Segment stability on a persona population: changes in a quiet hour, changes per customer per
year, and ARI against the personas (online model and batch k-means side by side).

    python -m bench.stability --customers 2000 --seed 1

1. A population in the five :data:`models.synthetic.STABLE_YEAR` personas (known ground truth;
   four never change behaviour, ``at_risk`` lapses once) is replayed for one year through the pure
   engine (:class:`models.pipeline.Pipeline`, local training every ``--train-every`` events, rule
   segments from ``--rules``), evaluating each customer at its events on the event-time clock, as
   ``segstream replay`` does, and re-evaluating every customer once per ``--sweep-days`` of event
   time, as the worker's sweep does (so time-driven changes such as a lapse happen when they are
   due, not at the customer's next event).
2. Then a **quiet hour**: only CSAT answers arrive (``--csat`` per customer; CSAT feeds no feature
   and no rule), so retrainings and refits keep running on unchanged data; the hour ends with a
   sweep that re-evaluates every customer. Every change in that hour is one no data explains.
3. ARI of the final cluster memberships against the personas (k = ``--segments``, by default the
   number of personas), and of batch k-means (scipy's
   ``kmeans2``, k-means++ seeding, best of ``--restarts`` by inertia) on the same final
   standardised features with the same k; and batch k-means with each feature scaled by its
   pooled within-cluster standard deviation (``--standardise within_segments``'s metric, iterated
   from the first batch partition: no persona labels). ``--features-out`` keeps the final features
   for ``bench/ari_ceiling.py``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import orjson
from scipy.cluster.vq import kmeans2
from scipy.special import comb

ROOT = Path(__file__).resolve().parent.parent

from models.clustering import Scaler
from models.config import EngineConfig, SegmentationConfig
from models.features import basis_of, matrix_at
from models.pipeline import Pipeline
from models.state import CustomerState
from models.synthetic import STABLE_YEAR, generate_population
from schemas.events import parse_event
from schemas.segment_change import SegmentChange

HOUR = 3600.0
YEAR_S = 365.0 * 86400.0


def adjusted_rand_index(truth: list, predicted: list) -> float:
    """Hubert & Arabie's adjusted Rand index of two labellings of the same items (1 = identical
    partitions, ~0 = chance), from the contingency table."""
    _, t = np.unique(np.asarray(truth, dtype=str), return_inverse=True)
    _, p = np.unique(np.asarray(predicted, dtype=str), return_inverse=True)
    table = np.zeros((t.max() + 1, p.max() + 1))
    np.add.at(table, (t, p), 1)
    pairs = comb(table, 2).sum()
    rows, cols = comb(table.sum(axis=1), 2).sum(), comb(table.sum(axis=0), 2).sum()
    expected = rows * cols / comb(len(t), 2)
    top = (rows + cols) / 2
    return float((pairs - expected) / (top - expected)) if top != expected else 1.0


def batch_kmeans(z: np.ndarray, k: int, restarts: int, seed: int) -> np.ndarray:
    """Labels of the best (lowest inertia) of ``restarts`` k-means++-seeded Lloyd runs."""
    best, best_inertia = None, np.inf
    for r in range(restarts):
        centres, labels = kmeans2(z, k, minit="++", seed=seed + r, iter=100)
        inertia = ((z - centres[labels]) ** 2).sum()
        if inertia < best_inertia:
            best, best_inertia = labels, inertia
    assert best is not None
    return best


def batch_kmeans_within(x: np.ndarray, k: int, restarts: int, seed: int, floor: float,
                        rounds: int = 5) -> np.ndarray:
    """Batch k-means under ``standardise = within_segments``: the bench's batch k-means on the
    population-standardised features, then ``rounds`` times: rescale every feature by its pooled
    within-cluster standard deviation under the latest labels (``Scaler.fit``) and run it again."""
    z = Scaler.fit(x).transform(x)
    labels = batch_kmeans(z, k, restarts, seed)
    for _ in range(rounds):
        z = Scaler.fit(x, labels, floor).transform(x)
        labels = batch_kmeans(z, k, restarts, seed)
    return labels


class Run:
    """The engine, the customers' states and the changes, split by phase."""

    def __init__(self, config: EngineConfig, as_of: float):
        self.pipeline = Pipeline(config)
        self.states: dict[str, CustomerState] = {}
        self.as_of = as_of
        self.clock = float("-inf")
        self.changes: dict[str, list[SegmentChange]] = defaultdict(list)
        self.trainings: Counter[str] = Counter()
        self.verdicts: dict[str, Counter[str]] = defaultdict(Counter)  # adoption rule of each training
        self.verbose = False

    def feed(self, raw: dict, phase: str) -> None:
        event = parse_event(orjson.dumps(raw))
        state = self.states.get(event.customer_id)
        if state is None:
            state = self.states[event.customer_id] = self.pipeline.new_state(event.customer_id)
        self.clock = max(self.clock, event.timestamp.timestamp())
        version = self.pipeline.snapshot.version if self.pipeline.snapshot else 0
        outcome = self.pipeline.process(state, event, now=self.as_of, clock=self.clock)
        self.changes[phase].extend(outcome.changes)
        if self.pipeline._events_since_train == 0:  # a training ran on this event
            self.trainings[phase] += 1
            verdict = getattr(self.pipeline.segmenter, "last_adoption", None)
            if verdict is not None:
                self.verdicts[phase][f"{verdict.rule} ({verdict.candidate})"] += 1
                if self.verbose:
                    print(f"    {_iso(self.clock)[:10]} {verdict.rule:18s} {verdict.candidate:9s} "
                          f"gain {verdict.gain:+.3f} moved {verdict.moved_share:.3f}", flush=True)
        self.trainings[phase + " versions"] += (self.pipeline.snapshot.version if self.pipeline.snapshot else 0) - version

    def sweep(self, at: float, phase: str) -> None:
        """Re-evaluate every customer at ``at``, as the worker's clock-driven sweep does."""
        for cid in sorted(self.states):
            self.changes[phase].extend(self.pipeline.evaluate(self.states[cid], at))


def reason_of(change: SegmentChange) -> str:
    return f"{change.kind.value}:{change.reason.code.value}"


def per_customer(changes: list[SegmentChange], customers: list[str], years: float) -> dict[str, tuple[float, float]]:
    """reason -> (mean, median) changes per customer per year."""
    by: dict[str, Counter[str]] = defaultdict(Counter)
    for c in changes:
        by[reason_of(c)][c.customer_id] += 1
        by[f"{c.kind.value}:all"][c.customer_id] += 1
        if c.kind.value == "cluster" and c.reason.code.value != "first_assignment":
            by["cluster:moves"][c.customer_id] += 1
    return {r: (sum(n.get(cid, 0) for cid in customers) / len(customers) / years,
                statistics.median(n.get(cid, 0) for cid in customers) / years) for r, n in sorted(by.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--train-every", type=int, default=2000, help="events between trainings")
    parser.add_argument("--sweep-days", type=float, default=1.0,
                        help="re-evaluate every customer this often in event time, as the worker's sweep does (0 = never)")
    parser.add_argument("--csat", type=int, default=5, help="CSAT answers per customer in the quiet hour")
    parser.add_argument("--rules", default=str(ROOT / "examples" / "segments.toml"), help="rules file ('' for none)")
    parser.add_argument("--segments", type=int, default=len(STABLE_YEAR),
                        help="k of the online model and of batch k-means (default: the number of personas)")
    parser.add_argument("--restarts", type=int, default=10, help="batch k-means restarts")
    parser.add_argument("--margin", type=float, default=None, help="hysteresis margin (default: the engine's)")
    parser.add_argument("--dwell-days", type=float, default=None, help="hysteresis dwell (default: the engine's)")
    parser.add_argument("--return-window-days", type=float, default=None, help="return_window_days (default: the engine's)")
    parser.add_argument("--restructure-gain", type=float, default=None, help="adopt_restructure_gain (default: the engine's)")
    parser.add_argument("--overhaul-gain", type=float, default=None, help="adopt_overhaul_gain (default: the engine's)")
    parser.add_argument("--standardise", choices=("population", "within_segments"), default=None,
                        help="SegmentationConfig.standardise (default: the engine's)")
    parser.add_argument("--verbose", action="store_true", help="print every training's adoption verdict")
    parser.add_argument("--changes-out", type=Path, default=None,
                        help="write every change of the year and the quiet hour here (JSON lines, with "
                             "the customer's persona and phase), to study where moves come from")
    parser.add_argument("--features-out", type=Path, default=None,
                        help="write the final feature matrix (raw, unstandardised), the personas, the online "
                             "memberships and the batch k-means labels here (.npz), for bench/ari_ceiling.py")
    args = parser.parse_args()

    started = time.perf_counter()
    pop = generate_population(args.customers, seed=args.seed, personas=STABLE_YEAR)
    end = pop.end
    year = [e for e in pop.events if e["timestamp"] >= _iso(end - YEAR_S)]
    tuned = {k: v for k, v in (("margin", args.margin), ("dwell_days", args.dwell_days),
                                                   ("adopt_overhaul_gain", args.overhaul_gain),
                                                   ("return_window_days", args.return_window_days),
                                                   ("adopt_restructure_gain", args.restructure_gain),
                                                   ("standardise", args.standardise)) if v is not None}
    seg = SegmentationConfig(train_every_events=args.train_every, n_segments=args.segments,
                             rules_file=args.rules or None, **tuned)
    config = EngineConfig(segmentation=seg)
    run = Run(config, as_of=end + HOUR)
    run.verbose = args.verbose
    print(f"{len(year):,} events for {args.customers:,} customers over one year; training every "
          f"{args.train_every:,} events", flush=True)
    step = max(len(year) // 10, 1)
    sweep_s = args.sweep_days * 86400.0
    next_sweep = end - YEAR_S + sweep_s if sweep_s else float("inf")
    for i, raw in enumerate(year, 1):
        ts = datetime.fromisoformat(raw["timestamp"]).timestamp()
        while ts > next_sweep:  # the worker's clock-driven sweep, in event time
            run.sweep(next_sweep, "year")
            next_sweep += sweep_s
        run.feed(raw, "year")
        if i % step == 0:
            print(f"  {i / len(year):4.0%}  {i:,} events, {run.trainings['year']} trainings, "
                  f"model v{run.pipeline.snapshot.version if run.pipeline.snapshot else 0}, "
                  f"{time.perf_counter() - started:,.0f} s", flush=True)

    while next_sweep <= end:  # the year's last sweeps: what is due by its end happens in it
        run.sweep(next_sweep, "year")
        next_sweep += sweep_s
    rng = np.random.default_rng(args.seed + 1)
    quiet = []
    for cid in sorted(run.states):
        for n, ts in enumerate(np.sort(rng.uniform(end, end + HOUR, args.csat))):
            quiet.append({"type": "feedback", "event_id": f"{cid}-csat{n}", "customer_id": cid,
                          "timestamp": _iso(float(ts)), "kind": "csat", "score": int(rng.integers(1, 6))})
    quiet.sort(key=lambda e: e["timestamp"])
    for raw in quiet:
        run.feed(raw, "quiet")
    run.sweep(end + HOUR, "quiet")
    print(f"quiet hour: {len(quiet):,} CSAT answers, {run.trainings['quiet']} trainings "
          f"({run.trainings['quiet versions']} new model versions), then a sweep; "
          f"{time.perf_counter() - started:,.0f} s", flush=True)

    for phase in ("year", "quiet"):
        if run.verdicts[phase]:
            print(f"adoption verdicts, {phase}: " + ", ".join(f"{k} {n}" for k, n in sorted(run.verdicts[phase].items())))
    customers = sorted(run.states)
    if args.changes_out is not None:
        with args.changes_out.open("wb") as out:
            for phase in ("year", "quiet"):
                for c in run.changes[phase]:
                    out.write(orjson.dumps({"phase": phase, "persona": pop.personas[c.customer_id],
                                            **orjson.loads(c.model_dump_json())}) + b"\n")
    quiet_changes = run.changes["quiet"]
    by_reason = Counter(reason_of(c) for c in quiet_changes)
    print(f"\nchanges in the quiet hour: {len(quiet_changes):,} for "
          f"{len({c.customer_id for c in quiet_changes}):,} of {len(customers):,} customers")
    for reason, n in sorted(by_reason.items()):
        print(f"  {reason:28s} {n:6,}")

    print("\nchanges per customer per year (mean, median), year of history:")
    for reason, (mean, median) in per_customer(run.changes["year"], customers, 1.0).items():
        print(f"  {reason:28s} {mean:6.2f} {median:6.1f}")
    stable = [c for c in customers if pop.personas[c] != "at_risk"]
    mean, median = per_customer(run.changes["year"], stable, 1.0).get("cluster:all", (0.0, 0.0))
    print(f"  cluster changes, stable personas only: mean {mean:.2f}, median {median:.1f}")

    at = end + HOUR
    bases = [basis_of(run.states[c], config.value) for c in customers]
    x = matrix_at(bases, at, run.pipeline.values.valuation, config.value)
    std = x.std(axis=0)
    z = (x - x.mean(axis=0)) / np.where(std > 1e-9, std, 1.0)
    truth = [pop.personas[c] for c in customers]
    online = [run.states[c].cluster for c in customers]
    batch = batch_kmeans(z, seg.n_segments, args.restarts, args.seed)
    print(f"\nARI against the personas (k = {seg.n_segments}, {len(customers):,} customers):")
    print(f"  online (segstream)  {adjusted_rand_index(truth, online):.3f}   (standardise = {seg.standardise})")
    print(f"  batch k-means       {adjusted_rand_index(truth, batch.tolist()):.3f}   (population standard deviations)")
    within = batch_kmeans_within(x, seg.n_segments, args.restarts, args.seed, seg.within_scale_floor)
    print(f"  batch k-means       {adjusted_rand_index(truth, within.tolist()):.3f}   (within-segment standard "
          f"deviations, 5 rounds)")
    if args.features_out is not None:
        from models.features import FEATURES
        np.savez(args.features_out, x=x, truth=np.asarray(truth), online=np.asarray(online, dtype=str),
                 batch=batch, features=np.asarray(FEATURES), customers=np.asarray(customers),
                 seed=args.seed, restarts=args.restarts)
    snap = run.pipeline.snapshot
    print(f"\nfinal model v{snap.version}, segment ids {', '.join(snap.segment_ids)}; "
          f"{time.perf_counter() - started:,.0f} s in all")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(round(ts), timezone.utc).isoformat()


if __name__ == "__main__":
    main()
