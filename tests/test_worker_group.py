"""Workers as a group on the real broker: a restart mid-stream, and two workers sharing the work."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from models.config import ValueConfig
from models.snapshot import ModelSnapshot
from schemas.errors import ConfigurationError
from models.synthetic import generate_population
from schemas.segment_change import SegmentChange
from tests.kafka_helpers import WorkerProcess, consume, produce, run, start_pair, wait_split, wait_until
from tests.test_worker_e2e import ground_truth, matches_truth, to_messages, worker_env

pytestmark = pytest.mark.kafka


def _prefix(tag: str) -> str:
    return f"{tag}{datetime.now().strftime('%H%M%S%f')}."


def _all_match(worker: WorkerProcess, truth: dict) -> bool:
    for customer_id, state in truth.items():
        status, profile = worker.request(f"/customers/{customer_id}")
        if status != 200 or not matches_truth(profile, state):  # type: ignore[arg-type]
            return False
    return True


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_restart_mid_stream_recovers_the_table_without_loss_or_double_counting(
    kafka_bootstrap: str, tmp_path: Path, store: str
) -> None:
    prefix = _prefix("restart")
    events = generate_population(120, seed=8).events
    messages = to_messages(prefix, events)
    env = worker_env(kafka_bootstrap, prefix, tmp_path / "data", SEGSTREAM_WORKER__STORE=store)
    first = WorkerProcess(env, tmp_path / "first.log")
    try:
        first.wait_ready()
        run(produce(kafka_bootstrap, messages))
        wait_until(lambda: first.metric("segstream_events_total", outcome="applied") >= len(messages) // 3, 120,
                   "a third of the events applied")
    finally:
        assert first.stop() == 0, first.log_tail()  # graceful stop, mid-stream
    # Restarted as a deployment restarts it, on the same data directory and port: the same static
    # member (streams.group_member), which gets its partitions back without a rebalance.
    second = WorkerProcess({**env, "SEGSTREAM_WORKER__WEB_PORT": str(first.port)}, tmp_path / "second.log")
    try:
        second.wait_ready()
        # Redeliver the latest events, as Kafka does after a crash (from the committed offsets):
        # updates are idempotent per event_id within each customer's window of recent events of
        # the same type (models.state), which these fit in.
        redelivered = messages[-300:]
        per_window = Counter((e["customer_id"], e["type"]) for e in events[-300:])
        assert max(per_window.values()) <= ValueConfig().dedupe_keep_last
        run(produce(kafka_bootstrap, redelivered))
        truth = ground_truth(events)
        wait_until(lambda: _all_match(second, truth), 180, "every profile to equal the ground truth")
        wait_until(lambda: second.metric("segstream_events_total", outcome="duplicate") >= len(redelivered), 60,
                   "the redelivered events to be recognised")
        # (More than those: events the first worker applied but had not committed come back too.)
        time.sleep(2)
        assert _all_match(second, truth)  # every redelivered event was recognised: nothing counted twice
        # The restarted worker did not start from scratch: the table came back from its changelog.
        applied_after = second.metric("segstream_events_total", outcome="applied")
        assert applied_after < len(messages), "the second worker re-applied everything: no recovery"
    finally:
        assert second.stop() == 0, second.log_tail()


def test_two_workers_split_partitions_share_one_model_and_answer_any_lookup(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = _prefix("pair")
    events = generate_population(160, seed=9).events
    a, b = start_pair(worker_env(kafka_bootstrap, prefix, tmp_path / "unused"), tmp_path)
    try:
        parts_a, parts_b = wait_split(a, b)
        assert not set(parts_a) & set(parts_b)

        run(produce(kafka_bootstrap, to_messages(prefix, events)))
        truth = ground_truth(events)
        # Every lookup, from either worker, is answered by the owner (forwarded when needed).
        wait_until(lambda: _all_match(a, truth), 180, "worker a to answer every customer correctly")
        assert _all_match(b, truth)
        def applied() -> float:
            return sum(w.metric("segstream_events_total", outcome="applied") for w in (a, b))
        # Each event applied exactly once across the two workers (and the split really split the work).
        wait_until(lambda: applied() >= len(events), 60, "every event applied")
        assert applied() == len(events)
        assert sum(w.metric("segstream_events_total", outcome="duplicate") for w in (a, b)) == 0
        assert a.metric("segstream_events_total", outcome="applied") > 0
        assert b.metric("segstream_events_total", outcome="applied") > 0

        # One model for both: the same version installed on each, from the one trainer.
        ready_a, ready_b = a.get("/ready"), b.get("/ready")
        assert [ready_a["trainer"], ready_b["trainer"]].count(True) == 1  # type: ignore[index]
        def same_model() -> bool:
            # (Two workers without a model yet also answer alike: wait for a trained one.) The
            # changes each worker counted itself (streams.app.worker_changes) differ, by design.
            segments = a.get("/segments")
            return segments["model_version"] is not None and model_part(segments) == model_part(b.get("/segments"))
        wait_until(same_model, 60, "both workers to hold the same trained model")
        version = a.get("/segments")["model_version"]  # type: ignore[index]
        snapshots = run(consume(kafka_bootstrap, f"{prefix}model-snapshots", version, timeout_s=30))
        published = {ModelSnapshot.from_bytes(r.value).version for r in snapshots}
        assert version in published  # (a newer one may have come since: the trainer keeps training)

        # Customers processed before the model arrived are assigned by the sweep pass it starts.
        def total_changes() -> float:
            return a.metric("segstream_segment_changes_total") + b.metric("segstream_segment_changes_total")
        wait_until(lambda: total_changes() > 0, 60, "the first segment changes")
        changes = [SegmentChange.model_validate_json(r.value) for r in run(consume(
            kafka_bootstrap, f"{prefix}segment-changes", int(a.metric("segstream_segment_changes_total")
                                                              + b.metric("segstream_segment_changes_total"))))]
        assert changes and {c.model_version for c in changes} <= published

        # The group's KPIs: each worker counts its own partitions; merged, every customer once.
        from models.kpis import SegmentKPIs
        from streams.segments_report import from_workers

        customers = len({e["customer_id"] for e in events})
        urls = [f"http://127.0.0.1:{w.port}" for w in (a, b)]
        # Each worker's figures are its partitions' last complete sweep passes, and a pass counts the
        # customers its partition held when it started: one listed just before the last events were
        # applied is short of them until the next pass (every SWEEP_PERIOD_S) completes. So the
        # merged population may be short for a moment, but never over: nobody is counted twice.
        seen: list[list[int]] = []

        def populations() -> list[int]:
            docs = [w.get("/segments/kpis")["kpis"] for w in (a, b)]  # type: ignore[index]
            own = [SegmentKPIs.from_dict(doc).population if doc else 0 for doc in docs]  # type: ignore[arg-type]
            seen.append(own)
            return own

        try:
            wait_until(lambda: sum(populations()) == customers and min(seen[-1]) > 0, 60,
                       "both workers' KPIs to count every customer")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; populations read: {seen[-10:]}") from None
        for _ in range(5):  # later passes count the same customers
            time.sleep(0.5)
            populations()
        assert all(sum(own) <= customers for own in seen), seen
        assert sum(seen[-1]) == customers, seen
        # Each says which partitions it counted: the group's four, each once.
        covered = [w.get("/segments/kpis")["partitions"] for w in (a, b)]  # type: ignore[index]
        assert sorted(covered[0] + covered[1]) == [0, 1, 2, 3], covered  # type: ignore[operator]
        assert from_workers(urls).kpis.population == customers
        with pytest.raises(ConfigurationError, match="counted twice"):  # one worker given twice
            from_workers([urls[0], urls[0]])
        with pytest.raises(ConfigurationError, match="missing"):  # one worker of the two
            from_workers(urls[:1])
        assert from_workers(urls[:1], partial=True).kpis.population == seen[-1][0]
    finally:
        codes = [w.stop() for w in (a, b)]
    assert codes == [0, 0], a.log_tail() + b.log_tail()


def model_part(doc: dict) -> dict:
    """The /segments document without what each worker counts itself (its members, changes and KPIs)."""
    local = {"entered_since_worker_start", "left_since_worker_start", "members"}
    # kpis: each worker's over its own partitions (segstream segments --url merges them)
    return {**{k: v for k, v in doc.items()
               if k not in ("changes_counted", "retired_segments", "members_counted", "kpis")},
            "segments": [{k: v for k, v in s.items() if k not in local} for s in doc.get("segments", [])]}
