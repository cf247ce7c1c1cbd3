"""The customer processor across crashes, without Kafka: a crash at each step of a batch, then the
redelivery Kafka would make. Nothing lost, nothing counted twice, and every change a subscriber
saw agrees with the state the worker keeps (the full story on the real broker: test_crash.py)."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from models.pipeline import Pipeline
from models.state import CustomerState
from models.synthetic import generate_population
from monitoring.metrics import WorkerMetrics
from streams.clock import WorkerClock
from schemas.erasure import erasure_now
from streams.harnesses.bench import events_total
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings
from streams.write_behind import StateStore

from models.config import EngineConfig

SETTINGS = Settings()
# A small model, retrained often: new models keep arriving, which is when a re-decided change
# could differ from the one first sent.
ENGINE = EngineConfig.model_validate({
    "segmentation": {"n_segments": 4, "min_customers_to_train": 30, "train_every_events": 400},
    "value": {"min_customers_for_fit": 30},
})
TOPICS = SETTINGS.topics.input_topics
ERASURES = SETTINGS.topics.name("erasures")


class Crash(Exception):
    pass


class BrokerOutputs:
    """The segment-changes topic as a list; ``crash_at`` makes one call fail like a killed process."""

    def __init__(self) -> None:
        self.published: list[str] = []  # change JSON documents, in order
        self.crash_at: str | None = None

    async def changes(self, changes: list) -> None:
        if self.crash_at == "send":
            raise Crash
        self.published.extend(c.model_dump_json() for c in changes)
        if self.crash_at == "after_send":
            raise Crash

    async def flush(self) -> None:
        if self.crash_at == "flush":
            raise Crash

    async def dead_letter(self, message: object, source_type: str, problems: list) -> None:
        raise AssertionError(f"unexpected dead letter: {problems}")

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}  # no cutoff known: the erasure covers what was consumed


def processor(table: dict, outputs: BrokerOutputs, write_behind: bool = False) -> CustomerProcessor:
    """A new process's processor over the surviving table (write-behind: a new, empty buffer)."""
    pipeline = Pipeline(ENGINE, train_locally=True)
    routes = {name: etype for etype, name in TOPICS.items()}
    routes[ERASURES] = "erasure"
    return CustomerProcessor(pipeline, table, outputs, WorkerClock("event"), SampleForwarder(), WorkerMetrics(), routes,
                             store=StateStore(table, deferred=write_behind))


def inbox() -> list[InMessage]:
    events = generate_population(60, seed=5).events
    offsets: Counter[str] = Counter()
    msgs = []
    for e in events:
        topic = TOPICS[e["type"]]
        msgs.append(InMessage(topic, 0, offsets[topic], e["customer_id"].encode(), orjson.dumps(e)))
        offsets[topic] += 1
    return msgs


def run_with_crashes(crash_at: str, every: int, write_behind: bool = False,
                     commit_every: int = 3) -> tuple[dict, BrokerOutputs, list[InMessage]]:
    """Batches of 50; the first delivery of every ``every``-th batch crashes at ``crash_at`` and,
    as after a restart, Kafka delivers again from the last commit to a new processor (the table
    survives: it is the changelog). Write-through commits after every batch; write-behind every
    ``commit_every`` batches, after writing out the waiting states (as the worker's consumer
    does before a commit), so a crash loses the states of up to ``commit_every`` batches and
    their events come again."""
    msgs, table, outputs = inbox(), {}, BrokerOutputs()
    proc = processor(table, outputs, write_behind)
    batches = [msgs[start:start + 50] for start in range(0, len(msgs), 50)]
    committed, i, delivered = 0, 0, set()
    while i < len(batches):
        outputs.crash_at = crash_at if i % every == every - 1 and i not in delivered else None
        delivered.add(i)
        try:
            asyncio.run(proc.handle_batch(batches[i]))
            i += 1
            if not write_behind or i % commit_every == 0 or i == len(batches):
                asyncio.run(proc.write_out())  # what must precede the commit
                committed = i
        except Crash:
            outputs.crash_at = None
            # A new process: nothing in memory survives, and the model comes later (the new one
            # may well decide differently from the one that made the changes already sent).
            proc = processor(table, outputs, write_behind)
            i = committed  # Kafka redelivers from the last commit
    return table, outputs, msgs


def subscriber_view(published: list[str]) -> tuple[dict[str, str | None], int, int]:
    """An idempotent subscriber: drops repeated change_ids. (cluster per customer, duplicates,
    duplicates whose content differs)."""
    first: dict[str, str] = {}
    cluster: dict[str, str | None] = {}
    duplicates = differing = 0
    for raw in published:
        change = orjson.loads(raw)
        seen = first.get(change["change_id"])
        if seen is not None:
            duplicates += 1
            differing += seen != raw
            continue
        first[change["change_id"]] = raw
        if change["kind"] == "cluster":
            cluster[change["customer_id"]] = (change.get("segment") or {}).get("id")
    return cluster, duplicates, differing


@pytest.mark.parametrize("write_behind", [False, True], ids=["write-through", "write-behind"])
@pytest.mark.parametrize("crash_at", ["flush", "send", "after_send"])
def test_a_crash_at_any_step_loses_nothing_and_subscribers_agree_with_the_state(crash_at: str,
                                                                                write_behind: bool) -> None:
    reference_table, reference_out, msgs = run_with_crashes("none", every=10**9)
    table, outputs, _ = run_with_crashes(crash_at, every=3, write_behind=write_behind)

    for key, raw in reference_table.items():  # the same value state as without crashes
        expected, got = CustomerState.from_bytes(raw), CustomerState.from_bytes(table[key])
        assert (got.purchase_count, got.total_spend, got.engagement_count) == \
               (expected.purchase_count, expected.total_spend, expected.engagement_count)
        assert got.outbox == []  # every saved change was sent and the outbox emptied
    cluster, duplicates, differing = subscriber_view(outputs.published)
    reasons = Counter(orjson.loads(raw)["reason"]["code"] for raw in reference_out.published)
    customers = {orjson.loads(raw)["customer_id"] for raw in reference_out.published}
    # The model assigned the customers and moved some of them (a count of changes would also
    # measure how stable the model is, which is not what this test is about).
    assert reasons["first_assignment"] == len(customers) >= 30 and sum(reasons.values()) > len(customers)
    assert differing == 0  # a change sent again is sent exactly as it was saved
    if crash_at == "after_send":
        assert duplicates > 0  # the redelivered batch found its changes in the outboxes
    for key, raw in table.items():
        state = CustomerState.from_bytes(raw)
        assert cluster.get(state.customer_id) == state.cluster, state.customer_id


@pytest.mark.parametrize("write_behind", [False, True], ids=["write-through", "write-behind"])
def test_an_erased_customers_exits_are_saved_in_its_marker_before_they_are_sent(write_behind: bool) -> None:
    """The exits of an erasure are changes like any other: saved (in the marker's outbox) before
    they are sent, and sent again exactly as saved after a crash. Rebuilt on the redelivered
    request instead, they would carry the same change_ids with another content (another time),
    which the crash test found with write-behind; never saved, they would be lost for good."""
    msgs, table, outputs = inbox(), {}, BrokerOutputs()
    trained = processor(table, outputs, write_behind)
    for start in range(0, len(msgs), 500):  # a model, a clock and customers in segments
        asyncio.run(trained.handle_batch(msgs[start:start + 500]))
    asyncio.run(trained.write_out())
    erased = next(CustomerState.from_bytes(raw) for raw in table.values() if CustomerState.from_bytes(raw).cluster)
    newcomer = orjson.loads(msgs[-1].value)
    newcomer.update(customer_id="newcomer", event_id="newcomer-1", type="purchase", amount=10.0)
    newcomer = {k: v for k, v in newcomer.items() if k in ("type", "event_id", "customer_id", "timestamp", "amount")}
    batch = [
        InMessage(ERASURES, 0, 0, erased.customer_id.encode(),
                  erasure_now(erased.customer_id, request_id="r-1").to_json()),
        InMessage(TOPICS["purchase"], 0, 10**6, b"newcomer", orjson.dumps(newcomer)),
    ]
    outputs.crash_at = "send"
    with pytest.raises(Crash):
        asyncio.run(trained.handle_batch(batch))
    marker = CustomerState.from_bytes(table[erased.customer_id.encode()])
    assert not marker.holds_data and marker.erasure_applied("r-1")  # the data is gone at once...
    saved = [orjson.loads(c) for c in marker.outbox]
    assert saved and all(c["reason"]["code"] == "erased" for c in saved)  # ...its exits saved before any is sent
    assert CustomerState.from_bytes(table[b"newcomer"]).outbox

    outputs.crash_at = None
    published = len(outputs.published)
    restarted = processor(table, outputs, write_behind)
    asyncio.run(restarted.handle_batch(batch))  # redelivered after the restart
    sent = outputs.published[published:]
    assert [c for c in sent if orjson.loads(c)["customer_id"] == erased.customer_id] == list(marker.outbox)
    asyncio.run(restarted.write_out())  # the commit
    left = CustomerState.from_bytes(table[erased.customer_id.encode()])
    assert not left.holds_data and left.erasure_applied("r-1") and not left.outbox


def test_a_batch_retried_in_the_same_process_after_a_failure_is_applied_once_and_evaluated() -> None:
    """The agent retries a failed batch message by message in the same process. The decoded states
    kept between batches must not hand it the half-processed states of the failed attempt: those
    hold the batch's events already (they would all look redelivered, so the retry would evaluate
    nobody and the changes they cause would be lost)."""
    msgs, table, outputs = inbox(), {}, BrokerOutputs()
    proc = processor(table, outputs)
    evaluate_many = proc.pipeline.evaluate_many
    failing = False

    def failing_evaluate_many(states, nows):  # noqa: ANN001, ANN202 - after every event of the batch was applied
        if failing:
            raise Crash
        return evaluate_many(states, nows)

    proc.pipeline.evaluate_many = failing_evaluate_many  # type: ignore[method-assign]
    failed = 0
    for n, start in enumerate(range(0, len(msgs), 50)):
        batch = msgs[start:start + 50]
        failing = n % 7 == 6 and proc.pipeline.snapshot is not None
        try:
            asyncio.run(proc.handle_batch(batch))
        except Crash:
            failed, failing = failed + 1, False
            asyncio.run(proc.handle_batch(batch))  # retried by the same processor
    exposition = proc.metrics.exposition().decode()
    assert failed > 5 and proc.cache.hits > 0
    assert events_total(exposition, "applied") == len(msgs)  # every event applied, on the retry too
    assert events_total(exposition, "duplicate") == 0
    reference_table, _, _ = run_with_crashes("none", every=10**9)
    for key, raw in reference_table.items():
        expected, got = CustomerState.from_bytes(raw), CustomerState.from_bytes(table[key])
        assert (got.purchase_count, got.total_spend, got.engagement_count) == \
               (expected.purchase_count, expected.total_spend, expected.engagement_count)
    cluster, _, _ = subscriber_view(outputs.published)
    for key, raw in table.items():  # what was decided was published
        state = CustomerState.from_bytes(raw)
        assert cluster.get(state.customer_id) == state.cluster, state.customer_id
