"""``segstream soak`` in miniature: the same code as the 30-minute run of the README, for a minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.harnesses.soak import SoakPlan, run

pytestmark = pytest.mark.kafka


def test_a_short_soak_and_a_burst_lose_nothing_and_the_backlog_drains(kafka_bootstrap: str, tmp_path: Path) -> None:
    from streams.settings import Settings

    base = Settings().model_copy(update={"bootstrap_servers": kafka_bootstrap})
    # A burst of 10,000 events/s: several times what one worker drains on any machine we know
    # (faust's per-message work alone caps it near that), so a backlog must build up and drain.
    plan = SoakPlan(minutes=0.5, rate=200, burst_factor=50, burst_seconds=5, customers=300, sample_s=3)
    report = run(plan, tmp_path, log=print, base=base)
    print("\n".join(report.lines()))
    assert report.worker_alive
    assert report.mismatched_customers == []  # every customer's purchases and spend as sent
    assert report.burst_peak_backlog > 2_000  # the burst really outran the worker...
    assert report.drained_after_burst_s is not None  # ...and the backlog drained afterwards
    assert [s.phase for s in report.samples][-1] == "end" and report.samples[-1].backlog == 0
    assert report.sent > plan.rate * plan.minutes * 60


def test_a_soak_too_short_to_compare_memory_says_so_instead_of_nan() -> None:
    from streams.harnesses.soak import Sample, SoakReport

    plan = {"burst_factor": 10.0, "burst_seconds": 30.0}
    short = SoakReport(plan, [Sample(12.0, 190.0, 0, 0, "steady"), Sample(20.0, 191.0, 10, 10, "burst")],
                       drained_after_burst_s=2.0)
    assert any(line.startswith("memory: not judged: the steady phase had fewer than 2 samples") for line in short.lines())
    assert not any("nan" in line for line in short.lines())
    steady = [Sample(float(t), 200.0 + t / 100, t, t, "steady") for t in range(0, 400, 50)]
    long = SoakReport(plan, steady, drained_after_burst_s=2.0)
    assert "memory: 201.0 MB after warm-up -> 203.5 MB at the end of the steady phase (+1.2 %)" in long.lines()
