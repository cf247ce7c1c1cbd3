"""Topic declarations. Input topics carry raw bytes: we validate with pydantic ourselves because
faust's Record decoding is slower and its errors do not name fields for the dead-letter topic."""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.kafka_admin import TopicSpec
from streams.settings import Settings


@dataclass(frozen=True)
class Topics:
    inputs: dict[str, faust.TopicT]  # event type -> topic
    segment_changes: faust.TopicT
    dead_letter: faust.TopicT


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    t = settings.topics
    def raw(name: str, partitions: int) -> faust.TopicT:
        # 'raw' serializers: the agent sees the exact bytes (faust would JSON-decode by default).
        return app.topic(name, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=partitions, replicas=t.replication_factor)
    return Topics(
        inputs={etype: raw(name, t.partitions) for etype, name in t.input_topics.items()},
        segment_changes=raw(t.name("segment_changes"), t.partitions),
        dead_letter=raw(t.name("dead_letter"), t.partitions),
    )


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """What ``segstream topics create`` and the worker create before they start."""
    t = settings.topics
    week_ms = str(7 * 24 * 3600 * 1000)
    inputs = [TopicSpec(name, t.partitions, t.replication_factor) for name in t.input_topics.values()]
    return inputs + [
        TopicSpec(t.name("segment_changes"), t.partitions, t.replication_factor),
        # Dead letters are kept longer than inputs: someone has to look at them.
        TopicSpec(t.name("dead_letter"), t.partitions, t.replication_factor,
                  (("retention.ms", str(4 * int(week_ms))),)),
    ]
