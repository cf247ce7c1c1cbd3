"""A weighted observe for prometheus-client's Histogram (it has none): what ``times`` calls of
``observe(value)`` record, in one step, through the internals ``observe`` itself uses. Checked
against ``observe`` by tests/test_metrics_recording.py. Can go when prometheus-client gets a
weighted observe (or the batch engine of #20 observes per batch instead)."""

from __future__ import annotations

from prometheus_client import Histogram

__all__ = ["observe_many"]


def observe_many(histogram: Histogram, value: float, times: int) -> None:
    """What ``times`` calls of ``histogram.observe(value)`` record, in one step.

    prometheus-client has no weighted observe; this uses the same internals ``observe`` uses
    (``_sum``, ``_upper_bounds``, ``_buckets``), checked against ``observe`` by a test."""
    if times <= 0:
        return
    histogram._sum.inc(value * times)
    for bucket, bound in zip(histogram._buckets, histogram._upper_bounds):
        if value <= bound:
            bucket.inc(times)
            break
