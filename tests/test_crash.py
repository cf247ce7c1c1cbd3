"""The crash test in its short form (CI): a worker SIGKILLed 3 times at random points and the
broker stopped and restarted once while a known stream flows, on a broker of its own.
``segstream crash-test`` (README) runs the long form: 10 kills, more customers. Its producer's
partitioner (``--partitioner``) is checked here without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.harnesses.crash_test import CrashPlan, CrashReport, run
from streams.partitioning import crc32_partition, fnv1a_partition, home_partition, partitioner_for


def test_mixed_partitioner_is_one_per_input_topic() -> None:
    types = ("purchase", "engagement", "feedback", "profile")
    assert [partitioner_for("mixed", etype) for etype in types] == [
        home_partition, crc32_partition, fnv1a_partition, crc32_partition]
    assert {partitioner_for("fnv1a", etype) for etype in types} == {fnv1a_partition}
    with pytest.raises(ValueError, match="unknown event type"):
        partitioner_for("mixed", "erasure")


def test_plan_takes_a_known_partitioner_and_the_report_states_it_first() -> None:
    assert CrashPlan().partitioner == "murmur2"
    with pytest.raises(ValueError, match="unknown partitioner 'round_robin'"):
        CrashPlan(partitioner="round_robin")  # type: ignore[arg-type]
    report = CrashReport(events=10, customers=2, partitioner=CrashPlan(partitioner="mixed").partitioner)
    assert report.lines()[0] == "partitioner: mixed (purchase: murmur2, engagement: crc32, feedback: fnv1a, profile: crc32)"
    assert CrashReport(events=10, customers=2).lines()[0] == "partitioner: murmur2"


def test_the_report_says_one_kill_and_one_restart_in_the_singular() -> None:
    report = CrashReport(events=1234, customers=2, kills=1, broker_restarts=1)
    assert report.lines()[2] == "stream: 1,234 events for 2 customers; 1 SIGKILL, 1 broker restart; 0 s"


@pytest.mark.kafka
@pytest.mark.parametrize("delivery", ["faust", "batch"])
def test_sigkills_and_a_broker_restart_lose_nothing_and_count_nothing_twice(tmp_path: Path, delivery: str,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # A different partitioner per input topic: messages processed at home and forwarded ones both
    # go through the kills. Both delivery paths (worker.delivery; the workers inherit the setting):
    # each with write-behind, the default.
    monkeypatch.setenv("SEGSTREAM_WORKER__DELIVERY", delivery)
    plan = CrashPlan(customers=100, kills=3, broker_restarts=1, seed=11, partitioner="mixed")
    report = run(plan, tmp_path, log=print)
    print("\n".join(report.lines()))
    assert report.kills == 3 and report.broker_restarts == 1
    assert report.customers == 100 and report.events > 10_000
    assert report.missing_customers == []
    assert report.mismatched_customers == []  # purchase_count, total_spend, ... equal the ground truth
    assert report.erased_customers > 0 and report.erasures_not_applied == []  # erased, and stayed erased
    assert report.conflicting_duplicates == 0  # a change_id seen twice carries the same decision...
    assert report.differing_duplicates == 0  # ...and is the same message, byte for byte (the outbox)
    assert report.final_view_mismatches == []  # a subscriber dropping repeats ends where the worker is
    assert report.changes > 0
    # Every restart came back and applied events again.
    assert all(r.resumed_s is not None for r in report.recoveries), report.recoveries
