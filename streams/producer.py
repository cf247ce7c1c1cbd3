"""Send event files to the input topics (``segstream produce``).

Two input formats:

- ``jsonl``: contract events, one JSON object per line, routed by ``type`` and sent as-is (the
  worker validates them and dead-letters the invalid ones);
- ``cdnow``: CDNOW-style transaction lines (``models.cdnow``), each converted to a purchase event.

A line that cannot be routed is skipped with what is wrong with it (``not JSON: ...`` with the
parser's message and column, ``no 'customer_id'``, ...), under its line number in the file. A
UTF-8 byte order mark at the start of the file (Windows editors write one) is not part of the
first line: it is dropped, as Python's ``utf-8-sig`` codec drops it; anywhere else it is an error.

Every message is keyed by its ``customer_id``: the worker's tables are co-partitioned on it.
The client's own partitioner (aiokafka: murmur2) places it, unless ``partitioner`` names another
(``streams.partitioning``): then the message goes to that partitioner's partition, the way other
teams' producers (librdkafka: crc32, ...) would send it.
"""

from __future__ import annotations

import asyncio
import codecs
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import orjson
from aiokafka import AIOKafkaProducer

from models.cdnow import is_cdnow_file, transaction_to_event
from schemas.events import EventValidationError, parse_event
from schemas.json_escapes import LONE_SURROGATE, lone_surrogate
from streams.partitioning import Partitioner, PartitionerName, partitioner_for
from streams.settings import Settings
from streams.signals import stop_on_signals
from schemas.errors import ConfigurationError

FileFormat = Literal["auto", "jsonl", "cdnow"]
FORMATS: tuple[str, ...] = ("auto", "jsonl", "cdnow")

# Progress callbacks are batched: a callback per line would cost more than sending the line.
_PROGRESS_EVERY = 1000


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message ready to send."""

    topic: str
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Skipped:
    """A line that was not sent, and why."""

    line: int
    reason: str


@dataclass
class ProduceReport:
    sent: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    file_format: Literal["jsonl", "cdnow"] = "jsonl"
    stopped_by: int | None = None  # the signal that stopped it early (SIGINT, SIGTERM), if any

    @property
    def events_per_s(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def resolve_format(path: Path, file_format: FileFormat) -> Literal["jsonl", "cdnow"]:
    """The concrete format of ``path``: as given, or detected from its first non-empty line."""
    if file_format == "auto":
        return "cdnow" if is_cdnow_file(path) else "jsonl"
    if file_format not in ("jsonl", "cdnow"):
        raise ConfigurationError(f"unknown format {file_format!r}; expected one of {', '.join(FORMATS)}")
    return file_format


def route_line(line: bytes, topics: dict[str, str]) -> tuple[str, bytes] | str:
    """(topic, key) for one JSONL line, or what is wrong with it (it cannot be routed and keyed).

    The worker validates the whole event; here we only need enough to route and key it.

    >>> topics = {"purchase": "p"}
    >>> route_line(b'{"type": "purchase", "customer_id": "c1"}', topics)
    ('p', b'c1')
    >>> print(route_line(b'{"type": "purchase", "customer_id": "c1", "amount": NaN}', topics))
    not JSON: unexpected character, expected a JSON value at column 53 (NaN is not a JSON number: ...)
    >>> route_line(b'{"type": "purchase", "customer_id": "c1",}', topics)
    'not JSON: trailing comma is not allowed at column 41'
    >>> route_line(b'{"type": "refund", "customer_id": "c1"}', topics)
    "unknown 'type' 'refund' (expected purchase)"
    """
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return not_json(line, exc)
    if not isinstance(obj, dict):
        return f"not a JSON object but {_json_kind(obj)}"
    etype, customer = obj.get("type"), obj.get("customer_id")
    if "type" not in obj:
        return "no 'type'"
    if not isinstance(etype, str) or etype not in topics:
        return f"unknown 'type' {_shown(etype)} (expected {', '.join(topics)})"
    if "customer_id" not in obj:
        return "no 'customer_id'"
    if not isinstance(customer, str):
        return f"'customer_id' is {_json_kind(customer)}, not a string"
    return topics[etype], customer.encode()


#: What orjson says for a lone surrogate's escape (schemas.json_escapes).
_SURROGATE_WORDING = frozenset({"no low surrogate in string", "invalid low surrogate in string",
                                "invalid high surrogate in string"})

#: Literals that other JSON writers emit (Python's json, JavaScript) but JSON does not have.
_NOT_JSON_NUMBERS = (b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"-inf")


def not_json(line: bytes, exc: orjson.JSONDecodeError) -> str:
    """Why ``line`` is not JSON: the parser's message, where (column, 1-based) and, for the usual
    culprits, what to write instead."""
    if exc.msg.startswith("str is not valid UTF-8"):  # orjson says "surrogates" for any bad byte
        try:
            line.decode("utf-8")
        except UnicodeDecodeError as bad:
            return f"not JSON: not valid UTF-8 ({bad.reason}) at byte {bad.start + 1}"
    if exc.msg in _SURROGATE_WORDING:  # the escape is complete: say what is wrong with it
        found = lone_surrogate(line)
        if found is not None:
            return f"not JSON: invalid {found[0]} escape at column {found[2]}: {LONE_SURROGATE}"
    reason = f"not JSON: {exc.msg} at column {exc.colno}"
    rest = line[exc.pos:] if 0 <= exc.pos < len(line) else b""
    literal = next((lit for lit in _NOT_JSON_NUMBERS if rest.startswith(lit)), None)
    if literal is not None:
        reason += f" ({literal.decode()} is not a JSON number: write null or a number)"
    return reason


def _json_kind(value: object) -> str:
    kinds = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _shown(value: object) -> str:
    text = repr(value) if isinstance(value, str) else _json_kind(value)
    return text if len(text) <= 40 else text[:37] + "..."


def jsonl_record(line: bytes, number: int, topics: dict[str, str]) -> Outgoing | Skipped:
    routed = route_line(line, topics)
    if isinstance(routed, str):
        return Skipped(number, routed)
    topic, key = routed
    return Outgoing(topic, key, line)


def cdnow_record(line: bytes, number: int, topic: str) -> Outgoing | Skipped:
    """A CDNOW transaction as a purchase event, or why it cannot be one.

    The converted event is validated here, not only by the worker: a bad CDNOW line is the file's
    fault, and its line number is only known here (the worker would dead-letter a puzzle).
    """
    try:
        event = transaction_to_event(line, line_number=number)
        value = orjson.dumps(event)  # NaN/inf become null here, which the contract rejects
        parse_event(value, expected_type="purchase")
    except EventValidationError as exc:
        return Skipped(number, str(exc))
    except ValueError as exc:  # wrong column count, bad date or number, not UTF-8
        return Skipped(number, str(exc).removeprefix(f"line {number}: "))
    return Outgoing(topic, event["customer_id"].encode(), value)


def iter_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, raw byte length, stripped line) for each non-empty line; a UTF-8 byte order
    mark at the start of the file is dropped (``utf-8-sig``)."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if number == 1:
                line = line.removeprefix(codecs.BOM_UTF8).strip()
            if line:
                yield number, len(raw), line


def iter_records(path: Path, file_format: Literal["jsonl", "cdnow"],
                 settings: Settings) -> Iterator[tuple[int, Outgoing | Skipped]]:
    """(bytes read so far, record) for every non-empty line of ``path``."""
    topics = settings.topics.input_topics
    done = 0
    for number, size, line in iter_lines(path):
        done += size
        if file_format == "cdnow":
            yield done, cdnow_record(line, number, topics["purchase"])
        else:
            yield done, jsonl_record(line, number, topics)


class _Pacer:
    """Sleeps just enough to keep the average send rate at ``rate`` events per second."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.started = time.monotonic()

    async def wait(self, sent: int) -> None:
        if self.rate <= 0:
            return
        ahead = sent / self.rate - (time.monotonic() - self.started)
        if ahead > 0:
            await asyncio.sleep(ahead)


def topic_partitioners(partitioner: PartitionerName | None, topics: dict[str, str]) -> dict[str, Partitioner]:
    """Topic -> the partitioner ``partitioner`` uses for it (``mixed``: one per topic), from
    ``topics`` (event type -> topic); empty for None, the client's own partitioner."""
    if partitioner is None:
        return {}
    return {topic: partitioner_for(partitioner, etype) for etype, topic in topics.items()}


class ExplicitPartitions:
    """The partition each message goes to: its topic's partitioner applied to its key, or None
    (the client's own partitioner) for a topic without one.

    The partition count is each topic's real one, from the producer's metadata, not the
    configured ``topics.partitions``: the topic may exist with another count, and a producer
    hashes over the partitions the topic has.
    """

    def __init__(self, producer: AIOKafkaProducer, by_topic: dict[str, Partitioner]) -> None:
        self.producer, self.by_topic = producer, by_topic
        self.counts: dict[str, int] = {}

    async def count(self, topic: str) -> int:
        """The partitions ``topic`` has on the broker (fetched once)."""
        if topic not in self.counts:
            self.counts[topic] = len(await self.producer.partitions_for(topic))
        return self.counts[topic]

    async def __call__(self, record: Outgoing) -> int | None:
        choose = self.by_topic.get(record.topic)
        if choose is None:
            return None
        return choose(record.key, await self.count(record.topic))


async def produce_file(
    settings: Settings,
    path: Path,
    file_format: FileFormat = "auto",
    rate: float = 0.0,
    limit: int = 0,
    on_progress: Callable[[int], None] | None = None,
    on_skip: Callable[[Skipped], None] | None = None,
    partitioner: PartitionerName | None = None,
    stop: asyncio.Event | None = None,
) -> ProduceReport:
    """Send the events of ``path``; ``limit`` > 0 stops after that many sent events, ``stop``
    (set by a signal handler, see :func:`produce_until_signalled`) after the event being sent.

    ``on_progress`` receives the number of bytes read so far; ``on_skip`` each skipped line.
    ``partitioner`` (see ``streams.partitioning``) sends each message to an explicit partition;
    None leaves it to the client's own partitioner.
    """
    report = ProduceReport(file_format=resolve_format(path, file_format))
    by_topic = topic_partitioners(partitioner, settings.topics.input_topics)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5,
                                enable_idempotence=True, **settings.kafka_client_kwargs())
    try:
        await producer.start()
    except BaseException:  # unreachable, or interrupted while connecting: close what it opened
        await producer.stop()
        raise
    partition_of = ExplicitPartitions(producer, by_topic)
    started = time.monotonic()
    pacer = _Pacer(rate)
    done = 0
    try:
        for done, record in iter_records(path, report.file_format, settings):
            if isinstance(record, Skipped):
                report.skipped.append(record)
                if on_skip:
                    on_skip(record)
                continue
            # send() only enqueues into a batch; flush() below waits for the acknowledgements.
            await producer.send(record.topic, record.value, key=record.key, partition=await partition_of(record))
            report.sent += 1
            await pacer.wait(report.sent)
            if on_progress and report.sent % _PROGRESS_EVERY == 0:
                on_progress(done)
            if (limit and report.sent >= limit) or (stop is not None and stop.is_set()):
                break
        await producer.flush()
    finally:
        await producer.stop()
    if on_progress:
        on_progress(done)
    report.seconds = time.monotonic() - started
    return report


async def produce_until_signalled(settings: Settings, path: Path, **options: Any) -> ProduceReport:
    """:func:`produce_file`, stopped cleanly by SIGINT or SIGTERM: what was sent is flushed and the
    producer closed, and the report says which signal stopped it (``stopped_by``). Without this,
    Ctrl-C cancelled the send under way and, on a busy broker, the cancelled client could keep the
    command from ending (seen in the test suite: still running 30 s after Ctrl-C)."""
    with stop_on_signals() as request:
        report = await produce_file(settings, path, stop=request.event, **options)
    report.stopped_by = request.signum
    return report
