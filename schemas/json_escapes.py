"""A ``\\uXXXX`` escape of a lone UTF-16 surrogate: said as such, not in the parser's words.

JSON writes a character outside the Basic Multilingual Plane as two escapes, a high surrogate
(U+D800-U+DBFF) then a low one (U+DC00-U+DFFF): ``"\\ud83d\\ude00"`` is one emoji. Either half
alone is no character (RFC 8259 section 8.2 leaves such a string to the parser; Python's json
accepts it, the runtime rejects it). The parsers' messages mislead: pydantic's (the contracts')
says "unexpected end of hex escape" for a high surrogate that no escape follows and "lone leading
surrogate in hex escape" otherwise; orjson (``segstream produce``) says "no low surrogate in
string", "invalid low surrogate in string" or "invalid high surrogate in string". The escape is
complete in each case: :func:`lone_surrogate_problem` says what is wrong instead.

>>> lone_surrogate_problem(r'{"customer_id":"c\\ud800"}')
'invalid \\\\ud800 escape at line 1 column 18: a lone UTF-16 surrogate is not a character'
>>> lone_surrogate_problem(r'{"emoji":"\\ud83d\\ude00","path":"C:\\\\udc00"}') is None  # a pair; "\\\\" then text
True
"""

from __future__ import annotations

import re

__all__ = ["LONE_SURROGATE", "lone_surrogate", "lone_surrogate_problem"]

LONE_SURROGATE = "a lone UTF-16 surrogate is not a character"

# Every backslash starts an escape (outside strings it is an error anyway): matched left to right,
# "\\" is one escape, so the "u" after an escaped backslash is text, not an escape.
_ESCAPE = re.compile(r"\\(?:u([0-9a-fA-F]{4})|.)", re.DOTALL)


def _kind(match: re.Match[str]) -> str:
    """'high' or 'low' for a surrogate's ``\\uXXXX`` escape, '' for any other escape."""
    if match.group(1) is None:
        return ""
    code = int(match.group(1), 16)
    return "high" if 0xD800 <= code <= 0xDBFF else "low" if 0xDC00 <= code <= 0xDFFF else ""


def lone_surrogate(text: str | bytes) -> tuple[str, int, int] | None:
    """The first ``\\uXXXX`` escape of a surrogate that is not half of a high-low pair written
    together, as (the escape as written, line, column), both 1-based, the column in characters
    and where the escape starts; None if there is none. Bytes are read as UTF-8 (an invalid byte
    counts as one character)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    high = None  # a high surrogate's escape waiting for its low half right after it
    for match in _ESCAPE.finditer(text):
        kind = _kind(match)
        if high is not None:
            if kind == "low" and match.start() == high.end():
                high = None
                continue
            return _where(text, high)
        if kind == "high":
            high = match
        elif kind == "low":
            return _where(text, match)
    return _where(text, high) if high is not None else None


def _where(text: str, match: re.Match[str]) -> tuple[str, int, int]:
    start = match.start()
    return match.group(), text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)


def lone_surrogate_problem(text: str | bytes) -> str | None:
    """``invalid \\ud800 escape at line L column C: a lone UTF-16 surrogate is not a character``
    for the first lone surrogate of ``text`` (see :func:`lone_surrogate`), or None."""
    found = lone_surrogate(text)
    if found is None:
        return None
    escape, line, column = found
    return f"invalid {escape} escape at line {line} column {column}: {LONE_SURROGATE}"
