"""Lookups forwarded to the customer's owner, when the owner has just died: 503 with Retry-After."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from models.synthetic import generate_population
from streams.partitioning import home_partition
from tests.kafka_helpers import WorkerProcess, produce, run, wait_until
from tests.test_worker_e2e import to_messages, worker_env

pytestmark = pytest.mark.kafka


def test_a_lookup_whose_owner_is_unreachable_answers_503_with_retry_after(kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    prefix = f"owner-{tmp_path.name[-6:]}."
    events = generate_population(40, seed=4).events
    env = worker_env(kafka_bootstrap, prefix, tmp_path / "a")
    a = WorkerProcess(env, tmp_path / "a.log")
    b = WorkerProcess({**env, "SEGSTREAM_WORKER__DATA_DIR": str(tmp_path / "b")}, tmp_path / "b.log")
    try:
        a.wait_ready()
        b.wait_ready()

        def b_partitions() -> list[int]:
            parts = [a.get("/ready")["partitions"], b.get("/ready")["partitions"]]  # type: ignore[index]
            return parts[1] if all(parts) and sorted(parts[0] + parts[1]) == [0, 1, 2, 3] else []
        owned_by_b = wait_until(b_partitions, 90, "the partitions to be split")
        run(produce(kafka_bootstrap, to_messages(prefix, events)))
        customer = next(e["customer_id"] for e in events if home_partition(e["customer_id"].encode(), 4) in owned_by_b)
        wait_until(lambda: a.request(f"/customers/{customer}")[0] == 200, 90, "the lookup forwarded to b")

        b.proc.kill()  # SIGKILL: b's partitions stay b's until its session times out (static member)
        b.proc.wait()
        status, body = a.request(f"/customers/{customer}")
        assert status == 503, (status, body)
        assert "unreachable" in body["error"]  # type: ignore[index]
        try:
            urllib.request.urlopen(f"{a.url}/customers/{customer}", timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.headers["Retry-After"] == "5"
        else:
            raise AssertionError("the lookup succeeded with its owner dead")
        assert "Traceback" not in a.log_tail(20_000)
    finally:
        a.stop()
        if b.proc.poll() is None:
            b.stop()
