"""The event contracts: strict validation that names the offending field."""

from __future__ import annotations

from datetime import timezone

import orjson
import pytest

from schemas.events import (
    EngagementEvent,
    EventValidationError,
    FeedbackEvent,
    PurchaseEvent,
    parse_event,
)

PURCHASE = {
    "type": "purchase", "event_id": "e-1", "customer_id": "c-1",
    "timestamp": "2026-03-01T12:00:00+02:00", "amount": 19.99,
}
ENGAGEMENT = {
    "type": "engagement", "event_id": "e-2", "customer_id": "c-1",
    "timestamp": "2026-03-01T12:00:00Z", "action": "page_view",
}
FEEDBACK = {
    "type": "feedback", "event_id": "e-3", "customer_id": "c-1",
    "timestamp": "2026-03-01T12:00:00Z", "kind": "nps", "score": 9,
}


def with_(base: dict, **changes) -> bytes:
    doc = {**base, **changes}
    return orjson.dumps({k: v for k, v in doc.items() if v is not DROP})


DROP = object()

# (payload, the field the error must name)
MALFORMED: list[tuple[bytes, str]] = [
    (with_(PURCHASE, amount="19.99"), "amount"),                      # string, not a number
    (with_(PURCHASE, amount=DROP), "amount"),                         # missing
    (with_(PURCHASE, amount=2e9), "amount"),                          # absurdly large
    (b'{"type":"purchase","event_id":"e","customer_id":"c","timestamp":"2026-03-01T12:00:00Z","amount":NaN}', "amount"),
    (b'{"type":"purchase","event_id":"e","customer_id":"c","timestamp":"2026-03-01T12:00:00Z","amount":Infinity}', "amount"),
    (with_(PURCHASE, currency="usd"), "currency"),                    # not ISO 4217 upper case
    (with_(PURCHASE, currency="DOLLARS"), "currency"),
    (with_(PURCHASE, quantity=0), "quantity"),
    (with_(PURCHASE, quantity=1.5), "quantity"),
    (with_(PURCHASE, channel="carrier_pigeon"), "channel"),
    (with_(PURCHASE, timestamp="2026-03-01T12:00:00"), "timestamp"),  # no offset
    (with_(PURCHASE, timestamp="yesterday"), "timestamp"),
    (with_(PURCHASE, timestamp="1969-07-20T20:17:00Z"), "timestamp"),  # far past
    (with_(PURCHASE, timestamp="2999-01-01T00:00:00Z"), "timestamp"),  # far future
    (with_(PURCHASE, event_id=""), "event_id"),
    (with_(PURCHASE, event_id=42), "event_id"),
    (with_(PURCHASE, customer_id=DROP), "customer_id"),
    (with_(PURCHASE, customer_id="has space"), "customer_id"),
    (with_(PURCHASE, customer_id="x" * 200), "customer_id"),
    (with_(PURCHASE, coupon="FREE"), "coupon"),                       # unknown field
    (with_(PURCHASE, type="refund"), "type"),                         # unknown event type
    (with_(PURCHASE, type=DROP), "type"),
    (with_(ENGAGEMENT, action="teleport"), "action"),
    (with_(ENGAGEMENT, action=DROP), "action"),
    (with_(ENGAGEMENT, duration_s=-1), "duration_s"),
    (with_(FEEDBACK, score=DROP), "score"),                           # required for nps
    (with_(FEEDBACK, score=11), "score"),                             # nps is 0-10
    (with_(FEEDBACK, kind="csat", score=0), "score"),                 # csat is 1-5
    (with_(FEEDBACK, kind="review", score=6), "score"),
    (with_(FEEDBACK, kind="complaint", score=3), "score"),            # complaints carry no score
    (with_(FEEDBACK, kind="survey"), "kind"),
    (with_(FEEDBACK, score="9"), "score"),                            # strict: no coercion
    (with_(FEEDBACK, text="x" * 10_001), "text"),
]


@pytest.mark.parametrize("payload,field", MALFORMED, ids=[f"{i}-{f}" for i, (_, f) in enumerate(MALFORMED)])
def test_malformed_payload_is_rejected_naming_the_field(payload: bytes, field: str) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(payload)
    fields = [p.field for p in info.value.problems]
    assert field in fields, f"expected an error on {field!r}, got {info.value}"
    assert field in str(info.value)


def test_there_are_at_least_20_distinct_malformed_payloads() -> None:
    assert len({p for p, _ in MALFORMED}) >= 20


@pytest.mark.parametrize("raw", [b"", b"not json", b"\xff\xfe\x00", b"[1,2]", b"null", b'"purchase"'])
def test_non_object_messages_are_rejected_with_a_message_level_error(raw: bytes) -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(raw)
    assert info.value.problems and info.value.problems[0].field in ("", "type")


def test_valid_events_parse_to_their_types_and_timestamps_become_utc() -> None:
    p = parse_event(orjson.dumps(PURCHASE))
    assert isinstance(p, PurchaseEvent)
    assert p.timestamp.tzinfo == timezone.utc and p.timestamp.hour == 10
    assert p.currency == "USD" and p.quantity is None and not p.is_refund
    assert isinstance(parse_event(orjson.dumps(ENGAGEMENT)), EngagementEvent)
    f = parse_event(orjson.dumps(FEEDBACK))
    assert isinstance(f, FeedbackEvent) and f.score == 9


def test_refund_is_a_negative_amount() -> None:
    refund = parse_event(with_(PURCHASE, amount=-5.0, order_id="o-9"))
    assert refund.is_refund


def test_event_on_the_wrong_topic_is_rejected() -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(orjson.dumps(PURCHASE), expected_type="engagement")
    assert info.value.problems[0].field == "type"


def test_support_ticket_needs_no_score() -> None:
    event = parse_event(with_(FEEDBACK, kind="support_ticket", score=DROP))
    assert event.kind.value == "support_ticket" and event.score is None
