"""A partition the group never committed is read from its earliest offset after a restart: what
was written to it while its owner was down is applied (control topics included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.synthetic import generate_population
from schemas.erasure import erasure_now
from tests.kafka_helpers import WorkerProcess, produce, run, wait_settled, wait_until
from tests.test_worker_e2e import to_messages, worker_env

pytestmark = pytest.mark.kafka


def test_an_erasure_written_while_the_owner_was_down_is_applied_after_its_restart(kafka_bootstrap: str, tmp_path: Path,
                                                                                 unique_prefix: str) -> None:
    prefix = f"uncommitted-{unique_prefix}"  # its own topics also on a broker shared by several runs
    events = generate_population(30, seed=6).events
    customer = events[0]["customer_id"]
    env = worker_env(kafka_bootstrap, prefix, tmp_path / "data")
    first = WorkerProcess(env, tmp_path / "first.log")
    env = {**env, "SEGSTREAM_WORKER__WEB_PORT": str(first.port)}  # restarted as a deployment restarts it
    try:
        first.wait_ready()
        run(produce(kafka_bootstrap, to_messages(prefix, events)))
        wait_until(lambda: first.request(f"/customers/{customer}")[0] == 200, 90, "the customer's state")
    finally:
        first.proc.kill()  # SIGKILL: the erasures partitions never had a commit
        first.proc.wait()
    request = erasure_now(customer, "req-while-down")
    run(produce(kafka_bootstrap, [(f"{prefix}erasures", customer.encode(), request.to_json())]))
    second = WorkerProcess(env, tmp_path / "second.log")
    try:
        second.wait_ready()
        # Waited for by its status, not by a 404: right after the restart the customer can be
        # unknown only because its redelivered events are not processed yet (a loaded machine).
        status_url = f"/customers/{customer}/erasures/req-while-down"

        def applied() -> bool:
            status, doc = second.request(status_url)  # 503 while the table recovers
            return status == 200 and doc["applied"] is True  # type: ignore[index]

        wait_until(applied, 90, "the erasure written while the owner was down to be applied")
        assert "req-while-down" in second.log_tail(50_000)
        assert second.request(f"/customers/{customer}")[0] == 404
        # Whatever of its events Kafka redelivered after the kill (those whose offsets were not yet
        # committed: how many depends on timing) stays erased: still 404 once the worker is idle.
        wait_settled(second, "segstream_events_total", "the worker to consume everything")
        assert second.request(f"/customers/{customer}")[0] == 404
    finally:
        assert second.stop() == 0, second.log_tail()
