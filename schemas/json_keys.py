"""Duplicated keys in a JSON object: a contract error, at any depth.

RFC 8259 says names within an object SHOULD be unique and leaves the meaning of a repeated one to
the parser: most parsers (pydantic's included) keep the last value, some the first. A message with
``{"amount":10.0,"amount":-10.0}`` is then a purchase to one consumer and a refund to another, so
every contract parsed from JSON rejects it, naming the key.

The check must cost little: the worker parses every event. :func:`keys_may_repeat` is the cheap
part, run after the validator has counted the keys it kept: when no quote is followed by
whitespace, every key written is a ``"`` directly followed by ``:``, so ``raw.count(b'":')`` is at
least the number of keys written; when it equals the number kept, none was repeated. Only when it
does not (a repeated key, an escaped one such as ``"\\u0061mount"``, ``":`` inside a text) does
:func:`duplicate_key` parse the message again with ``json.loads(object_pairs_hook=...)`` to find a
key repeated *within one object* and its path. Figures: docs/benchmarks.md, "Parse cost of the
duplicate-key check".

>>> keys_may_repeat(b'{"a":1,"b":2}', 2), keys_may_repeat(b'{"a":1,"a":2}', 1)
(False, True)
>>> duplicate_key(b'{"type":"purchase","amount":10.0,"amount":-10.0}')
('amount', 'amount')
>>> duplicate_key(b'{"cutoff":{"t":[1],"\\\\u0074":[2]}}')
('cutoff.t', 't')
>>> duplicate_key(b'{"a":{"x":1},"b":{"x":2}}') is None  # the same key in two objects is fine
True
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["duplicate_key", "keys_may_repeat"]

# One pass (four "in" tests cost twice as much): a quote then JSON whitespace (RFC 8259 section 2).
_QUOTE_THEN_SPACE = re.compile(rb'"[ \t\n\r]').search


def keys_may_repeat(raw: bytes | str, keys_kept: int) -> bool:
    """False when the message certainly repeats no key, given that parsing it kept ``keys_kept``
    keys in all (every object's, at any depth). True means: look with :func:`duplicate_key`.

    Sound because a key is a string then optional JSON whitespace (RFC 8259 section 2: space,
    ``\\n``, ``\\r``, ``\\t``) then ``:``: without a quote followed by whitespace, each key written
    is one ``":``."""
    if isinstance(raw, str):
        raw = raw.encode()
    return raw.count(b'":') != keys_kept or _QUOTE_THEN_SPACE(raw) is not None


def duplicate_key(raw: bytes | str) -> tuple[str, str] | None:
    """(dotted path, key) of the first key repeated within one object, or None.

    None also for text that is not JSON: the contract's validator says what is wrong with it.
    """
    try:
        doc = json.loads(raw, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return None
    return _first_repeat(doc, "")


class _Pairs(list):
    """An object as its (key, value) pairs in the order written (a repeated key kept)."""


def _first_repeat(node: Any, path: str) -> tuple[str, str] | None:
    if isinstance(node, _Pairs):
        seen: set[str] = set()
        for key, value in node:
            where = f"{path}.{key}" if path else key
            if key in seen:
                return where, key
            seen.add(key)
            found = _first_repeat(value, where)
            if found is not None:
                return found
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found = _first_repeat(value, f"{path}.{i}" if path else str(i))
            if found is not None:
                return found
    return None
