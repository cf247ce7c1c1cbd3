"""The invariant through a live worker: when nothing a segment depends on changes, no segment
changes. A worker replays a persona population on the event clock; then its clock is frozen (no
input at all) while its trainer keeps retraining on its timer and the sweep keeps re-evaluating
every customer. After the changes the frozen clock itself explains (customers lapsing since their
last event, once), no segment-change event may be emitted: not on retraining, not on a BTYD
refit, not on a threshold update, not on a sweep."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from models.synthetic import generate_population
from tests.kafka_helpers import ROOT, WorkerProcess, produce, run, wait_until
from tests.test_worker_e2e import to_messages, worker_env

pytestmark = pytest.mark.kafka

CUSTOMERS = 300
SETTLE_S = 10.0  # the frozen clock's own changes (lapses since the last event) happen within it
QUIET_S = 30.0  # about 30 trainer ticks and 60 sweep ticks


def test_no_segment_changes_while_nothing_arrives(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"quiet-{tmp_path.name[-6:]}."
    population = generate_population(CUSTOMERS, seed=17)
    env = worker_env(kafka_bootstrap, prefix, tmp_path / "data",
                     SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE=str(ROOT / "examples" / "segments.toml"))
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        run(produce(kafka_bootstrap, to_messages(prefix, population.events)))
        wait_until(lambda: worker.metric("segstream_events_total") >= len(population.events), 180,
                   "every event consumed")
        wait_until(lambda: (worker.get("/ready") or {}).get("model_version"), 60, "a model")  # type: ignore[union-attr]
        time.sleep(SETTLE_S)
        before = worker.metric("segstream_segment_changes_total")
        sweeps = worker.metric("segstream_reevaluated_customers_total")
        time.sleep(QUIET_S)
        after = worker.metric("segstream_segment_changes_total")
        assert worker.metric("segstream_reevaluated_customers_total") - sweeps >= 10 * CUSTOMERS  # sweeps ran
        assert worker.get("/ready")["trainer"] is True  # type: ignore[index]  # and so did the trainer's timer
        # every partition read to its end: the input watermark holds nothing back (streams.watermark)
        assert worker.get("/ready")["input_watermark"] == "caught up"  # type: ignore[index]
        assert worker.metric("segstream_input_watermark_timestamp_seconds") == float("inf")
        by_reason = {reason: worker.metric("segstream_segment_changes_total", reason=reason)
                     for reason in ("better_fit", "dwell_elapsed", "segment_retired", "rule_entered", "rule_left")}
        assert after - before == 0, f"{after - before:.0f} changes in {QUIET_S:.0f} s without input (totals: {by_reason})"
    finally:
        assert worker.stop() == 0, worker.log_tail()
