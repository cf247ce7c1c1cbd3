"""Topic declarations. Every topic carries raw bytes: we validate with pydantic ourselves because
faust's Record decoding is slower and its errors do not name fields for the dead-letter topic.

Per-customer topics (the four inputs, erase requests, re-evaluation batches and the repartition
topic) share one partition count and the customer id as key, so they are co-partitioned with the
customer table: partition p of each lands on the worker that owns partition p of the table.
Producers may partition the inputs with any hash; what arrives off its customer's home partition
is forwarded through the repartition topic (:mod:`streams.partitioning`).
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.kafka_admin import TopicSpec
from streams.settings import Settings

DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class Topics:
    inputs: dict[str, str]  # event type -> topic name
    customer_source: faust.TopicT  # everything the customer agent consumes (all co-partitioned)
    segment_changes: faust.TopicT
    dead_letter: faust.TopicT
    erasures: faust.TopicT
    reevaluate: faust.TopicT
    repartition: faust.TopicT  # input messages forwarded to their customer's home partition
    trainer_samples: faust.TopicT
    model_snapshots: faust.TopicT  # written by the trainer; read by every worker with a plain consumer


def declare_topics(app: faust.App, settings: Settings) -> Topics:
    t = settings.topics

    def raw(*names: str, partitions: int) -> faust.TopicT:
        # 'raw' serializers: the agent sees the exact bytes (faust would JSON-decode by default).
        return app.topic(*names, key_type=bytes, value_type=bytes, key_serializer="raw",
                         value_serializer="raw", partitions=partitions, replicas=t.replication_factor)

    per_customer = [*t.input_topics.values(), t.name("erasures"), t.name("reevaluate"), t.name("repartition")]
    return Topics(
        inputs=t.input_topics,
        customer_source=raw(*per_customer, partitions=t.partitions),
        segment_changes=raw(t.name("segment_changes"), partitions=t.partitions),
        dead_letter=raw(t.name("dead_letter"), partitions=t.partitions),
        erasures=raw(t.name("erasures"), partitions=t.partitions),
        reevaluate=raw(t.name("reevaluate"), partitions=t.partitions),
        repartition=raw(t.name("repartition"), partitions=t.partitions),
        trainer_samples=raw(t.name("trainer_samples"), partitions=1),
        model_snapshots=raw(t.name("model_snapshots"), partitions=1),
    )


def topic_specs(settings: Settings) -> list[TopicSpec]:
    """What ``segstream topics`` and the worker create before they start (idempotent)."""
    t = settings.topics
    p, rf = t.partitions, t.replication_factor
    inputs = [TopicSpec(name, p, rf) for name in t.input_topics.values()]
    return inputs + [
        TopicSpec(t.name("segment_changes"), p, rf),
        # Dead letters are kept longer than inputs: someone has to look at them.
        TopicSpec(t.name("dead_letter"), p, rf, (("retention.ms", str(28 * DAY_MS)),)),
        TopicSpec(t.name("erasures"), p, rf, (("retention.ms", str(28 * DAY_MS)),)),
        # Internal traffic, useless once processed.
        TopicSpec(t.name("reevaluate"), p, rf, (("retention.ms", str(DAY_MS)),)),
        # Forwarded inputs: kept as long as Kafka keeps input topics by default (7 days); a group
        # stopped for longer loses unread inputs anyway.
        TopicSpec(t.name("repartition"), p, rf, (("retention.ms", str(7 * DAY_MS)),)),
        # One partition: one consumer in the group (the trainer) gets every sample.
        TopicSpec(t.name("trainer_samples"), 1, rf, (("retention.ms", str(DAY_MS)),)),
        # Compacted on one key: the latest model survives forever, older ones go.
        TopicSpec(t.name("model_snapshots"), 1, rf, (("cleanup.policy", "compact"),
                                                     ("max.message.bytes", str(8 * 1024 * 1024)))),
    ]
