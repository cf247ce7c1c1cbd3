"""Producers with any partitioner, without Kafka: one processor per partition, each with a table of
its own (as workers and their stores are), fed by a producer that partitions with CRC32 or with a
different hash per topic. Every customer must end with one state, on its home partition, equal to
the ground truth, however often a forward is repeated (the real broker: test_partitioners.py)."""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict

import orjson
import pytest

from models.config import EngineConfig
from models.pipeline import Pipeline
from models.synthetic import generate_population
from monitoring.metrics import WorkerMetrics
from schemas.erasure import erasure_now
from streams.clock import WorkerClock
from streams.partitioning import PARTITIONERS, HomePartitions, home_partition, partitioner_for
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings
from tests.test_worker_e2e import ground_truth

PARTITIONS = 4
TOPICS = Settings().topics
INPUTS = TOPICS.input_topics
ERASURES = TOPICS.name("erasures")
ENGINE = EngineConfig.model_validate({
    "segmentation": {"n_segments": 3, "min_customers_to_train": 20, "train_every_events": 300},
    "value": {"min_customers_for_fit": 20},
})


class PartitionOutputs:
    """What one partition's processor sends: forwards by target partition, changes, no dead letters."""

    def __init__(self) -> None:
        self.forwards: list[tuple[InMessage, int]] = []
        self.published: list[str] = []

    async def changes(self, changes: list) -> None:
        self.published.extend(c.model_dump_json() for c in changes)

    async def flush(self) -> None:
        pass

    async def dead_letter(self, message: InMessage, source_type: str, problems: list) -> None:
        raise AssertionError(f"unexpected dead letter: {problems}")

    async def forward(self, message: InMessage, partition: int) -> None:
        self.forwards.append((message, partition))

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}


class Group:
    """``PARTITIONS`` processors, partition p's tables apart from the others'."""

    def __init__(self, home: HomePartitions | None):
        routes = {name: etype for etype, name in INPUTS.items()}
        routes[ERASURES] = "erasure"
        self.tables: list[dict] = [{} for _ in range(PARTITIONS)]
        self.outputs = [PartitionOutputs() for _ in range(PARTITIONS)]
        self.processors = [
            CustomerProcessor(Pipeline(ENGINE, train_locally=True), self.tables[p], self.outputs[p],
                              WorkerClock("event"), SampleForwarder(), WorkerMetrics(), routes, home=home)
            for p in range(PARTITIONS)]
        self.forwarded: list[InMessage] = []  # every forward, as the home partition reads it back

    def deliver(self, inbox: dict[int, list[InMessage]], batch: int = 40) -> None:
        """Process every partition's messages in batches, round-robin, then what they forwarded."""
        while any(inbox.values()):
            for p in range(PARTITIONS):
                msgs, inbox[p] = inbox[p][:batch], inbox[p][batch:]
                if msgs:
                    asyncio.run(self.processors[p].handle_batch(msgs))
            for p, out in enumerate(self.outputs):
                for msg, target in out.forwards:
                    assert target != p
                    read_back = InMessage(msg.topic, msg.partition, msg.offset, msg.key, msg.value, forwarded=True)
                    inbox[target].append(read_back)
                    self.forwarded.append(read_back)
                out.forwards.clear()

    def states(self) -> dict[bytes, list[tuple[int, object]]]:
        from models.state import CustomerState

        held: dict[bytes, list] = defaultdict(list)
        for p, table in enumerate(self.tables):
            for key, raw in table.items():
                held[key].append((p, CustomerState.from_bytes(raw)))
        return held


def produce(events: list[dict], partitioner: str) -> dict[int, list[InMessage]]:
    """The producer's partitions: ``partitioner`` for every topic, or ``mixed`` (one per topic)."""
    offsets: Counter[tuple[str, int]] = Counter()
    inbox: dict[int, list[InMessage]] = {p: [] for p in range(PARTITIONS)}
    for e in events:
        key, topic = e["customer_id"].encode(), INPUTS[e["type"]]
        p = partitioner_for(partitioner, e["type"])(key, PARTITIONS)
        inbox[p].append(InMessage(topic, p, offsets[(topic, p)], key, orjson.dumps(e)))
        offsets[(topic, p)] += 1
    return inbox


EVENTS = generate_population(60, seed=5).events


@pytest.mark.parametrize("partitioner", ["murmur2", "crc32", "fnv1a", "mixed"])
def test_every_customer_has_one_state_at_home_equal_to_the_truth(partitioner: str) -> None:
    group = Group(HomePartitions(PARTITIONS))
    group.deliver(produce(EVENTS, partitioner))
    truth = ground_truth(EVENTS)
    held = group.states()
    assert set(held) == {c.encode() for c in truth}
    for key, places in held.items():
        assert [p for p, _ in places] == [home_partition(key, PARTITIONS)], key
        state, expected = places[0][1], truth[key.decode()]
        assert state.value_fields() == expected.value_fields(), key
    if partitioner == "murmur2":
        assert not group.forwarded  # murmur2 producers: nothing forwarded
    else:
        assert group.forwarded


def test_without_forwarding_other_partitioners_split_customers() -> None:
    """What the forwarding fixes (and what this harness would show if it broke)."""
    group = Group(home=None)
    group.deliver(produce(EVENTS, "mixed"))
    assert any(len(places) > 1 for places in group.states().values())


def test_a_forward_repeated_after_a_crash_is_applied_once() -> None:
    group = Group(HomePartitions(PARTITIONS))
    group.deliver(produce(EVENTS, "crc32"))
    before = {k: places[0][1].value_fields() for k, places in group.states().items()}
    # The forwarding worker crashed before its commit: it forwards everything again.
    again: dict[int, list[InMessage]] = {p: [] for p in range(PARTITIONS)}
    for msg in group.forwarded:
        again[home_partition(msg.key, PARTITIONS)].append(msg)  # type: ignore[arg-type]
    group.deliver(again)
    after = {k: places[0][1].value_fields() for k, places in group.states().items()}
    assert after == before


def test_an_erasure_sent_with_another_partitioner_reaches_the_state() -> None:
    group = Group(HomePartitions(PARTITIONS))
    group.deliver(produce(EVENTS, "crc32"))
    customer = next(e["customer_id"] for e in EVENTS if _off_home_with_crc32(e["customer_id"].encode()))
    key = customer.encode()
    (_, state), = group.states()[key]
    segments = (state.cluster is not None) + len(state.rules)
    p = PARTITIONERS["crc32"](key, PARTITIONS)
    group.deliver({**{q: [] for q in range(PARTITIONS)},
                   p: [InMessage(ERASURES, p, 0, key, erasure_now(customer, "req-1").to_json())]})
    [(where, marker)] = group.states()[key]  # at home, only the erasure's marker is left
    assert where == home_partition(key, PARTITIONS) and not marker.holds_data and marker.erasure_applied("req-1")
    exits = [orjson.loads(c) for out in group.outputs for c in out.published]
    assert sum(c["customer_id"] == customer and c["reason"]["code"] == "erased" for c in exits) == segments
    home = group.processors[home_partition(key, PARTITIONS)]
    assert home.metrics.registry.get_sample_value("segstream_erasures_total", {"found": "true"}) == 1


def _off_home_with_crc32(key: bytes) -> bool:
    return PARTITIONERS["crc32"](key, PARTITIONS) != home_partition(key, PARTITIONS)


def test_a_forwarded_message_without_a_known_origin_is_dead_lettered() -> None:
    letters: list[tuple[InMessage, str]] = []

    class Letters(PartitionOutputs):
        async def dead_letter(self, message: InMessage, source_type: str, problems: list) -> None:
            letters.append((message, problems[0].field))

    group = Group(HomePartitions(PARTITIONS))
    processor = group.processors[0]
    processor.outputs = Letters()
    processor.routes = {**processor.routes, TOPICS.name("repartition"): "repartition"}
    unreadable = InMessage(TOPICS.name("repartition"), 0, 5, b"c", b"{}")  # no origin header
    forged = InMessage("someone.elses.topic", 2, 9, b"c", b"{}", forwarded=True)
    asyncio.run(processor.handle_batch([unreadable, forged]))
    assert letters == [(unreadable, "headers"), (forged, "headers")]
