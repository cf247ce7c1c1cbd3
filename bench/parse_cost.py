"""What validating one input message costs, and what the duplicate-key check adds to it.

Usage: ``PYTHONPATH=. python bench/parse_cost.py [--repeat N]`` from the repository root. Prints microseconds per message (the best of
5 runs of N parses each) for a realistic purchase (8 fields, as ``segstream generate`` writes
them), an engagement, a feedback whose text quotes a word (an escaped quote then a space: the
cheap check cannot tell it from a key apart from its ``:``, so the message is parsed again) and the
same feedback without: the cheap check (``keys_may_repeat``), the full one (``duplicate_key``,
``json.loads`` with ``object_pairs_hook``), pydantic's ``validate_json`` alone (``parse_event``
before the check) and ``parse_event`` with it. ``--before REV`` adds ``parse_event`` as it was at
git revision REV (its ``schemas/`` extracted to a temporary directory), for a before/after.
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

from schemas.events import _EVENT_ADAPTER, parse_event
from schemas.json_keys import duplicate_key, keys_may_repeat

MESSAGES = {
    "purchase": b'{"type":"purchase","event_id":"p-000123456","customer_id":"cust-004211",'
                b'"timestamp":"2026-03-01T12:34:56.789+02:00","amount":84.17,"currency":"USD",'
                b'"quantity":2,"channel":"web","order_id":"o-98765"}',
    "engagement": b'{"type":"engagement","event_id":"e-000123456","customer_id":"cust-004211",'
                  b'"timestamp":"2026-03-01T12:34:56Z","action":"product_view","channel":"mobile_app",'
                  b'"duration_s":12.5}',
    "feedback": b'{"type":"feedback","event_id":"f-1","customer_id":"cust-004211","timestamp":"2026-03-01T12:34:56Z",'
                b'"kind":"review","score":4,"text":"Arrived late, but the \\"blue\\" one fits: would buy again."}',
    "feedback2": b'{"type":"feedback","event_id":"f-1","customer_id":"cust-004211","timestamp":"2026-03-01T12:34:56Z",'
                 b'"kind":"review","score":4,"text":"Arrived late, but the blue one fits: would buy again."}',
}


def best_us(fn, raw: bytes, repeat: int) -> float:
    return min(timeit.repeat(lambda: fn(raw), number=repeat, repeat=5)) / repeat * 1e6


def parse_event_at(rev: str, raw: bytes, repeat: int) -> float:
    """``parse_event``'s cost as of git revision ``rev``, in a fresh interpreter."""
    root = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", rev, "schemas"], cwd=root, check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        code = ("import timeit, sys; from schemas.events import parse_event; raw = sys.stdin.buffer.read(); "
                f"print(min(timeit.repeat(lambda: parse_event(raw), number={repeat}, repeat=5)) / {repeat} * 1e6)")
        out = subprocess.run([sys.executable, "-c", code], cwd=tmp, input=raw, check=True, capture_output=True,
                             env={"PYTHONPATH": tmp})
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20_000)
    parser.add_argument("--before", metavar="REV", help="also time parse_event as of this git revision")
    args = parser.parse_args()
    print(f"{'message':<11} {'bytes':>5} {'cheap':>7} {'full':>7} {'validate_json':>14} {'parse_event':>12}"
          + (f" {'before':>8}" if args.before else "") + "  (µs per message)")
    for name, raw in MESSAGES.items():
        keys = len(parse_event(raw).model_fields_set)
        cheap = best_us(lambda r: keys_may_repeat(r, keys), raw, args.repeat)
        full = best_us(duplicate_key, raw, args.repeat)
        plain = best_us(_EVENT_ADAPTER.validate_json, raw, args.repeat)
        parsed = best_us(parse_event, raw, args.repeat)
        before = f" {parse_event_at(args.before, raw, args.repeat):>8.2f}" if args.before else ""
        print(f"{name:<11} {len(raw):>5} {cheap:>7.2f} {full:>7.2f} {plain:>14.2f} {parsed:>12.2f}{before}")


if __name__ == "__main__":
    main()
