"""The worker's Prometheus metrics (prometheus-client), on its own registry.

Labels only ever take values from small fixed sets (event types, outcomes, change kinds, reason
codes, segment ids of the model, topic partitions): never a customer id or anything else
unbounded (``tests/test_monitoring_live.py`` checks the exposition). Children are bound once and
kept, because a ``labels(...)`` lookup costs more than the increment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401 - re-exported for the web view

from models.kpis import SegmentKPIs
from models.scorecard import MembershipFlow, Scorecard
from schemas.segment_change import ReasonCode, SegmentKind
from streams.fixups.prometheus_histogram import observe_many

# ``*_created`` series double the exposition and no dashboard of ours reads them.
disable_created_metrics()

EVENT_TYPES = ("purchase", "engagement", "feedback", "profile")
OUTCOMES = ("applied", "duplicate", "invalid", "rejected", "erased")
NONE = "none"  # the "from" of an entry and the "to" of an exit

#: The reasons each kind of change can have (the children bound up front).
CHANGE_REASONS = {
    SegmentKind.cluster: (ReasonCode.first_assignment, ReasonCode.better_fit, ReasonCode.dwell_elapsed,
                          ReasonCode.segment_retired, ReasonCode.erased),
    SegmentKind.rule: (ReasonCode.rule_entered, ReasonCode.rule_left, ReasonCode.erased),
}

# Event -> state saved; most events take well under a millisecond, a few wait on a change's ack.
PROCESSING_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
# Messages the agent got in one batch: small while live, up to the batch maximum on a backlog.
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
# Times the worker stops processing events: a garbage collection, the write-out before a commit.
STALL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
# Event time -> change emitted: includes producer, broker and consumer delays.
END_TO_END_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class KpiReport:
    """A complete sweep pass's KPIs over this worker's partitions (``kpis``: the raw sums, to merge
    with other workers'), their figures, the scorecard, and the clock time of the pass, with the entries and exits per segment its stability was judged on."""

    kpis: SegmentKPIs
    figures: list[dict[str, Any]]
    scorecard: Scorecard
    at: float
    flows: Mapping[tuple[str, str], MembershipFlow]  # entries and exits over the last week
    partitions: tuple[int, ...] = ()  # the customer partitions counted (owned, their pass complete)


class WorkerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # the last complete sweep pass's (kind, segment) -> members; None before the first
        self.population_counts: dict[tuple[str, str], int] | None = None
        # the last complete sweep pass's KPIs (models.kpis), their figures, the scorecard and the
        # clock time of the pass; None before the first (read by /segments)
        self.kpis: KpiReport | None = None
        # ---- input ----
        self._events = Counter("segstream_events_total", "Input events consumed, by type and outcome "
                               "(applied, duplicate = event_id seen before, invalid = broke the contract, "
                               "rejected = valid but not applicable, erased = produced before an erase request of its "
                               "customer).", ["event_type", "outcome"], registry=r)
        self.events = {(t, o): self._events.labels(t, o) for t in EVENT_TYPES for o in OUTCOMES}
        self._dead = Counter("segstream_dead_letters_total", "Messages sent to the dead-letter topic.",
                             ["source"], registry=r)
        self.dead_letters = {s: self._dead.labels(s) for s in (*EVENT_TYPES, "erasure", "reevaluate", "repartition")}
        self._repartitioned = Counter("segstream_repartitioned_total", "Input messages that arrived off their "
                                      "customer's home partition (a producer partitioning with another hash than "
                                      "Kafka's default murmur2) and were forwarded there through the repartition "
                                      "topic.", ["source"], registry=r)
        self.repartitioned = {s: self._repartitioned.labels(s) for s in (*EVENT_TYPES, "erasure")}
        self.processing = Histogram("segstream_processing_seconds", "Time to process one input event "
                                    "(validate, update state, assign, changes acknowledged, table written).",
                                    buckets=PROCESSING_BUCKETS, registry=r)
        self.batch_messages = Histogram("segstream_batch_messages", "Messages processed together in one batch "
                                        "(one table read and write per customer, one wait for acknowledgements).",
                                        buckets=BATCH_BUCKETS, registry=r)
        self.event_to_change = Histogram("segstream_event_to_change_seconds", "From an event's timestamp to "
                                         "the segment change it caused being acknowledged (wall clock only).",
                                         buckets=END_TO_END_BUCKETS, registry=r)
        self.consumer_lag = Gauge("segstream_consumer_lag", "Messages not yet committed by the group on this "
                                  "worker's input partitions (end offset - committed offset).",
                                  ["topic", "partition"], registry=r)
        self.input_watermark_seconds = Gauge(
            "segstream_input_watermark_timestamp_seconds", "Event time up to which every input partition of "
            "this worker has been read (the sweep evaluates no later); +Inf when none is behind, -Inf before "
            "the first measurement.", registry=r)
        # ---- output ----
        self._changes = Counter("segstream_segment_changes_total", "Segment-change events emitted.",
                                ["kind", "reason"], registry=r)
        self.changes = {(k.value, c.value): self._changes.labels(k.value, c.value)
                        for k, reasons in CHANGE_REASONS.items() for c in reasons}
        self._transitions = Counter("segstream_segment_transitions_total", "Cluster segment moves by origin and "
                                    "destination ('none': entry or exit).", ["from_segment", "to_segment"], registry=r)
        self.transitions: dict[tuple[str, str], Any] = {}
        self.changes_resent = Counter("segstream_segment_changes_resent_total", "Changes sent again as saved, "
                                      "after a crash between saving them and their acknowledgement (same "
                                      "change_id and content; also counted in segment_changes_total).", registry=r)
        self.states_written_behind = Counter("segstream_states_written_behind_total", "Customer states written "
                                             "to the table's changelog just before an offset commit (write-behind: "
                                             "one write per customer and commit, however many batches touched it).",
                                             registry=r)
        self.commit_write = Histogram("segstream_commit_write_seconds", "Time the write-out before an offset "
                                      "commit holds event processing: the customer states waiting there "
                                      "(write-behind) written to the changelog, and everything sent so far "
                                      "acknowledged (a batch in progress finishes first, not counted).",
                                      buckets=STALL_BUCKETS, registry=r)
        self.gc_pause = Histogram("segstream_gc_pause_seconds", "Python garbage collections, by generation: the "
                                  "event loop stands still for each (streams.heap).", ["generation"],
                                  buckets=STALL_BUCKETS, registry=r)
        self.delivery_holes = Counter("segstream_delivery_holes_total", "Offsets faust skipped in an input "
                                      "partition: the later messages were held and the partition read again "
                                      "from the hole (streams.delivery_guard; the log names the partition).",
                                      registry=r)
        self.flaps = Counter("segstream_segment_flaps_total", "Cluster moves back to a segment the customer left "
                             "within the dwell period.", registry=r)
        # ---- populations ----
        self.segment_customers = Gauge("segstream_segment_customers", "Customers this worker owns in each "
                                       "segment at its last full sweep (sum over workers: the population).",
                                       ["kind", "segment"], registry=r)
        self.customers = Gauge("segstream_customers", "Customers in this worker's table partitions at its "
                               "last full sweep.", registry=r)
        self.segment_size_estimate = Gauge("segstream_segment_size_estimate", "The trainer's estimate of each "
                                           "cluster segment's members, from the training sample (the same on every "
                                           "worker).", ["segment"], registry=r)
        # ---- model ----
        self.model_version = Gauge("segstream_model_version", "Version of the model this worker assigns with "
                                   "(0 = none yet).", registry=r)
        self.model_installed = Gauge("segstream_model_installed_timestamp_seconds",
                                     "Wall time this worker installed its current model.", registry=r)
        self.max_centroid_shift = Gauge("segstream_model_max_centroid_shift", "Largest centroid move of the last "
                                        "training (standard deviations).", registry=r)
        self.centroid_shift = Gauge("segstream_model_centroid_shift", "Centroid move of each segment in the last "
                                    "training (standard deviations).", ["segment"], registry=r)
        self.share_tvd = Gauge("segstream_model_share_tvd", "Total variation distance between the segment shares "
                               "of the last two trainings.", registry=r)
        self.drift_detections = Counter("segstream_drift_detections_total", "Drift detected by the trainer "
                                        "(counted on every worker that installs the model carrying it).",
                                        ["kind", "feature"], registry=r)
        # ---- segment KPIs and viability (models.kpis, models.scorecard), at each complete sweep pass ----
        kpi_help = {
            "share": "Members / customers of this worker's partitions.",
            "recent_revenue": "Members' net spend over the last recent_spend_days days (base currency).",
            "clv_total": "Sum of the members' CLV (base currency).",
            "clv_mean": "Mean CLV of the members with one (base currency).",
            "retention": "Members who bought in the previous period and again in this one / those who bought in "
                         "the previous period (periods of recent_spend_days).",
            "nps": "Net Promoter Score of the members who answered (-100..100).",
            "nps_answered_share": "Members with an NPS answer / members.",
            "cost_to_serve_mean": "Mean service load of the members (decayed tickets + weighted complaints).",
            "cac_mean": "Mean acquisition cost of the members where known (base currency).",
            "clv_to_cac": "Mean CLV / mean CAC over the members with both known.",
            "reachable_share": "Members with a consented channel / members.",
        }
        self._kpi_gauges = {name: Gauge(f"segstream_segment_{name}", text, ["kind", "segment"], registry=r)
                            for name, text in kpi_help.items()}
        self.segment_viable = Gauge("segstream_segment_viable", "1 when the segment passes the scorecard criterion, "
                                    "0 when it fails it (absent while unknown).", ["kind", "segment", "criterion"],
                                    registry=r)
        # ---- housekeeping ----
        self.erasures = Counter("segstream_erasures_total", "Erase requests processed.", ["found"], registry=r)
        self.erasures_found = {True: self.erasures.labels("true"), False: self.erasures.labels("false")}
        self.reevaluated = Counter("segstream_reevaluated_customers_total",
                                   "Customers re-evaluated by the clock-driven sweep.", registry=r)
        self.samples_sent = Counter("segstream_trainer_samples_sent_total",
                                    "Customer feature bases forwarded to the trainer.", registry=r)
        self.trainings = Counter("segstream_trainings_total", "Models trained and published by this worker "
                                 "(only the worker holding the trainer partition trains).", registry=r)

    # ---- recording ---------------------------------------------------------------------------

    def event(self, event_type: str, outcome: str, count: int = 1) -> None:
        self.events[(event_type, outcome)].inc(count)

    def processed(self, per_event_s: float, events: int) -> None:
        """``events`` observations of ``per_event_s`` in ``segstream_processing_seconds`` at the cost of
        one (a batch's events share its time; observing each costs about 3 µs)."""
        observe_many(self.processing, per_event_s, events)

    def change(self, kind: str, reason: str, previous: str | None, new: str | None, flap: bool) -> None:
        child = self.changes.get((kind, reason))
        if child is None:  # a reason added to the contract later: still counted
            child = self.changes[(kind, reason)] = self._changes.labels(kind, reason)
        child.inc()
        if kind == SegmentKind.cluster.value:
            key = (previous or NONE, new or NONE)
            transition = self.transitions.get(key)
            if transition is None:
                transition = self.transitions[key] = self._transitions.labels(*key)
            transition.inc()
            if flap:
                self.flaps.inc()

    def populations(self, counts: Mapping[tuple[str, str], int], customers: int) -> None:
        """Replace the per-segment populations (a finished sweep pass over this worker's partitions)."""
        self.population_counts = dict(counts)  # read by /segments (rule segment sizes)
        self.segment_customers.clear()
        for (kind, segment), n in counts.items():
            self.segment_customers.labels(kind, segment).set(n)
        self.customers.set(customers)

    def lag(self, lags: Mapping[tuple[str, int], int]) -> None:
        self.consumer_lag.clear()
        for (topic, partition), value in lags.items():
            self.consumer_lag.labels(topic, str(partition)).set(value)

    def input_watermark(self, low: float) -> None:
        self.input_watermark_seconds.set(low)

    def model(self, version: int, installed_at: float, sizes: Mapping[str, int], drift: Mapping[str, Any] | None) -> None:
        self.model_version.set(version)
        self.model_installed.set(installed_at)
        self.segment_size_estimate.clear()
        for segment, size in sizes.items():
            self.segment_size_estimate.labels(segment).set(size)
        drift = drift or {}
        self.centroid_shift.clear()
        for segment, shift in (drift.get("centroid_shift") or {}).items():
            self.centroid_shift.labels(segment).set(shift)
        self.max_centroid_shift.set(drift.get("max_centroid_shift") or 0.0)
        self.share_tvd.set(drift.get("share_tvd") or 0.0)
        for signal in drift_signals(drift.get("signals") or ()):
            self.drift_detections.labels(*signal).inc()

    def segment_kpis(self, report: KpiReport) -> None:
        """Replace the per-segment KPIs and viability verdicts (a finished sweep pass)."""
        self.kpis = report
        figures, card = report.figures, report.scorecard
        for gauge in (*self._kpi_gauges.values(), self.segment_viable):
            gauge.clear()
        for f in figures:
            key = (f["kind"], f["segment_id"])
            for name, gauge in self._kpi_gauges.items():
                value = f.get(name)
                if value is not None:
                    gauge.labels(*key).set(value)
            verdicts = card.get(*key)
            for criterion in verdicts.criteria.values() if verdicts is not None else ():
                if criterion.verdict != "unknown":
                    self.segment_viable.labels(*key, criterion.name).set(1.0 if criterion.verdict == "pass" else 0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)




def drift_signals(signals: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(kind, feature) of each drift signal; the feature set is bounded: models.features.FEATURES and the
    closed set of trait features (models.features.TRAIT_FEATURES) a deployment may add."""
    return [(str(s.get("kind") or "unknown"), str(s.get("feature") or NONE)) for s in signals]
