"""What each clause op means: the test a profile value must pass, compiled once per clause.

Python's own operators are almost the rule language, with three exceptions this module exists
for:

- **Booleans are not numbers.** ``True == 1``, ``1 in {True}`` and ``True > 0`` hold in Python,
  so ``consent_email == true`` would hold for a field holding ``1`` and ``age == 1`` for one
  holding ``True``. Here a boolean equals only that boolean, is in a list only when the list
  holds that boolean, and is never ordered (``consent_email >= 1`` is false).
- **Lists of tags** (``interests``, ``lifestyle``) are tested with ``contains`` / ``not contains``
  against one value. Only a real list is a container: ``"outdoor" contains "door"`` is false (a
  substring is not a tag), and so is ``contains`` on None or a number. ``not contains`` needs a
  known list too: "has not said they like golf" is not "we know nothing about them".
- **A list field answers only those two ops.** Under every other op it is false, ``!=`` and
  ``not in`` included: ``interests != "golf"`` holding for everyone with interests would be a
  silent mistake (``not contains`` is what that marketer means).
- **Values that do not compare are false, not errors** (a string field against a number): the
  caller catches ``TypeError``.

A value of None (the customer has no such figure yet) is false under every op; the caller checks
that before calling a test, and sends booleans to ``on_bool``, so ``test`` is mostly the bare
operator (a C call) and nothing here allocates per call.

>>> eq = compile_op("==", True)
>>> eq.on_bool(True), eq.test(1, eq.operand)        # a boolean clause, a number in the profile
(True, False)
>>> age = compile_op("==", 1)
>>> age.test(1, age.operand), age.on_bool(True)     # a number clause, a boolean in the profile
(True, False)
>>> has = compile_op("contains", "outdoor")
>>> has.test(["outdoor", "travel"], has.operand), has.test("outdoor", has.operand), has.on_bool(True)
(True, False, False)
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, NamedTuple

from schemas.errors import ConfigurationError

# What counts as a list of tags. Not str (a string is not a set of its substrings), not bytes,
# not a dict (``in`` would test its keys): a profile's tag lists are lists, tuples or sets.
_LISTS = (list, tuple, set, frozenset)
_BOOLS = frozenset({True, False})


class CompiledOp(NamedTuple):
    """One clause's op, ready for the hot path.

    ``test(actual, operand)`` decides for an actual value that is neither None nor a boolean;
    ``on_bool(actual)`` for ``True`` / ``False``. ``operand`` is what ``test`` compares a literal
    with (for ``in`` / ``not in``: the non-boolean values as a frozenset); a percentile clause
    passes its threshold instead.
    """

    test: Callable[[Any, Any], Any]
    on_bool: Callable[[bool], bool]
    operand: Any


def _false(*_: Any) -> bool:
    return False


def _true(*_: Any) -> bool:
    return True


def _not_a_list(actual: Any, _: Any = None) -> bool:
    return not isinstance(actual, _LISTS)


def _ne(actual: Any, value: Any) -> bool:
    # the isinstance runs only when the values differ (a list always differs from a scalar)
    return actual != value and not isinstance(actual, _LISTS)


def _in(actual: Any, values: frozenset[Any]) -> bool:
    return actual in values  # a list is unhashable (TypeError: false), a tuple is in no set of scalars


def _not_in(actual: Any, values: frozenset[Any]) -> bool:
    return actual not in values and not isinstance(actual, _LISTS)


def _contains_str(actual: Any, value: str) -> bool:
    # == between a string and anything else is False, so plain `in` is already strict here
    return isinstance(actual, _LISTS) and value in actual


def _not_contains_str(actual: Any, value: str) -> bool:
    return isinstance(actual, _LISTS) and value not in actual


def _holds_number(items: Any, value: Any) -> bool:
    # `in` alone would find 1 in [True]: skip the booleans (no allocation, unlike any(...))
    for x in items:
        if x == value and x is not True and x is not False:
            return True
    return False


def _contains_number(actual: Any, value: Any) -> bool:
    return isinstance(actual, _LISTS) and _holds_number(actual, value)


def _not_contains_number(actual: Any, value: Any) -> bool:
    return isinstance(actual, _LISTS) and not _holds_number(actual, value)


def _holds_bool(items: Any, value: bool) -> bool:
    for x in items:
        if x is value:  # True and False are singletons; 1 is not True
            return True
    return False


def _contains_bool(actual: Any, value: bool) -> bool:
    return isinstance(actual, _LISTS) and _holds_bool(actual, value)


def _not_contains_bool(actual: Any, value: bool) -> bool:
    return isinstance(actual, _LISTS) and not _holds_bool(actual, value)


_ORDERING: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
_CONTAINS: dict[tuple[str, str], Callable[[Any, Any], bool]] = {
    ("contains", "str"): _contains_str, ("not contains", "str"): _not_contains_str,
    ("contains", "number"): _contains_number, ("not contains", "number"): _not_contains_number,
    ("contains", "bool"): _contains_bool, ("not contains", "bool"): _not_contains_bool,
}


def compile_op(op: str, value: Any) -> CompiledOp:
    """The tests for ``<field> <op> <value>``; ``value`` as validated by ``ClauseDef`` (a
    percentile reference ``"p80"`` for an ordering op stands for a threshold given later).

    >>> ne = compile_op("!=", False)
    >>> ne.on_bool(True), ne.on_bool(False), ne.test(0, ne.operand)   # 0 is not False
    (True, False, True)
    >>> member = compile_op("in", [1, True, "a"])
    >>> member.operand == {1, "a"}, member.on_bool(True), member.on_bool(False)
    (True, True, False)
    >>> gt = compile_op(">", "p80")
    >>> gt.test(5.0, 4.0), gt.on_bool(True)                          # a boolean is never ordered
    (True, False)
    """
    is_bool = value is True or value is False
    if op in _ORDERING:
        return CompiledOp(_ORDERING[op], _false, value)
    if op == "==":
        # a boolean literal equals only that boolean; any other literal never equals a boolean
        return (CompiledOp(_false, frozenset({value}).__contains__, value) if is_bool
                else CompiledOp(operator.eq, _false, value))
    if op == "!=":
        return (CompiledOp(_not_a_list, frozenset({not value}).__contains__, value) if is_bool
                else CompiledOp(_ne, _true, value))
    if op in ("in", "not in"):
        # Split by kind: frozenset([1, True]) is {1}, and 1 in {True} holds.
        bools = frozenset(x for x in value if x is True or x is False)
        others = frozenset(x for x in value if x is not True and x is not False)
        if op == "in":
            return CompiledOp(_in, bools.__contains__, others)
        return CompiledOp(_not_in, (_BOOLS - bools).__contains__, others)
    if op in ("contains", "not contains"):
        # a boolean is not a list: false for both ops, like None
        kind = "bool" if is_bool else "str" if isinstance(value, str) else "number"
        return CompiledOp(_CONTAINS[op, kind], _false, value)
    raise ConfigurationError(f"unknown op {op!r}")  # ClauseDef refuses it first; kept for direct callers
