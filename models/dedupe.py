"""The event ids a customer sent recently, for recognising an event sent twice.

Producers resend: a retry after a timeout, a batch job run twice, a replay of yesterday's export.
Kafka's offsets cannot recognise those copies (each is a new message), so the state keeps a
fingerprint of every event id it applied, per customer and event type, for a **window of event
time**: an id is remembered while the customer's latest event time is less than ``window_s``
past the moment it was applied, and, however long ago that was, while it is among the last
``keep_last`` of its type. The moment an id is applied is the customer's event time then (the
latest event time seen for the customer), so a late event is remembered as long as a timely one.

Memory: 12 bytes per id (an 8-byte fingerprint and the minute it was applied), at most ``cap``
ids per customer and type; past the cap the oldest go first, and with them the promise for those.

>>> ids = RecentIds()
>>> ids.add(fingerprint("e1"), at_s=0.0)
>>> fingerprint("e1") in ids, fingerprint("e2") in ids
(True, False)
>>> ids.add(fingerprint("e2"), at_s=8 * 86_400.0)
>>> ids.prune(now_s=8 * 86_400.0, window_s=7 * 86_400.0, keep_last=1, cap=100)
>>> fingerprint("e1") in ids, fingerprint("e2") in ids   # e1 is 8 days old
(False, True)
"""

from __future__ import annotations

import bisect
import hashlib
import math
import sys
from array import array

from schemas.errors import ContractError

__all__ = ["RecentIds", "fingerprint", "minute_of"]

_MINUTE = 60.0


def fingerprint(event_id: str) -> int:
    """Stable 64-bit fingerprint of an event id (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little")


def minute_of(at_s: float) -> int:
    """The minute (since the epoch, clamped to a 32-bit int) an id applied at ``at_s`` is kept with."""
    return max(min(math.floor(at_s / _MINUTE), 2**31 - 1), -(2**31))


class RecentIds:
    """Fingerprints of applied event ids in the order they were applied, each with the minute
    (of the customer's event time) it was applied at: two C arrays, so membership, loading and
    saving run in C."""

    __slots__ = ("fingerprints", "minutes")

    def __init__(self, fingerprints: array | None = None, minutes: array | None = None):
        self.fingerprints = fingerprints if fingerprints is not None else array("Q")
        self.minutes = minutes if minutes is not None else array("i")  # non-decreasing
        if len(self.fingerprints) != len(self.minutes):
            raise ContractError("fingerprints and minutes differ in length")

    def copy(self) -> "RecentIds":
        return RecentIds(array("Q", self.fingerprints), array("i", self.minutes))

    def joined(self, later: "RecentIds", cap: int) -> "RecentIds":
        """These ids then ``later``'s (another life's: its minutes may be earlier), at most the
        last ``cap``. Only for membership: :meth:`prune` expects one life's sorted minutes."""
        fps, minutes = self.fingerprints + later.fingerprints, self.minutes + later.minutes
        return RecentIds(fps[-cap:] if cap else array("Q"), minutes[-cap:] if cap else array("i"))

    def __contains__(self, fp: int) -> bool:
        return fp in self.fingerprints

    def __len__(self) -> int:
        return len(self.fingerprints)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecentIds):
            return NotImplemented
        return self.fingerprints == other.fingerprints and self.minutes == other.minutes

    def __repr__(self) -> str:
        return f"RecentIds({len(self)} ids)"

    def add(self, fp: int, at_s: float) -> None:
        """Remember ``fp`` as applied at ``at_s`` (epoch seconds of the customer's event time,
        which never goes back: the minutes stay sorted)."""
        minute = minute_of(at_s)
        if self.minutes and minute < self.minutes[-1]:
            minute = self.minutes[-1]
        self.fingerprints.append(fp)
        self.minutes.append(minute)

    def prune(self, now_s: float, window_s: float, keep_last: int, cap: int) -> None:
        """Forget ids applied more than ``window_s`` before ``now_s`` unless among the last
        ``keep_last``; then keep at most ``cap`` (the most recent)."""
        self.prune_before(minute_of(now_s - window_s), keep_last, cap)

    def prune_before(self, stale_minute: int, keep_last: int, cap: int) -> None:
        """:meth:`prune` with the window's start given as a minute (:func:`minute_of`): a caller
        pruning several types at one time computes it once. Nothing to do, the common case, is
        found in one comparison."""
        minutes = self.minutes
        n = len(minutes)
        if n <= cap and (n <= keep_last or minutes[0] >= stale_minute):
            return
        stale = bisect.bisect_left(minutes, stale_minute)
        drop = max(min(stale, n - keep_last), n - cap, 0)
        if drop:
            del self.fingerprints[:drop]
            del minutes[:drop]

    # ---- the table's format ----------------------------------------------------------------------

    def to_wire(self) -> list[bytes]:
        """[fingerprints, minutes] as little-endian bytes (8 and 4 bytes an id)."""
        return [_little_endian(self.fingerprints), _little_endian(self.minutes)]

    @classmethod
    def from_wire(cls, wire: list[bytes]) -> "RecentIds":
        fps, minutes = wire
        return cls(_from_little_endian("Q", fps), _from_little_endian("i", minutes))

    @classmethod
    def from_fingerprints(cls, raw: bytes, at_s: float) -> "RecentIds":
        """Fingerprints saved without their minutes (state format 2), all taken as applied at ``at_s``."""
        fps = _from_little_endian("Q", raw)
        return cls(fps, array("i", [minute_of(at_s)] * len(fps)))


def _from_little_endian(typecode: str, raw: bytes) -> array:
    values = array(typecode, raw)
    if sys.byteorder != "little":  # the serialised form is little-endian everywhere
        values.byteswap()
    return values


def _little_endian(values: array) -> bytes:
    if sys.byteorder == "little":
        return values.tobytes()
    swapped = array(values.typecode, values)
    swapped.byteswap()
    return swapped.tobytes()
