"""The internal topics have contracts like the input topics (schemas/internal.py): what the
sweep and the sample forwarder write is read back exactly, and a damaged message is dead-lettered
(re-evaluation) or refused (trainer samples) naming the field, never half-read."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from models.features import FeatureBasis
from schemas.events import EventValidationError
from schemas.internal import parse_reevaluation, parse_trainer_samples
from streams.processor import InMessage
from streams.sampling import decode_samples, encode_samples
from streams.sweep import Sweeper
from tests.test_event_clock import REEVALUATE, DeadLetters, Worker


def test_a_sweep_batch_is_read_back_as_written() -> None:
    sweeper = Sweeper(partitions=1, batch=10, period_s=60.0, identity="3f2a")
    [batch] = sweeper.tick([b"ann", b"bob"], {0}, now=0.0).values()
    doc = parse_reevaluation(batch.to_json())
    assert (doc.customers, doc.sweep_pass, doc.end, doc.sweeper) == (["ann", "bob"], 1, True, "3f2a")
    wire = {"customers": ["ann", "bob"], "pass": 1, "end": True, "sweeper": "3f2a"}
    assert orjson.loads(batch.to_json()) == wire
    # a batch from a worker before the sweeper field: read as nobody's (counted by no one)
    assert parse_reevaluation(b'{"customers": ["ann"], "pass": 1, "end": true}').sweeper is None


def test_trainer_samples_are_read_back_as_written() -> None:
    basis = FeatureBasis(*range(14))
    samples, forget, clock = decode_samples(encode_samples([("ann", basis)], ["gone"], 1_767_225_600.0))
    assert [(cid, b.to_list()) for cid, b in samples] == [("ann", basis.to_list())]
    assert (forget, clock) == (["gone"], 1_767_225_600.0)


@pytest.mark.parametrize("raw, field", [
    (b'{"customers": "ann"}', "customers"),
    (b'{"customers": [""]}', "customers.0"),
    (b'{"customers": ["ann"], "pass": -1}', "pass"),
    (b'not json', ""),
])
def test_a_damaged_reevaluation_batch_is_dead_lettered_naming_the_field(raw: bytes, field: str) -> None:
    worker = Worker()
    worker.outputs = DeadLetters()
    worker.processor.outputs = worker.outputs
    asyncio.run(worker.processor.handle_batch([InMessage(REEVALUATE, 0, 7, None, raw)]))
    [(offset, problems)] = worker.outputs.dead
    assert offset == 7 and problems[0].field == field, problems


def test_damaged_trainer_samples_are_refused_naming_the_field() -> None:
    with pytest.raises(EventValidationError, match="samples"):
        parse_trainer_samples(b'{"samples": [["ann"]]}')
    with pytest.raises(EventValidationError, match="clock"):
        parse_trainer_samples(b'{"clock": "yesterday"}')
