"""The worker's Prometheus metrics (prometheus-client), on its own registry.

Labels only ever take values from small fixed sets (event types, outcomes, change kinds, reason
codes, segment ids of the current model): never a customer id or anything else unbounded.
Children are bound once and kept, because a ``labels(...)`` lookup costs more than the increment.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the web view

from schemas.segment_change import ReasonCode, SegmentKind

# ``*_created`` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()

#: The reasons each kind of change can have (the children bound up front).
CHANGE_REASONS = {
    SegmentKind.cluster: (ReasonCode.first_assignment, ReasonCode.better_fit, ReasonCode.dwell_elapsed,
                          ReasonCode.segment_retired, ReasonCode.erased),
    SegmentKind.rule: (ReasonCode.rule_entered, ReasonCode.rule_left, ReasonCode.erased),
}

EVENT_TYPES = ("purchase", "engagement", "feedback")
OUTCOMES = ("applied", "duplicate", "invalid", "rejected")

# Event -> state saved; most events take well under a millisecond, a few wait on a change's ack.
PROCESSING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._events = Counter("segstream_events_total", "Input events consumed, by type and outcome "
                               "(applied, duplicate = event_id seen before, invalid = broke the contract, "
                               "rejected = valid but not applicable).", ["event_type", "outcome"], registry=r)
        self.events = {(t, o): self._events.labels(t, o) for t in EVENT_TYPES for o in OUTCOMES}
        self.events_unknown_topic = self._events.labels("unknown", "invalid")
        self._dead = Counter("segstream_dead_letters_total", "Messages sent to the dead-letter topic.",
                             ["source"], registry=r)
        self.dead_letters = {s: self._dead.labels(s) for s in (*EVENT_TYPES, "erasure", "reevaluate")}
        self._changes = Counter("segstream_segment_changes_total", "Segment-change events emitted.",
                                ["kind", "reason"], registry=r)
        self.changes = {(k.value, c.value): self._changes.labels(k.value, c.value)
                        for k, reasons in CHANGE_REASONS.items() for c in reasons}
        self.processing = Histogram("segstream_processing_seconds", "Time to process one input event "
                                    "(validate, update state, assign, emit changes).",
                                    buckets=PROCESSING_BUCKETS, registry=r)
        self.erasures = Counter("segstream_erasures_total", "Erase requests processed.", ["found"], registry=r)
        self.erasures_found = {True: self.erasures.labels("true"), False: self.erasures.labels("false")}
        self.reevaluated = Counter("segstream_reevaluated_customers_total",
                                   "Customers re-evaluated by the clock-driven sweep.", registry=r)
        self.model_version = Gauge("segstream_model_version", "Version of the model this worker assigns with "
                                   "(0 = none yet).", registry=r)
        self.model_created = Gauge("segstream_model_created_timestamp_seconds",
                                   "Training time of the installed model (the clock it was trained at).", registry=r)
        self.samples_sent = Counter("segstream_trainer_samples_sent_total",
                                    "Customer feature bases forwarded to the trainer.", registry=r)
        self.trainings = Counter("segstream_trainings_total", "Models trained and published by this worker "
                                 "(only the worker holding the trainer partition trains).", registry=r)

    def event(self, event_type: str, outcome: str) -> None:
        child = self.events.get((event_type, outcome))
        (child or self.events_unknown_topic).inc()

    def change(self, kind: str, reason: str) -> None:
        child = self.changes.get((kind, reason))
        if child is None:  # a reason added to the contract later: still counted
            child = self.changes[(kind, reason)] = self._changes.labels(kind, reason)
        child.inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
