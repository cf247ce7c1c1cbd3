"""Recording shortcuts of the worker metrics give what the one-by-one calls give."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Histogram

from monitoring.metrics import PROCESSING_BUCKETS
from streams.fixups.prometheus_histogram import observe_many


def _samples(histogram: Histogram) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for metric in histogram.collect() for s in metric.samples}


@pytest.mark.parametrize("value", [0.0, 0.00009, 0.0001, 0.0003, 0.02, 0.5, 7.0])
def test_observe_many_records_what_repeated_observes_record(value: float) -> None:
    one_by_one = Histogram("h", "h", buckets=PROCESSING_BUCKETS, registry=CollectorRegistry())
    at_once = Histogram("h", "h", buckets=PROCESSING_BUCKETS, registry=CollectorRegistry())
    for _ in range(37):
        one_by_one.observe(value)
    observe_many(at_once, value, 37)
    observe_many(at_once, value, 0)
    assert _samples(at_once) == pytest.approx(_samples(one_by_one))
    assert _samples(at_once)[("h_count", "")] == 37
