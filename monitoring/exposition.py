"""Reading a Prometheus text exposition (a worker's ``/metrics``): the one reader that the CLI's
harnesses, the benchmarks and the tests share, on prometheus-client's own parser.

>>> text = 'segstream_events_total{type="purchase",outcome="applied"} 3.0\\n' \\
...        'segstream_events_total{type="engagement",outcome="applied"} 2.0\\n' \\
...        'segstream_events_total{type="purchase",outcome="invalid"} 1.0\\n'
>>> metric_sum(text, "segstream_events_total"), metric_sum(text, "segstream_events_total", outcome="applied")
(6.0, 5.0)
>>> metric_sum(text, "segstream_missing")
0.0
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["metric_sum", "sample_value"]


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of the samples named ``name`` (e.g. ``segstream_events_total``) whose labels include
    ``labels``; 0.0 if there are none. ``+Inf`` and ``-Inf`` are read as such."""
    return sum((float(sample.value) for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())), 0.0)


def sample_value(text: str, name: str) -> float:
    """The value of the first sample named ``name`` (e.g. ``segstream_batch_messages_sum``); NaN if absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return float("nan")
