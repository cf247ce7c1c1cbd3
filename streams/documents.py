"""The JSON documents of the worker's web API, built from its :class:`~streams.runtime.Runtime`:
``/customers/{id}``, ``/segments`` and ``/ready`` (their fields: docs/integration.md)."""

from __future__ import annotations

import dataclasses
import math
import os
from datetime import datetime, timezone

from models.figures import figure_meanings
from models.segmentation import MembershipCounters
from models.state import CustomerState
from streams.runtime import Runtime

__all__ = ["cluster_members", "iso", "kpi_sums_document", "kpis_document", "profile_document", "readiness_document",
           "rule_sizes", "segments_document", "watermark_text", "worker_changes"]


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts is not None else None


def worker_changes(counters: MembershipCounters, segment_id: str) -> dict[str, int]:
    """Cluster changes into and out of a segment emitted by this worker since it started
    (cumulative: not reset by a new model version)."""
    return {"entered_since_worker_start": counters.entered.get(segment_id, 0),
            "left_since_worker_start": counters.left.get(segment_id, 0)}


def watermark_text(low: float) -> str | None:
    """The input watermark for /ready: a time, ``"caught up"`` (no partition behind), or None
    (not measured yet: nothing is swept)."""
    if math.isfinite(low):
        return iso(low)
    return "caught up" if low > 0 else None


def profile_document(rt: Runtime, state: CustomerState) -> dict:
    """GET /customers/{id}: the customer's profile as of the worker's clock."""
    at = rt.clock.now() or state.last_event_ts or 0.0
    doc = rt.pipeline.profile(state, at)
    doc["as_of"] = iso(at)
    return doc


def segments_document(rt: Runtime) -> dict:
    """GET /segments (docs/integration.md)."""
    snap = rt.pipeline.snapshot
    rule_part = rt.pipeline.rule_report(*rule_sizes(rt))
    if snap is None:
        return {"model_version": None, "segments": [], **rule_part}
    population = snap.population_estimate
    counters = rt.pipeline.segmenter.counters
    members, members_scope = cluster_members(rt)
    segments = []
    for sid, label, desc in zip(snap.segment_ids, snap.labels, snap.descriptions):
        stats = snap.stats.get(sid, {})
        members_share, nearest_share = stats.get("member_share"), stats.get("sample_share")
        share = members_share if members_share is not None else nearest_share
        segments.append({
            "id": sid, "label": label, "description": desc,
            # Members, estimated from the training sample (a model trained before memberships were
            # known: the customers nearest to its centre, which is where they go).
            "size_estimate": round(share * population) if share is not None and population else None,
            "nearest_estimate": (round(nearest_share * population)
                                 if nearest_share is not None and population else None),
            "members": members.get(sid, 0) if members is not None else None,
            "stats": stats, **worker_changes(counters, sid),
        })
    # Segments retired from the model that this worker's customers left since it started.
    retired = [{"id": sid, "label": snap.label(sid), **worker_changes(counters, sid)}
               for sid in sorted(set(counters.entered) | set(counters.left)) if snap.index(sid) is None]
    return {
        "members_counted": members_scope,
        "changes_counted": {"since": iso(rt.started_at), "by": "this worker, for the customers of its "
                            "partitions (each worker counts the changes it emits)"},
        "retired_segments": retired,
        "model_version": snap.version, "trained_at": iso(snap.created_at), "algorithm": snap.algorithm,
        "features": list(snap.features), "figures_read_as": figure_meanings(),
        "population_estimate": population,
        "segments": segments, **rule_part,
        "definition_version": snap.definition_version, "valuation": snap.valuation,
        "kpis": kpis_document(rt),
    }


def kpis_document(rt: Runtime) -> dict:
    """The ``kpis`` of /segments: each segment's KPIs and viability at this worker's last complete
    sweep pass, over its partitions (docs/segmentation.md, "KPIs and the viability scorecard")."""
    report = rt.metrics.kpis
    if report is None:
        return {"counted": "not counted yet: KPIs come from the first complete sweep pass of this worker"}
    labels = rt.pipeline.segment_labels()
    cards = {(s.kind, s.segment_id): s.to_dict() for s in report.scorecard.segments}
    return {
        "counted": "exact over this worker's partitions at its last complete sweep pass",
        "as_of": iso(report.at), "partitions": list(report.partitions),
        "currency": rt.pipeline.config.value.base_currency,
        "window_days": report.kpis.window_days, "population": report.kpis.population_figures(),
        "thresholds": report.scorecard.config.model_dump(),
        "segments": [{**f, "label": labels.get(f["kind"], {}).get(f["segment_id"]),
                      "scorecard": cards.get((f["kind"], f["segment_id"]))} for f in report.figures],
        "failing": [{"kind": kind, "segment_id": sid, "criteria": failed}
                    for (kind, sid), failed in report.scorecard.failing().items()],
    }


def kpi_sums_document(rt: Runtime) -> dict:
    """GET /segments/kpis: this worker's raw KPI sums (:meth:`models.kpis.SegmentKPIs.to_dict`), the
    customer partitions they cover (of ``partitions_total``, in consumer group ``group``), its
    segments' entries and exits over the last week and their labels, for ``segstream segments`` to
    merge several workers' exactly."""
    report = rt.metrics.kpis
    if report is None:
        return {"kpis": None}
    return {"kpis": report.kpis.to_dict(), "as_of": iso(report.at),
            # what the sums cover, for the merge to refuse an overlap (the same worker twice, or a
            # rebalance under way) and to say when a partition is missing
            "group": rt.settings.worker.app_id, "partitions": list(report.partitions),
            "partitions_total": rt.settings.topics.partitions,
            "labels": rt.pipeline.segment_labels(),
            "currency": rt.pipeline.config.value.base_currency,
            "flows": [[kind, sid, dataclasses.asdict(flow)] for (kind, sid), flow in report.flows.items()]}


def cluster_members(rt: Runtime) -> tuple[dict[str, int] | None, str]:
    """Customers in each cluster segment (their membership, after margin and dwell), counted
    exactly at this worker's last complete sweep pass (``size_estimate`` is the trainer's
    estimate of the same from its sample)."""
    counts = rt.metrics.population_counts
    if counts is None:
        return None, "not counted yet: members come from the first complete sweep pass of this worker"
    members = {segment: n for (kind, segment), n in counts.items() if kind == "cluster"}
    return members, ("exact over this worker's partitions at its last complete sweep pass: customers in the "
                     "segment (margin and dwell applied); size_estimate is the members estimated from the training sample, "
                     "nearest_estimate the customers nearest to the segment's centre (where members move after dwell)")


def rule_sizes(rt: Runtime) -> tuple[dict[str, int], str]:
    """Rule segment sizes from this worker's last complete sweep pass (the sweep visits every
    customer of its partitions once per pass), and what they cover; none before that pass."""
    counts = rt.metrics.population_counts
    if counts is None:
        return {}, "not counted yet: sizes come from the first complete sweep pass of this worker"
    sizes = {segment: n for (kind, segment), n in counts.items() if kind == "rule"}
    rules = rt.pipeline.rules
    if rules is not None:
        sizes = {d.id: sizes.get(d.id, 0) for d in rules.definitions.segment}
    return sizes, "exact over this worker's partitions at its last complete sweep pass"


def readiness_document(rt: Runtime) -> dict:
    """GET /ready."""
    recovery = rt.app.tables.recovery  # type: ignore[attr-defined]  # not in faust's TableManagerT
    recovered = recovery.completed.is_set()
    model_feed = rt.listener.started.is_set()
    partitions = sorted(rt.active_partitions())
    snap = rt.pipeline.snapshot
    return {
        "ready": recovered and model_feed and rt.app.consumer is not None, "pid": os.getpid(),
        "tables_recovered": recovered,
        # while the table is restored: changelog records still to read (a restore of 1 M customers
        # takes minutes with memory://; docs/benchmarks.md), 0 once recovered or before it is known
        "changelog_remaining": 0 if recovered else recovery.active_remaining_total(),
        "model_feed": model_feed,
        "partitions": partitions, "trainer": rt.is_trainer(),
        "trainer_status": rt.trainer.status(),
        "model_version": snap.version if snap else None, "clock": iso(rt.clock.now()),
        "input_watermark": watermark_text(rt.clock.input_watermark),
    }
