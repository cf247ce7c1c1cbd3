"""What explains each segment change of a replay: the customer's own input, a new model, or the
clock alone.

    segstream replay EVENTS --as-of ISO --changes-out CHANGES ...
    python -m bench.change_causes EVENTS CHANGES

For each change after a customer's first assignment, with ``previous`` the customer's previous
change of the same kind (cluster or rule) and ``t`` this one's time:

* **input**: the customer has an event in the input with a timestamp in ``(previous, t]``;
* **new model, no input**: none, but the change names another model version than ``previous``
  (a retraining, a refit or new thresholds came in between; the clock moved too);
* **clock only**: neither: the same model, no event of the customer; only time passed (recency,
  P(alive), decayed engagement).

A change is counted under the first that applies. Input lines that are not JSON objects with a
``customer_id`` and a ``timestamp`` are skipped (the replay dead-letters them too).
"""

from __future__ import annotations

import argparse
import bisect
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import orjson


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def event_times(path: Path) -> dict[str, list[float]]:
    """customer id -> sorted timestamps (epoch seconds) of its input events."""
    times: dict[str, list[float]] = defaultdict(list)
    for line in path.read_bytes().splitlines():
        try:
            event = orjson.loads(line)
            times[str(event["customer_id"])].append(_ts(event["timestamp"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            continue
    return {c: sorted(t) for c, t in times.items()}


def causes(events: dict[str, list[float]], changes: list[dict]) -> Counter[tuple[str, str, str]]:
    """(kind, reason code, cause) -> number of changes."""
    previous: dict[tuple[str, str], tuple[float, object]] = {}
    out: Counter[tuple[str, str, str]] = Counter()
    for change in sorted(changes, key=lambda c: _ts(c["changed_at"])):
        key = (change["customer_id"], change["kind"])
        at, version = _ts(change["changed_at"]), change.get("model_version")
        before = previous.get(key)
        previous[key] = (at, version)
        code = change["reason"]["code"]
        if before is None:
            cause = "first change"
        else:
            ts = events.get(change["customer_id"], [])
            if bisect.bisect_right(ts, at) > bisect.bisect_right(ts, before[0]):
                cause = "input"
            elif version != before[1]:
                cause = "new model, no input"
            else:
                cause = "clock only"
        out[(change["kind"], code, cause)] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", type=Path, help="the replayed input (JSON lines)")
    parser.add_argument("changes", type=Path, help="the replay's --changes-out")
    args = parser.parse_args()
    changes = [orjson.loads(line) for line in args.changes.read_bytes().splitlines() if line.strip()]
    counted = causes(event_times(args.events), changes)
    print(f"{len(changes):,} changes")
    print(f"  {'kind':8s} {'reason':20s} {'cause':22s} {'changes':>8s}")
    for (kind, code, cause), n in sorted(counted.items()):
        print(f"  {kind:8s} {code:20s} {cause:22s} {n:8,}")


if __name__ == "__main__":
    main()
