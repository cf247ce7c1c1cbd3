"""RFC 3339 date-times: the one timestamp form of every contract.

The published JSON Schemas say ``"format": "date-time"``, which is RFC 3339 section 5.6; the
runtime validator accepts exactly that grammar, no more (no epoch numbers, no ``+0530``, no space
or ``_`` between date and time, no date alone, no local time without an offset) and no less:

* ``T``/``t`` between date and time, ``Z``/``z`` for UTC (RFC 3339 5.6, note on case);
* any number of fractional digits; Python keeps microseconds, so digits past the sixth are
  **truncated** (never rounded: rounding could carry into the next second, minute or day);
* an offset ``+HH:MM``/``-HH:MM`` with HH 00-23 and MM 00-59 (the RFC's range); ``-00:00``
  ("UTC, local offset unknown", RFC 3339 4.3) is UTC;
* **no leap second** (``:60``): a Python datetime cannot hold it, and JSON Schema validators
  disagree on it (``rfc3339-validator`` rejects it). The exported schema says so in its ``pattern``,
  so every validator rejects it;
* a year between :data:`EARLIEST_YEAR` and :data:`LATEST_YEAR` **as written** (before conversion to
  UTC), so that the schema's ``pattern`` can say the same thing.

Values are normalised to UTC. Every error says which form is expected:

>>> parse_rfc3339("2026-03-29T02:30:00.123456789+01:00").isoformat()
'2026-03-29T01:30:00.123456+00:00'
>>> parse_rfc3339("2026-06-04t10:00:00z").isoformat()
'2026-06-04T10:00:00+00:00'
>>> try:
...     parse_rfc3339("2026-06-01T10:00:00+0530")
... except ValueError as err:
...     print(err)
must be an RFC 3339 date-time with a UTC offset, e.g. 2026-01-02T03:04:05Z or 2026-01-02T03:04:05.250+02:00 (got '2026-06-01T10:00:00+0530')
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema
from schemas.errors import ContractError

__all__ = [
    "EARLIEST_YEAR",
    "EXPECTED_FORM",
    "LATEST_YEAR",
    "TIMESTAMP_PATTERN",
    "Timestamp",
    "parse_rfc3339",
]

EARLIEST_YEAR = 1990
LATEST_YEAR = 2099
EXPECTED_FORM = ("must be an RFC 3339 date-time with a UTC offset, e.g. 2026-01-02T03:04:05Z or "
                 "2026-01-02T03:04:05.250+02:00")

# RFC 3339 5.6 date-time; ranges of month, day, hour... are checked on the numbers (clearer errors).
_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)

#: What the exported schema adds to ``format: date-time``: the year range as written and no leap
#: second. Written for both ECMA-262 and Python ``re``: Python's ``$`` also matches before a final
#: newline, which ``(?!\n)`` forbids (``jsonschema`` checks patterns with ``re.search``).
TIMESTAMP_PATTERN = (r"^(199\d|20\d\d)-\d\d-\d\d[Tt]\d\d:\d\d:[0-5]\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)$(?!\n)")


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 date-time string into an aware UTC datetime.

    Raises ``ValueError`` saying what is wrong and which form is expected.
    """
    m = _DATE_TIME.fullmatch(text)
    if m is None:
        raise ContractError(f"{EXPECTED_FORM} (got {_shown(text)})")
    if m.group(6) == "60":
        raise ContractError(f"leap second ':60' is not accepted: {EXPECTED_FORM}")
    sign, off_h, off_m = m.group(9, 10, 11)
    if sign is not None and (off_h > "23" or off_m > "59"):  # two digits each: compared as text
        raise ContractError(f"UTC offset {sign}{off_h}:{off_m} is out of range (-23:59 to +23:59): {EXPECTED_FORM}")
    # The grammar is checked: the standard library's parser does the rest (2 µs less than by hand).
    # It truncates digits past the sixth (never rounds: no carry into the next second, minute or
    # day), wants upper-case T and Z and rejects month 13, 30 February, hour 24, minute 60.
    try:
        value = datetime.fromisoformat(text.upper())
    except ValueError as exc:
        raise ContractError(f"not a calendar date-time ({exc}): {EXPECTED_FORM}") from None
    return _in_range(value)


def _in_range(value: datetime) -> datetime:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise ContractError(f"year must be {EARLIEST_YEAR}-{LATEST_YEAR} (as written, before conversion to UTC)")
    return value if value.tzinfo is timezone.utc else value.astimezone(timezone.utc)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _validate(value: Any) -> datetime:
    """Strings by :func:`parse_rfc3339`; aware datetimes (from Python code) by the same range."""
    if isinstance(value, str):
        return parse_rfc3339(value)
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return _in_range(value)
    if isinstance(value, datetime):
        raise ContractError(f"a datetime without a UTC offset: {EXPECTED_FORM}")
    kind = "a number" if isinstance(value, (int, float)) and not isinstance(value, bool) else type(value).__name__
    raise ContractError(f"{EXPECTED_FORM} (got {kind}, not a string)")


#: A contract field holding an RFC 3339 date-time, normalised to UTC (see the module docstring).
Timestamp = Annotated[
    datetime,
    BeforeValidator(_validate),  # the datetime validator after it only sees what this returns
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": TIMESTAMP_PATTERN}),
]
