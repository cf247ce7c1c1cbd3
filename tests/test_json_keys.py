"""A JSON object that repeats a key is rejected, at any depth, in every contract parsed from JSON;
the cheap check that spares the full one never lets a repeated key through (schemas/json_keys.py)."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.erasure import parse_erasure
from schemas.events import EventValidationError, parse_event
from schemas.json_keys import duplicate_key, keys_may_repeat

PURCHASE = ('{"type":"purchase","event_id":"e1","customer_id":"c1","timestamp":"2026-05-02T10:00:00Z",'
            '"amount":10.0')


@pytest.mark.parametrize("tail,key", [
    (',"amount":-10.0}', "amount"),                  # case 10 line 8
    (' , "amount" : -10.0}', "amount"),              # whitespace around the colon
    (',"amount"\n:-10.0}', "amount"),
    (',"\\u0061mount":-10.0}', "amount"),            # the same key, escaped
    (',"currency":"USD","currency":"EUR"}', "currency"),
    (',"type":"purchase"}', "type"),                 # same value twice: still two keys
])
def test_an_event_repeating_a_key_is_rejected_naming_it(tail: str, key: str) -> None:
    for raw in (PURCHASE + tail, (PURCHASE + tail).encode()):
        with pytest.raises(EventValidationError) as info:
            parse_event(raw)
        assert (info.value.problems[0].field, str(info.value).split(";")[0]) == (key, f'{key}: duplicate key "{key}"')


def test_a_repeated_key_is_named_even_when_the_message_is_invalid_anyway() -> None:
    with pytest.raises(EventValidationError) as info:
        parse_event(PURCHASE + ',"amount":"ten"}')
    assert [p.error for p in info.value.problems][0] == "duplicate_key"


def test_an_erasure_repeating_a_key_at_any_depth_is_rejected() -> None:
    base = '{"customer_id":"c1","request_id":"r1","requested_at":"2026-01-01T00:00:00Z"'
    parse_erasure(base + ',"cutoff":{"purchases":[1],"engagements":[2]}}')  # distinct keys: fine
    for raw, field in ((base + ',"request_id":"r2"}', "request_id"),
                       (base + ',"cutoff":{"purchases":[1],"purchases":[9]}}', "cutoff.purchases")):
        with pytest.raises(EventValidationError) as info:
            parse_erasure(raw)
        assert [(p.field, p.message) for p in info.value.problems] == [(field, f'duplicate key "{field.split(".")[-1]}"')]


def test_the_same_key_in_two_objects_or_inside_a_text_is_no_repeat() -> None:
    assert duplicate_key(b'{"a":{"x":1},"b":[{"x":2},{"x":3}]}') is None
    text = '{"type":"feedback","event_id":"f","customer_id":"c","timestamp":"2026-05-02T10:00:00Z",' \
           '"kind":"complaint","text":"\\"kind\\": \\"complaint\\", \\"kind\\": again"}'
    assert parse_event(text).text.startswith('"kind"')


keys = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=4)
documents = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.lists(st.tuples(keys, inner), max_size=4),
    max_leaves=12,
)


def render(node: object, seps: tuple[str, str], escape: bool) -> str:
    """JSON text of a document whose objects are lists of (key, value) pairs (keys may repeat)."""
    if isinstance(node, list) and node and all(isinstance(p, tuple) for p in node):
        return "{" + seps[0].join(json.dumps(k, ensure_ascii=escape) + seps[1] + render(v, seps, escape)
                                  for k, v in node) + "}"
    if isinstance(node, list):
        return "[" + seps[0].join(render(v, seps, escape) for v in node) + "]"
    return json.dumps(node, ensure_ascii=escape)


def kept(node: object) -> int:
    if isinstance(node, dict):
        return len(node) + sum(kept(v) for v in node.values())
    if isinstance(node, list):
        return sum(kept(v) for v in node)
    return 0


def repeats(node: object) -> bool:
    if isinstance(node, list) and node and all(isinstance(p, tuple) for p in node):
        names = [k for k, _ in node]
        return len(set(names)) < len(names) or any(repeats(v) for _, v in node)
    return isinstance(node, list) and any(repeats(v) for v in node)


@given(documents, st.sampled_from([(",", ":"), (", ", ": "), (" ,\n", " :\t"), (",", "\r:")]), st.booleans())
def test_the_cheap_check_never_misses_a_repeated_key(doc: object, seps: tuple[str, str], escape: bool) -> None:
    """Property: whatever the spacing or escaping, a document that repeats a key within an object is
    flagged by the cheap check (given the keys a parser keeps) and found by the full one."""
    text = render(doc, seps, escape)
    assert (duplicate_key(text) is not None) == repeats(doc)
    if repeats(doc):
        assert keys_may_repeat(text, kept(orjson.loads(text)))
