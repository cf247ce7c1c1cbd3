"""Forwarding a message to its customer's home partition, and reading it back as the original.

A message that arrives on another partition than its customer's home (a producer with another
partitioner, see :mod:`streams.partitioning`) is sent, key and value unchanged, to the home
partition of the internal repartition topic, with one header naming where it came from. The
customer agent consumes that topic with the inputs and treats a forwarded message as the
original: routed by its source topic, deduplicated by its source topic-partition and offset
(a forward repeated after a crash is recognised like any redelivery), and dead-lettered under its
source coordinates.

>>> header = origin_header("segstream.purchases", 3, 1234)
>>> header
('segstream-origin', b'segstream.purchases:3:1234')
>>> parse_origin({header[0]: header[1]})
('segstream.purchases', 3, 1234)
>>> parse_origin({}) is None, parse_origin({ORIGIN_HEADER: b"purchases:x:1"}) is None
(True, True)
"""

from __future__ import annotations

from typing import Any, Mapping

__all__ = ["ORIGIN_HEADER", "origin_header", "parse_origin"]

#: Header of a forwarded message: ``b"<topic>:<partition>:<offset>"`` of the original (Kafka topic
#: names cannot hold ``:``).
ORIGIN_HEADER = "segstream-origin"


def origin_header(topic: str, partition: int, offset: int) -> tuple[str, bytes]:
    return ORIGIN_HEADER, f"{topic}:{partition}:{offset}".encode()


def parse_origin(headers: Mapping[str, Any] | None) -> tuple[str, int, int] | None:
    """(topic, partition, offset) of the original message, or None when the header is missing or
    malformed (then the message is dead-lettered: only the worker writes the repartition topic)."""
    raw = (headers or {}).get(ORIGIN_HEADER)
    if not isinstance(raw, (bytes, bytearray)):
        return None
    try:
        topic, partition, offset = raw.decode().rsplit(":", 2)
        origin = topic, int(partition), int(offset)
    except (UnicodeDecodeError, ValueError):
        return None
    if not topic or origin[1] < 0 or origin[2] < 0:
        return None
    return origin
