"""Reaches into river's private state (the one room for them in ``models``, which stays importable
without the stream stack; the stream path's are in :mod:`streams.fixups`).

The table of every workaround, why and when it can go, is in ``streams/fixups/__init__.py``.
"""

from __future__ import annotations

import math

from river import drift

__all__ = ["ph_statistic"]


def ph_statistic(ph: drift.PageHinkley) -> float:
    """The larger one-sided Page-Hinkley statistic, read right after a detection.

    river (0.26) exposes only ``drift_detected``; the sums are private attributes, hence the
    fallback to nan should they be renamed. Called only when a detector fires, so never hot.
    """
    try:
        up = ph._sum_increase - ph._min_increase
        down = ph._max_decrease - ph._sum_decrease
    except AttributeError:  # pragma: no cover - depends on river internals
        return math.nan
    if ph.mode == "up":
        return float(up)
    if ph.mode == "down":
        return float(down)
    return float(max(up, down))
