"""Profile events through the worker's processor (in process, no Kafka): the profile topic is an
input like the others (routed, counted under a bounded ``event_type`` label, dead-lettered with the
field named), and no trait value ever reaches a log line. The same on the real broker:
tests/test_profile_e2e.py."""

from __future__ import annotations

import asyncio
import logging

import orjson
import pytest

from models.config import EngineConfig
from models.pipeline import Pipeline
from models.state import CustomerState
from monitoring.exposition import metric_sum
from monitoring.metrics import WorkerMetrics
from schemas.events import FieldProblem
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings, TopicSettings
from streams.topics import topic_specs

TOPICS = Settings().topics
PROFILE = TOPICS.input_topics["profile"]
TS = "2026-03-01T10:00:00Z"


def profile(eid: str, **traits: object) -> dict:
    return {"type": "profile", "event_id": eid, "customer_id": "c-1", "timestamp": TS, **traits}


class Letters:
    """The processor's outputs: the dead letters kept (by offset), the rest dropped."""

    def __init__(self) -> None:
        self.problems: dict[int, tuple[str, list[FieldProblem]]] = {}

    async def changes(self, changes: list) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def dead_letter(self, message: InMessage, source_type: str, problems: list[FieldProblem]) -> None:
        self.problems[message.offset] = (source_type, problems)

    async def forward(self, message: InMessage, partition: int) -> None:
        raise AssertionError("one partition: nothing to forward")

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}


def feed(messages: list[tuple[str, dict | bytes]], engine: EngineConfig | None = None
         ) -> tuple[Letters, dict[bytes, bytes], WorkerMetrics]:
    routes = {name: etype for etype, name in TOPICS.input_topics.items()}
    table: dict[bytes, bytes] = {}
    letters, metrics = Letters(), WorkerMetrics()
    processor = CustomerProcessor(Pipeline(engine or EngineConfig(), train_locally=False), table, letters,
                                  WorkerClock("event"), SampleForwarder(), metrics, routes)
    msgs = [InMessage(topic, 0, offset, b"c-1", doc if isinstance(doc, bytes) else orjson.dumps(doc))
            for offset, (topic, doc) in enumerate(messages)]
    asyncio.run(processor.handle_batch(msgs))
    return letters, table, metrics


def test_the_profile_topic_is_an_input_topic_like_the_others() -> None:
    assert TOPICS.input_topics["profile"] == "segstream.profile"
    renamed = TopicSettings(prefix="x.", profile="crm-traits")
    assert renamed.input_topics["profile"] == "x.crm-traits"
    created = {spec.name: spec.partitions for spec in topic_specs(Settings(topics=renamed))}
    assert created["x.crm-traits"] == created["x.purchases"] == renamed.partitions  # co-partitioned


def test_a_profile_event_is_applied_and_counted_under_its_type() -> None:
    letters, table, metrics = feed([(PROFILE, profile("p1", country="DE", consent={"email": True})),
                                    (PROFILE, profile("p1", country="DE", consent={"email": True}))])
    assert letters.problems == {}
    state = CustomerState.from_bytes(table[b"c-1"])
    assert state.traits["country"][1] == "DE" and state.traits["consent_email"][1] is True
    text = _latest(metrics)
    assert metric_sum(text, "segstream_events_total", event_type="profile", outcome="applied") == 1
    assert metric_sum(text, "segstream_events_total", event_type="profile", outcome="duplicate") == 1


def _latest(metrics: WorkerMetrics) -> str:
    from prometheus_client import generate_latest

    return generate_latest(metrics.registry).decode()


# Trait values no log line may hold: each is the value of a trait in a bad message below.
SECRETS = ("Qz", "DE-QQ7", "Mars/Olympus_Mons", "jane.doe@example.com", "987654321.5", "Gotham Heights",
           "Gotham-Unique", "Sekret#Street 12")


@pytest.mark.parametrize("topic_of", ["profile", "purchase"])
def test_a_bad_profile_is_dead_lettered_naming_the_field_and_its_log_line_holds_no_trait(
        caplog: pytest.LogCaptureFixture, topic_of: str) -> None:
    topic = TOPICS.input_topics[topic_of]  # on its own topic, and on another one
    bad = [
        profile("b1", country="Qz"),
        profile("b2", region="DE-QQ7", city="Gotham Heights"),
        profile("b3", time_zone="Mars/Olympus_Mons"),
        profile("b4", consent={"jane.doe@example.com": True}),
        profile("b5", postal_code="Sekret#Street 12"),
        profile("b6", interests=["Gotham-Unique"]),
        profile("b7", acquisition_cost=987654321.5, currency="XTS"),  # beyond any value at that rate
    ]
    engine = EngineConfig.model_validate({"value": {"currency_rates": {"XTS": 1e300}}})
    with caplog.at_level(logging.INFO, logger="segstream"):
        letters, table, metrics = feed([(topic, doc) for doc in bad], engine)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not [s for s in SECRETS if s in logged], logged
    lines = [r.getMessage() for r in caplog.records if "dead-lettered" in r.getMessage()]
    assert len(lines) == len(bad) == len(letters.problems)
    assert table == {}  # nothing applied
    if topic_of == "profile":
        fields = {offset: [p.field for p in problems] for offset, (_, problems) in letters.problems.items()}
        assert fields == {0: ["country"], 1: ["region"], 2: ["time_zone"], 3: ["consent.jane.doe@example.com"],
                          4: ["postal_code"], 5: ["interests.0"], 6: ["acquisition_cost"]}
        # The log names the field (never a sender's key) and the error; the dead letter keeps the reason.
        assert "country: <code_list>" in lines[0] and "region: <code_list>" in lines[1]
        assert "consent.<unknown field>: <extra_forbidden>" in lines[3]
        assert "acquisition_cost: <rejected>" in lines[6]
        assert "'Qz'" in letters.problems[0][1][0].message  # the dead-letter topic has the whole reason
        assert {source for source, _ in letters.problems.values()} == {"profile"}
        text = _latest(metrics)
        assert metric_sum(text, "segstream_events_total", event_type="profile", outcome="invalid") == 6
        assert metric_sum(text, "segstream_events_total", event_type="profile", outcome="rejected") == 1
        assert metric_sum(text, "segstream_dead_letters_total", source="profile") == 7
    else:
        assert all(problems[0].error == "wrong_topic" for _, problems in letters.problems.values())


def test_a_profile_off_its_home_partition_is_forwarded_and_applied_there_as_a_profile() -> None:
    """A CDP connector on librdkafka's CRC32 (``--partitioner mixed``) puts profiles off home: they go
    through the repartition topic like any input, counted under source="profile"."""
    forwarded: list[tuple[InMessage, int]] = []

    class Forwarding(Letters):
        async def forward(self, message: InMessage, partition: int) -> None:
            forwarded.append((message, partition))

    repartition = TOPICS.name("repartition")
    routes = {name: etype for etype, name in TOPICS.input_topics.items()} | {repartition: "repartition"}
    table: dict[bytes, bytes] = {}
    metrics = WorkerMetrics()
    processor = CustomerProcessor(Pipeline(EngineConfig(), train_locally=False), table, Forwarding(),
                                  WorkerClock("event"), SampleForwarder(), metrics, routes, home=lambda _key: 1)
    raw = orjson.dumps(profile("p1", country="AT"))
    asyncio.run(processor.handle_batch([InMessage(PROFILE, 0, 7, b"c-1", raw)]))
    assert [(m.topic, m.offset, partition) for m, partition in forwarded] == [(PROFILE, 7, 1)]
    assert table == {}  # not applied off home
    asyncio.run(processor.handle_batch([InMessage(PROFILE, 0, 7, b"c-1", raw, forwarded=True,
                                                  delivered_on=(repartition, 1))]))
    assert CustomerState.from_bytes(table[b"c-1"]).traits["country"][1] == "AT"
    text = _latest(metrics)
    assert metric_sum(text, "segstream_repartitioned_total", source="profile") == 1
    assert metric_sum(text, "segstream_events_total", event_type="profile", outcome="applied") == 1
