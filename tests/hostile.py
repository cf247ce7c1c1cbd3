"""Hostile input for the worker: byte-level junk and contract violations of every kind, and
hypothesis-generated events with wrong-typed or unknown fields, mixed into valid traffic.

Every message says what the worker must do with it: ``dead_letter`` (with a reason naming the
problem, ``field``: the field the reason must name, when there is one) or ``duplicate`` (an exact
resend of a valid event: ignored, not counted twice).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import orjson

REQUIRED = {
    "purchase": ("event_id", "customer_id", "timestamp", "amount"),
    "engagement": ("event_id", "customer_id", "timestamp", "action"),
    "feedback": ("event_id", "customer_id", "timestamp", "kind"),
}
TOPIC_OF = {"purchase": "purchases", "engagement": "engagements", "feedback": "feedback"}


@dataclass(frozen=True)
class Hostile:
    category: str
    topic: str  # the topic's short name (purchases, engagements, feedback)
    key: bytes | None
    value: bytes | None
    expect: str = "dead_letter"  # or "duplicate"
    field: str | None = None  # the field the dead letter's reason must name


def _json(doc: Any) -> bytes:
    return orjson.dumps(doc)


def _replace(event: dict, **fields: Any) -> dict:
    return {**event, **fields}


def _without(event: dict, name: str) -> dict:
    return {k: v for k, v in event.items() if k != name}


def byte_level(event: dict, rng: random.Random) -> Iterator[Hostile]:
    """Junk that is not a JSON object, or not even text."""
    topic, key, raw = TOPIC_OF[event["type"]], event["customer_id"].encode(), _json(event)
    cut = rng.randrange(1, len(raw) - 1)
    yield Hostile("invalid_json", topic, key, raw[:cut])
    yield Hostile("invalid_json", topic, key, b"{not json")
    yield Hostile("invalid_json", topic, key, rng.choice([b"[]", b'"purchase"', b"42", b"null", b"true", b""]))
    yield Hostile("invalid_json", topic, key, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 300))))
    yield Hostile("invalid_json", topic, key, b"[" * 50_000 + b"]" * 50_000)  # deeply nested
    yield Hostile("invalid_utf8", topic, key, raw.replace(b'"type"', b'"ty\xffpe"', 1))
    yield Hostile("invalid_utf8", topic, key, raw.replace(event["event_id"].encode(), b"\xc3\x28\xa0\xa1", 1))
    yield Hostile("tombstone", topic, key, None)


def contract(event: dict, other_customer: str, rng: random.Random, now: datetime) -> Iterator[Hostile]:
    """Well-formed JSON that breaks the contract in one named way."""
    etype = event["type"]
    topic, key = TOPIC_OF[etype], event["customer_id"].encode()

    def bad(category: str, doc: Any, field: str | None, k: bytes | None = key, t: str = topic) -> Hostile:
        return Hostile(category, t, k, _json(doc) if not isinstance(doc, bytes) else doc, field=field)

    name = rng.choice(REQUIRED[etype])
    yield bad("missing_field", _without(event, name), name)
    yield bad("missing_field", _without(event, "type"), "type")
    yield bad("wrong_type", _replace(event, event_id=rng.choice([7, 1.5, True, None, ["e"], {"id": 1}])), "event_id")
    yield bad("wrong_type", _replace(event, customer_id=rng.choice([12345, False, None, []])), "customer_id")
    yield bad("wrong_type", _replace(event, timestamp=rng.choice([1735689600, 1.7e9, None, True, {}])), "timestamp")
    yield bad("wrong_type", _replace(event, timestamp="yesterday"), "timestamp")
    yield bad("wrong_type", _replace(event, timestamp="2026-01-02T03:04:05"), "timestamp")  # no UTC offset
    if etype == "purchase":
        yield bad("wrong_type", _replace(event, amount=rng.choice(["12.50", True, None, [1], {"v": 1}])), "amount")
        yield bad("wrong_type", _replace(event, quantity=1.5), "quantity")
        yield bad("nan_infinity", raw_number(event, "amount", rng.choice([b"NaN", b"Infinity", b"-Infinity"])), "amount")
        yield bad("nan_infinity", raw_number(event, "amount", b"1e999"), "amount")
        yield bad("out_of_range", _replace(event, amount=1e12), "amount")
        yield bad("wrong_type", _replace(event, currency="usd"), "currency")
    elif etype == "engagement":
        yield bad("wrong_type", _replace(event, action="teleport"), "action")
        yield bad("nan_infinity", raw_number(_replace(event, duration_s=1.0), "duration_s", b"NaN"), "duration_s")
    else:
        yield bad("wrong_type", _replace(event, kind="nps", score=11), "score")
        yield bad("huge_payload", _replace(event, text="x" * rng.randrange(20_000, 200_000)), "text")
    far_past = datetime(rng.choice([1900, 1970, 1989]), 6, 1, tzinfo=timezone.utc).isoformat()
    yield bad("far_past", _replace(event, timestamp=far_past), "timestamp")
    yield bad("far_future", _replace(event, timestamp="2999-01-01T00:00:00+00:00"), "timestamp")
    soon = (now + timedelta(days=rng.randrange(2, 300))).isoformat()  # valid by the contract, rejected by the engine
    yield bad("far_future", _replace(event, timestamp=soon), "timestamp")
    yield bad("key_mismatch", event, "key", k=other_customer.encode())
    yield bad("key_mismatch", event, "key", k=None)
    yield bad("key_mismatch", event, "key", k=b"k" * rng.randrange(2_000, 300_000))  # a huge key
    yield bad("unknown_type", _replace(event, type=rng.choice(["refund", "PURCHASE", "", "click", 3])), "type")
    wrong_topic = rng.choice([t for t in TOPIC_OF.values() if t != topic])
    yield bad("wrong_topic", event, "type", t=wrong_topic)
    yield bad("unknown_field", _replace(event, discount=5), "discount")
    yield bad("huge_payload", _replace(event, padding="p" * rng.randrange(300_000, 900_000)), "padding")


def raw_number(event: dict, field: str, literal: bytes) -> bytes:
    """The event with ``field`` set to a JSON number literal orjson would never write."""
    marker = "__NUMBER__"
    return _json(_replace(event, **{field: marker})).replace(f'"{marker}"'.encode(), literal)


def hypothesis_events(templates: list[dict], count: int, seed: int) -> list[Hostile]:
    """``count`` events mutated by hypothesis: one field replaced by a value of a JSON type the
    contract refuses, or an unknown field added (any JSON value). Each one is invalid by
    construction, whatever hypothesis draws."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    json_values = st.recursive(
        st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=8,
    )
    not_a_string = json_values.filter(lambda v: not isinstance(v, str))
    not_a_number = json_values.filter(lambda v: isinstance(v, bool) or not isinstance(v, (int, float)))
    string_fields = ("event_id", "customer_id", "timestamp")
    known = {"type", "event_id", "customer_id", "timestamp", "amount", "currency", "quantity", "channel", "order_id",
             "action", "duration_s", "kind", "score", "text"}

    mutation = st.one_of(
        st.tuples(st.just("replace"), st.sampled_from(string_fields), not_a_string),
        st.tuples(st.just("replace"), st.just("amount"), not_a_number),
        st.tuples(st.just("extra"), st.text(min_size=1, max_size=12).filter(lambda n: n not in known), json_values),
    )
    out: list[Hostile] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.integers(0, len(templates) - 1), mutation)
    def collect(index: int, change: tuple[str, str, Any]) -> None:
        event = templates[index]
        kind, name, value = change
        if kind == "replace" and name == "amount" and event["type"] != "purchase":
            kind = "extra"  # an amount on an engagement or feedback event is an unknown field
        doc = _replace(event, **{name: value})
        out.append(Hostile(f"hypothesis_{kind}", TOPIC_OF[event["type"]], event["customer_id"].encode(), _json(doc),
                           field=name))

    collect()
    return out[:count]


def mix(valid: list[dict], bad_count: int, seed: int, now: datetime,
        hypothesis_share: float = 0.3) -> list[tuple[str, bytes | None, bytes | None, Hostile | None]]:
    """Valid events in order with at least ``bad_count`` hostile messages spread among them, and
    an exact resend right after some valid events. (topic short name, key, value, what it is)."""
    rng = random.Random(seed)
    customers = sorted({e["customer_id"] for e in valid})
    generators: list[Callable[[dict], Iterator[Hostile]]] = [
        lambda e: byte_level(e, rng),
        lambda e: contract(e, rng.choice([c for c in customers if c != e["customer_id"]]), rng, now),
    ]
    bad: list[Hostile] = hypothesis_events(valid, int(bad_count * hypothesis_share), seed)
    while len(bad) < bad_count:
        bad.extend(rng.choice(generators)(rng.choice(valid)))
    rng.shuffle(bad)
    slots = sorted(rng.randrange(len(valid) + 1) for _ in bad)  # where each bad message goes
    out: list[tuple[str, bytes | None, bytes | None, Hostile | None]] = []
    b = 0
    for i, event in enumerate(valid):
        while b < len(bad) and slots[b] == i:
            h = bad[b]
            out.append((h.topic, h.key, h.value, h))
            b += 1
        topic, key, value = TOPIC_OF[event["type"]], event["customer_id"].encode(), _json(event)
        out.append((topic, key, value, None))
        if rng.random() < 0.05:  # sent twice (a producer retry without idempotence, a replayed file)
            out.append((topic, key, value, Hostile("duplicate_event_id", topic, key, value, expect="duplicate")))
    for h in bad[b:]:
        out.append((h.topic, h.key, h.value, h))
    return out
