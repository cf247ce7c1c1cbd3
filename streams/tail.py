"""Watch the segment-changes topic from a terminal (``segstream tail``).

A plain aiokafka consumer without a consumer group: tailing never commits offsets, never takes
partitions away from a real subscriber, and any number of people can tail at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from dataclasses import dataclass
from datetime import timezone
from typing import Any, Callable

from aiokafka import AIOKafkaConsumer
from aiokafka.errors import KafkaError
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text

from schemas.segment_change import SegmentChange, SegmentRef
from streams.signals import stop_on_signals

OnChange = Callable[[SegmentChange, bytes], None]
OnInvalid = Callable[[str], None]

_TOP_DRIVERS = 3
_REASON_STYLE = {"erased": "bold red", "first_assignment": "cyan", "rule_entered": "green", "rule_left": "red"}


@dataclass
class TailStats:
    shown: int = 0
    invalid: int = 0
    filtered_out: int = 0
    stopped_by: int | None = None  # the signal that stopped the tail (SIGINT, SIGTERM), if one did


# ---- parsing and formatting (pure) --------------------------------------------------------------


def parse_change(raw: bytes | None) -> SegmentChange | str:
    """The change in ``raw``, or a one-line reason why it is not a SegmentChange."""
    if raw is None:
        return "empty message (tombstone)"
    try:
        return SegmentChange.model_validate_json(raw, strict=True)  # as its published schema reads it
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"]) or "<message>"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return f"not a SegmentChange: {where}: {first['msg']}{more}"


def _ref(ref: SegmentRef) -> str:
    return f"{ref.id} '{ref.label}'"


def _transition(change: SegmentChange) -> tuple[str, str, str]:
    """(verb, 'previous -> new' text, style)."""
    prev, new = change.previous_segment, change.segment
    if prev is None and new is not None:
        return "enter", f"-> {_ref(new)}", "green"
    if new is None and prev is not None:
        return "exit", f"{_ref(prev)} ->", "red"
    if prev is not None and new is not None:
        return "move", f"{_ref(prev)} -> {_ref(new)}", "yellow"
    return "none", "-", "dim"  # the contract allows it; the engine never emits it


def _format_driver(driver: Any) -> str | None:
    if not isinstance(driver, dict) or "feature" not in driver:
        return None
    if isinstance(driver.get("text"), str):  # the engine's own sentence (figure and comparisons)
        return driver["text"]
    text = str(driver["feature"])  # a change from an older engine: feature, value and z
    if isinstance(driver.get("value"), (int, float)):
        text += f"={driver['value']:g}"
    if isinstance(driver.get("z"), (int, float)):
        text += f" (z {driver['z']:+.2f})"
    return text


def format_drivers(details: dict[str, Any], top: int = _TOP_DRIVERS) -> str:
    """The top features behind a cluster change, e.g. 'CLV 812 USD, segment typical 640 USD,
    population median 95 USD; ...' (older records: 'clv=310 (z +1.20), nps=9 (z +0.80)')."""
    drivers = details.get("drivers")
    if not isinstance(drivers, list):
        return ""
    texts = [t for t in (_format_driver(d) for d in drivers[:top]) if t]
    return ("; " if any(isinstance(d, dict) and "text" in d for d in drivers[:top]) else ", ").join(texts)


def _versions(change: SegmentChange) -> str:
    parts = []
    if change.model_version is not None:
        parts.append(f"model v{change.model_version}")
    if change.kind.value == "rule" and change.definition_version:
        parts.append(f"rules {change.definition_version}")
    return " ".join(parts)


def format_change(change: SegmentChange) -> Text:
    """One line per change: time, customer, kind, transition, reason, versions, top drivers."""
    at = change.changed_at.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + "Z"
    verb, transition, style = _transition(change)
    code = change.reason.code.value
    text = Text()
    text.append(at, style="dim")
    text.append("  ")
    text.append(change.customer_id, style="bold")
    text.append(f"  {change.kind.value:<7} ")
    text.append(f"{verb:<5} {transition}", style=style)
    text.append("  ")
    text.append(code, style=_REASON_STYLE.get(code, "magenta"))
    versions = _versions(change)
    if versions:
        text.append(f"  {versions}", style="dim")
    drivers = format_drivers(change.reason.details)
    if drivers:
        text.append(f"  drivers: {drivers}", style="italic")
    return text


def format_invalid(partition: int, offset: int, error: str) -> Text:
    return Text(f"! partition {partition} offset {offset}: {error}; skipped", style="yellow")


# ---- consuming ----------------------------------------------------------------------------------


def _consumer(bootstrap: str, topic: str, from_beginning: bool, client_kwargs: dict[str, Any]) -> AIOKafkaConsumer:
    # group_id=None: no group membership and no commits; "latest" = only changes from now on.
    return AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
        auto_offset_reset="earliest" if from_beginning else "latest", **client_kwargs,
    )


async def tail_changes(
    bootstrap: str,
    topic: str,
    on_change: OnChange,
    on_invalid: OnInvalid,
    *,
    from_beginning: bool = False,
    max_changes: int = 0,
    customer: str | None = None,
    stop: asyncio.Event | None = None,
    client_kwargs: dict[str, Any] | None = None,
) -> TailStats:
    """Call ``on_change`` for each change (of ``customer``, if given) until ``max_changes`` (0 = no
    limit) or until ``stop`` is set. Messages that are not SegmentChanges go to ``on_invalid``."""
    stop = stop or asyncio.Event()
    stats = TailStats()
    consumer = _consumer(bootstrap, topic, from_beginning, client_kwargs or {})
    try:
        await consumer.start()
    except BaseException:  # the broker unreachable: close what start() opened, then say so
        await consumer.stop()
        raise
    lost = False
    try:
        while not stop.is_set():
            # A short poll so that a stop request is seen within half a second.
            try:
                batch = await consumer.getmany(timeout_ms=500)
            except KafkaError as exc:  # the broker went away: say so once, and wait for it
                if not lost:
                    print(f"lost the broker ({type(exc).__name__}); waiting for it (Ctrl-C to stop)", file=sys.stderr)
                    lost = True
                await _wait(stop, 1.0)
                continue
            lost = False
            for records in batch.values():
                for record in records:
                    if _handle(record, customer, stats, on_change, on_invalid) and stats.shown == max_changes:
                        return stats
    finally:
        await _stop_quietly(consumer)
    return stats


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    """Close the consumer, also when the broker is gone (aiokafka's stop then fails or hangs on
    requests to a node that is not ready): a tail that was asked to stop exits cleanly."""
    try:
        await asyncio.wait_for(consumer.stop(), 5.0)
    except (Exception, asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():  # we are being cancelled ourselves: let it through
            raise


def _handle(record: Any, customer: str | None, stats: TailStats, on_change: OnChange,
            on_invalid: OnInvalid) -> bool:
    """Process one record; True when it was shown as a change."""
    parsed = parse_change(record.value)
    if isinstance(parsed, str):
        stats.invalid += 1
        on_invalid(str(format_invalid(record.partition, record.offset, parsed)))
        return False
    if customer is not None and parsed.customer_id != customer:
        stats.filtered_out += 1
        return False
    stats.shown += 1
    on_change(parsed, record.value)
    return True


async def run_tail(bootstrap: str, topic: str, on_change: OnChange, on_invalid: OnInvalid,
                   **options: Any) -> TailStats:
    """``tail_changes`` until done or until SIGINT/SIGTERM, which stop it cleanly (consumer closed)."""
    with stop_on_signals() as request:
        stats = await tail_changes(bootstrap, topic, on_change, on_invalid, stop=request.event, **options)
    stats.stopped_by = request.signum
    return stats


def printers(as_json: bool) -> tuple[OnChange, OnInvalid]:
    """Terminal output: changes to stdout (pretty or raw JSON lines), warnings to stderr."""
    out = Console(highlight=False)
    err = Console(stderr=True, highlight=False)

    def pretty(change: SegmentChange, _raw: bytes) -> None:
        out.print(format_change(change), soft_wrap=True)

    def raw_json(_change: SegmentChange, raw: bytes) -> None:
        # The exact bytes as published, so the output can be piped into jq or a file.
        sys.stdout.write(raw.decode("utf-8", errors="replace") + "\n")
        sys.stdout.flush()

    def warn(message: str) -> None:
        err.print(Text(message, style="yellow"), soft_wrap=True)

    return (raw_json if as_json else pretty), warn
