"""Which partition a customer lives on, and the partitioners other teams' producers use.

A customer's state lives on **one** partition of the worker's table: its *home partition*,
``murmur2(customer_id) % partitions``, the partition Kafka's Java client, aiokafka and Kafka
Streams give a key by default (:func:`home_partition`). Producers are not ours: librdkafka and
everything built on it (confluent-kafka for Python, Go and .NET, node-rdkafka, kcat) hash keys
with CRC32 by default, Sarama and librdkafka's ``fnv1a`` with FNV-1a, and one service may use
another partitioner than the next. The customer agent therefore checks every input message: on
its customer's home partition it is processed there; anywhere else it is forwarded, unchanged,
to the home partition of the internal repartition topic (Kafka Streams' repartition topics and
faust's ``group_by`` do the same), which the same agent consumes. Producers that partition with
murmur2 pay one cached hash per message and nothing else.

>>> home_partition(b"cdnow-0001", 4), crc32_partition(b"cdnow-0001", 4), fnv1a_partition(b"cdnow-0001", 4)
(1, 0, 2)
>>> home = HomePartitions(4)
>>> home(b"cdnow-0001")
1
>>> PARTITIONERS["crc32"](b"cdnow-0001", 4)
0
"""

from __future__ import annotations

import functools
import zlib
from typing import Callable, Literal, get_args

from aiokafka.partitioner import murmur2
from schemas.errors import ConfigurationError

__all__ = ["MIXED_PARTITIONERS", "PARTITIONER_CHOICES", "PARTITIONERS", "HomePartitions", "PartitionerName",
           "crc32_partition", "fnv1a_partition", "home_partition", "partitioner_for"]

Partitioner = Callable[[bytes, int], int]
#: What a producer under test may be told to partition with: one of :data:`PARTITIONERS`, or
#: ``mixed``, a different one per input topic (:data:`MIXED_PARTITIONERS`).
PartitionerName = Literal["murmur2", "crc32", "fnv1a", "mixed"]
PARTITIONER_CHOICES: tuple[str, ...] = get_args(PartitionerName)


def home_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (Java client, aiokafka, kcat ``-X partitioner=murmur2``):
    ``(murmur2(key) & 0x7fffffff) % partitions``. Where segstream keeps the customer ``key``."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def crc32_partition(key: bytes, partitions: int) -> int:
    """librdkafka's default ``consistent_random`` for a non-empty key (also ``consistent``):
    ``crc32(key) % partitions`` (confluent-kafka, node-rdkafka, kcat on its defaults)."""
    return zlib.crc32(key) % partitions


def fnv1a_partition(key: bytes, partitions: int) -> int:
    """librdkafka's ``fnv1a`` partitioner (Sarama's default): ``abs(int32(fnv1a_32(key))) % partitions``."""
    h = 0x811C9DC5
    for byte in key:
        h = ((h ^ byte) * 0x01000193) & 0xFFFFFFFF
    if h >= 0x80000000:  # librdkafka (like Sarama) takes the absolute value of the signed hash
        h = (1 << 32) - h
    return h % partitions


#: By the names librdkafka gives them (``-X partitioner=...`` in kcat).
PARTITIONERS: dict[str, Partitioner] = {
    "murmur2": home_partition,
    "crc32": crc32_partition,
    "fnv1a": fnv1a_partition,
}


#: ``mixed``: the partitioner of each input topic's producers, by event type. Four teams, three
#: clients: a Java/aiokafka service writes purchases, a confluent-kafka one engagements, a Sarama
#: (or librdkafka ``fnv1a``) one feedback, and the CDP's connector (librdkafka's default, CRC32)
#: profile updates; every customer then has messages off its home partition.
MIXED_PARTITIONERS: dict[str, str] = {"purchase": "murmur2", "engagement": "crc32", "feedback": "fnv1a",
                                      "profile": "crc32"}


def partitioner_for(name: str, event_type: str) -> Partitioner:
    """The partitioner a producer configured with ``name`` (one of :data:`PARTITIONER_CHOICES`)
    uses for events of ``event_type``: the named one for every type, or, for ``mixed``, the
    topic's own from :data:`MIXED_PARTITIONERS`. Raises ``ValueError`` for an unknown name or type.

    >>> partitioner_for("crc32", "purchase") is crc32_partition
    True
    >>> [partitioner_for("mixed", t).__name__ for t in ("purchase", "engagement", "feedback", "profile")]
    ['home_partition', 'crc32_partition', 'fnv1a_partition', 'crc32_partition']
    """
    if name not in PARTITIONER_CHOICES:
        raise ConfigurationError(f"unknown partitioner {name!r}; expected one of {', '.join(PARTITIONER_CHOICES)}")
    if event_type not in MIXED_PARTITIONERS:
        raise ConfigurationError(f"unknown event type {event_type!r}; expected one of {', '.join(MIXED_PARTITIONERS)}")
    return PARTITIONERS[MIXED_PARTITIONERS[event_type] if name == "mixed" else name]


class HomePartitions:
    """``home(key)``: the customer's home partition, cached (murmur2 in pure Python costs about
    3 µs a key; a cache hit about 0.1 µs). ``partitions`` is the count of every per-customer topic."""

    def __init__(self, partitions: int, cache_size: int = 1 << 17):
        self.partitions = partitions
        self._cached = functools.lru_cache(maxsize=cache_size)(self._compute)

    def _compute(self, key: bytes) -> int:
        return home_partition(key, self.partitions)

    def __call__(self, key: bytes) -> int:
        return self._cached(key)
