"""Example subscriber of segment changes, e.g. for a personalization engine or a marketing tool.

It depends on nothing from segstream: only ``aiokafka`` and the published contract,
``schemas/json/segment_change.schema.json`` (validated with ``jsonschema`` when it is installed).

    pip install aiokafka jsonschema   # jsonschema is optional
    python examples/subscriber.py --bootstrap 127.0.0.1:9092 --group personalization

What it shows:

- a **consumer group** (run several copies: Kafka splits the partitions between them) with
  **manual commits after handling**, so a crash re-delivers instead of losing changes;
- **idempotence by change_id**: re-delivered or re-emitted changes are recognised and skipped;
- a **current-segment cache** per customer, updated from entries and exits, and erasures.

Output, one line per action, e.g.::

    ENTER c3 'high value · frequent' customer cdnow-0042 (reason better_fit)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer

SCHEMA_FILE = Path(__file__).resolve().parent.parent / "schemas" / "json" / "segment_change.schema.json"
SEEN_CAPACITY = 100_000  # change ids remembered for deduplication (about 4 MB)


# ---- validation ---------------------------------------------------------------------------------


def load_validator(schema_file: Path = SCHEMA_FILE) -> Callable[[Any], str | None]:
    """A function returning None for a valid change, else a one-line error.

    Full JSON Schema validation needs the optional ``jsonschema`` package; without it we only
    check that the required top-level keys are there (enough for this example, not for production).
    """
    schema = json.loads(schema_file.read_text())
    try:
        from jsonschema import Draft202012Validator
    except ImportError:
        print("note: 'jsonschema' is not installed (pip install jsonschema); only checking the "
              "required keys of each change", file=sys.stderr)
        return _required_keys_check(schema["required"])
    # "date-time" is checked only when jsonschema's format extras are installed (jsonschema[format]).
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)

    def validate(doc: Any) -> str | None:
        error = next(iter(validator.iter_errors(doc)), None)
        if error is None:
            return None
        where = "/".join(str(p) for p in error.absolute_path) or "<change>"
        return f"{where}: {error.message}"

    return validate


def _required_keys_check(required: list[str]) -> Callable[[Any], str | None]:
    def validate(doc: Any) -> str | None:
        if not isinstance(doc, dict):
            return "not a JSON object"
        missing = [key for key in required if key not in doc]
        return f"missing {', '.join(missing)}" if missing else None

    return validate


# ---- idempotence --------------------------------------------------------------------------------


class SeenChanges:
    """A bounded LRU set of change ids.

    Why changes come twice: delivery is at-least-once. Offsets are committed after handling, so a
    crash of this subscriber re-delivers the uncommitted tail; and the segstream worker itself can
    re-emit a change after a crash (it publishes before its own progress is committed). The
    worker's change ids are deterministic, uuid5(customer_id, per-customer change sequence), so a
    re-emitted change carries the same id and can be recognised here.

    The set is bounded because re-deliveries arrive soon after the original; for a guarantee that
    survives restarts, store the last applied change id per customer next to the effect (same DB
    transaction), or make the effect itself idempotent (as the set-based cache below is).
    """

    def __init__(self, capacity: int = SEEN_CAPACITY) -> None:
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, change_id: str) -> bool:
        """True when the id is new (and remember it), False for a duplicate."""
        if change_id in self._ids:
            self._ids.move_to_end(change_id)
            return False
        self._ids[change_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)  # forget the oldest
        return True


# ---- the application's side: a current-segment cache -------------------------------------------


def describe(ref: dict[str, str]) -> str:
    return f"{ref['id']} '{ref['label']}'"


class SegmentCache:
    """customer_id -> the customer's current segment ids (one cluster, any number of rules).

    A personalization engine would keep this in Redis or its own database; a marketing tool would
    start a campaign where ENTER is printed, using the reason for the message.
    """

    def __init__(self) -> None:
        self.segments: dict[str, set[str]] = {}

    def apply(self, change: dict[str, Any]) -> list[str]:
        """Apply one change; returns the actions taken, as lines to print."""
        customer, code = change["customer_id"], change["reason"]["code"]
        previous, current = change["previous_segment"], change["segment"]
        actions = []
        current_ids = self.segments.setdefault(customer, set())
        if previous is not None:
            current_ids.discard(previous["id"])
            actions.append(f"LEAVE {describe(previous)} customer {customer} (reason {code})")
        if current is not None:
            current_ids.add(current["id"])
            actions.append(f"ENTER {describe(current)} customer {customer} (reason {code})")
        if code == "erased":
            # Erasure: forget everything about the customer, not only the segment they left.
            self.segments.pop(customer, None)
            actions.append(f"FORGET customer {customer} (reason erased)")
        return actions


# ---- consuming ----------------------------------------------------------------------------------


class Subscriber:
    def __init__(self, validate: Callable[[Any], str | None]) -> None:
        self.validate = validate
        self.seen = SeenChanges()
        self.cache = SegmentCache()

    def handle(self, raw: bytes | None, where: str) -> None:
        """Handle one message; bad messages are reported and skipped (never block the partition)."""
        try:
            change = json.loads(raw) if raw is not None else None
        except ValueError as exc:
            print(f"skip {where}: not JSON ({exc})", file=sys.stderr)
            return
        error = self.validate(change)
        if error is not None:
            print(f"skip {where}: not a segment change: {error}", file=sys.stderr)
            return
        if not self.seen.add(change["change_id"]):
            print(f"duplicate {change['change_id']} ignored", file=sys.stderr)
            return
        for line in self.cache.apply(change):
            print(line, flush=True)


async def consume(bootstrap: str, topic: str, group: str, subscriber: Subscriber, stop: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group,
        enable_auto_commit=False,  # commit only what has been handled
        auto_offset_reset="earliest",  # a new group starts with the retained history
    )
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500)
            for tp, records in batch.items():
                for record in records:
                    subscriber.handle(record.value, f"{tp.topic}[{tp.partition}]@{record.offset}")
            if batch:
                # Handled -> committed. Messages are keyed by customer_id, so one customer's changes
                # are in one partition and arrive in order.
                await consumer.commit({tp: records[-1].offset + 1 for tp, records in batch.items()})
    finally:
        await consumer.stop()


async def main_async(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # Ctrl-C: finish the batch, commit, leave the group
    subscriber = Subscriber(load_validator())
    print(f"subscribed to {args.topic} on {args.bootstrap} as group {args.group!r} (Ctrl-C stops)",
          file=sys.stderr)
    await consume(args.bootstrap, args.topic, args.group, subscriber, stop)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Example subscriber of segstream segment changes.")
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
                        help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP_SERVERS or 127.0.0.1:9092)")
    parser.add_argument("--topic", default="segstream.segment-changes", help="segment-changes topic")
    parser.add_argument("--group", default="segment-subscriber-example", help="consumer group id")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main_async(parse_args()))
