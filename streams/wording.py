"""Wording of the messages the commands print."""

from __future__ import annotations


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, the noun in the plural (an "s" added: regular nouns only) unless the
    count is exactly 1; thousands separated with commas, as the other figures printed are.

    >>> plural(1, "customer"), plural(2, "customer"), plural(0, "line"), plural(12345, "segment change")
    ('1 customer', '2 customers', '0 lines', '12,345 segment changes')
    """
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"
