"""Exponentially time-decayed sums that do not care about arrival order.

A decayed sum is kept as its value at a reference time ``ref`` (the latest event time seen). An
event older than ``ref`` is added already decayed; a newer one moves ``ref`` forward. Both paths
give the same total (up to float rounding) whatever the order, which is what lets the customer
state be order-independent.

>>> from models.decay import DecayedSum
>>> a, b = DecayedSum(), DecayedSum()
>>> for t in (0.0, 86400.0):
...     a.add(1.0, t, half_life_s=86400.0)
>>> for t in (86400.0, 0.0):
...     b.add(1.0, t, half_life_s=86400.0)
>>> a.value_at(86400.0, 86400.0), b.value_at(86400.0, 86400.0)
(1.5, 1.5)
>>> a.value_at(2 * 86400.0, 86400.0)
0.75
"""

from __future__ import annotations

from dataclasses import dataclass


def decay_factor(elapsed_s: float, half_life_s: float) -> float:
    return 2.0 ** (-elapsed_s / half_life_s) if elapsed_s > 0 else 1.0


@dataclass(slots=True)
class DecayedSum:
    value: float = 0.0
    ref: float = 0.0  # epoch seconds the value is expressed at

    def add(self, weight: float, at: float, half_life_s: float) -> None:
        if self.value == 0.0 and self.ref == 0.0:
            self.value, self.ref = weight, at
        elif at <= self.ref:
            self.value += weight * decay_factor(self.ref - at, half_life_s)
        else:
            self.value = self.value * decay_factor(at - self.ref, half_life_s) + weight
            self.ref = at

    def value_at(self, now: float, half_life_s: float) -> float:
        """The sum as of ``now``; never grows when asked about a time before ``ref``."""
        return self.value * decay_factor(now - self.ref, half_life_s)
