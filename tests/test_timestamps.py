"""Every timestamp of every contract is an RFC 3339 date-time (schemas/timestamps.py), and the
published schema's ``format: date-time`` + ``pattern`` says exactly the same (checked here with
``jsonschema``'s format checker on each listed string; generated documents: test_schema_conformance)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest
from jsonschema import Draft202012Validator

from schemas.dead_letter import DeadLetter
from schemas.erasure import parse_erasure
from schemas.events import EventValidationError, PurchaseEvent, parse_event
from schemas.segment_change import SegmentChange
from schemas.timestamps import parse_rfc3339

UTC = timezone.utc

ACCEPTED: list[tuple[str, datetime]] = [
    ("2026-03-29T02:30:00+01:00", datetime(2026, 3, 29, 1, 30, tzinfo=UTC)),
    ("2026-06-04t10:00:00z", datetime(2026, 6, 4, 10, tzinfo=UTC)),              # lower-case t and z
    ("2026-06-05T10:00:00-00:00", datetime(2026, 6, 5, 10, tzinfo=UTC)),         # unknown local offset
    ("2026-06-06T10:00:00+14:00", datetime(2026, 6, 5, 20, tzinfo=UTC)),
    ("2026-06-06T10:00:00+23:59", datetime(2026, 6, 5, 10, 1, tzinfo=UTC)),      # the RFC's largest offset
    ("2026-06-06T10:00:00-23:59", datetime(2026, 6, 7, 9, 59, tzinfo=UTC)),
    ("2026-06-03T10:00:00.1Z", datetime(2026, 6, 3, 10, 0, 0, 100_000, tzinfo=UTC)),
    ("2026-06-03T10:00:00.123456789Z", datetime(2026, 6, 3, 10, 0, 0, 123_456, tzinfo=UTC)),
    ("2026-12-31T23:59:59.9999999Z", datetime(2026, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)),  # truncated
    ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
    ("1990-01-01T00:00:00+05:00", datetime(1989, 12, 31, 19, tzinfo=UTC)),       # the year as written
    ("2099-12-31T23:59:59-10:00", datetime(2100, 1, 1, 9, 59, 59, tzinfo=UTC)),
]

REJECTED = [
    "2026-06-01T10:00:00+0530", "2026-06-02 10:00:00+05:30", "2026-06-02_10:00:00Z", "2026-06-07T10:00:00",
    "2026-06-08", "2026-06-09T10:00:00+25:00", "2026-06-09T10:00:00+24:00", "2026-06-09T10:00:00+05:60",
    "2026-06-10T24:00:00Z", "1781085600", "2026-02-30T10:00:00Z", "2026-13-01T10:00:00Z",
    "2026-06-30T23:59:60Z",  # leap second: see the module docstring of schemas.timestamps
    "2026-06-01T10:00:00.Z", "2026-06-01T10:00Z", "2026-06-01T10:00:00Z\n", " 2026-06-01T10:00:00Z",
    "2026-06-01T10:00:00UTC", "+2026-06-01T10:00:00Z", "2026-6-1T10:00:00Z", "1989-12-31T23:59:59Z",
    "2100-01-01T00:00:00Z", "2026-06-01T10:00:00\uff3a", "２０２６-06-01T10:00:00Z",
]

TIMESTAMP_SCHEMA = PurchaseEvent.model_json_schema()["properties"]["timestamp"]
SCHEMA_CHECK = Draft202012Validator(TIMESTAMP_SCHEMA, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("text,expected", ACCEPTED, ids=[t for t, _ in ACCEPTED])
def test_rfc3339_date_times_are_accepted_and_normalised_to_utc(text: str, expected: datetime) -> None:
    value = parse_rfc3339(text)
    assert value == expected and value.utcoffset() == timedelta(0)
    assert SCHEMA_CHECK.is_valid(text)


@pytest.mark.parametrize("text", REJECTED)
def test_every_other_form_is_rejected_saying_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_rfc3339(text)
    assert "RFC 3339" in str(info.value) or "year must be" in str(info.value)
    assert not SCHEMA_CHECK.is_valid(text)


@pytest.mark.parametrize("value", [1781085600, 1781085600000, 1781085600.5, True, None, ["2026-06-01T10:00:00Z"]])
def test_a_timestamp_is_a_string(value: object) -> None:
    raw = orjson.dumps({"type": "purchase", "event_id": "e", "customer_id": "c", "timestamp": value, "amount": 1})
    with pytest.raises(EventValidationError) as info:
        parse_event(raw)
    assert [p.field for p in info.value.problems] == ["timestamp"] and "RFC 3339" in str(info.value)
    assert not SCHEMA_CHECK.is_valid(value)


@pytest.mark.parametrize("text", ["2026-06-02 10:00:00+05:30", "1781085600", "2026-06-01T10:00:00"])
def test_the_erasure_request_time_is_held_to_the_same_form(text: str) -> None:
    raw = orjson.dumps({"customer_id": "c1", "request_id": "r1", "requested_at": text})
    with pytest.raises(EventValidationError) as info:
        parse_erasure(raw)
    assert [p.field for p in info.value.problems] == ["requested_at"]


def test_output_contracts_read_back_only_rfc3339_times() -> None:
    """Consumers read the outputs with the same models (segstream tail): a change or a dead letter
    whose time is an epoch number or has a space is refused, as their published schema says."""
    change = {"change_id": "x", "customer_id": "c", "kind": "rule", "previous_segment": None,
              "segment": {"id": "s", "label": "s"}, "changed_at": "2026-06-01T10:00:00Z", "model_version": None,
              "definition_version": None, "reason": {"code": "rule_entered"}, "value": None}
    assert SegmentChange.model_validate_json(orjson.dumps(change)).changed_at.tzinfo is not None
    for bad in (1781085600, "2026-06-01 10:00:00Z"):
        with pytest.raises(ValueError):
            SegmentChange.model_validate_json(orjson.dumps({**change, "changed_at": bad}))
    with pytest.raises(ValueError):
        DeadLetter.model_validate({"payload": "", "payload_encoding": "utf-8", "payload_size": 0,
                                   "source": {"topic": "t"}, "error": "e", "problems": [],
                                   "dead_lettered_at": "2026-06-01T10:00:00"})
