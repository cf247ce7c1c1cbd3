"""Lookups forwarded to the customer's owner, when the owner has just died: 503 with Retry-After."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from models.synthetic import generate_population
from streams.partitioning import home_partition
from tests.kafka_helpers import produce, run, start_pair, wait_split, wait_until
from tests.test_worker_e2e import to_messages, worker_env

pytestmark = pytest.mark.kafka


def test_a_lookup_whose_owner_is_unreachable_answers_503_with_retry_after(kafka_bootstrap: str,
                                                                           tmp_path: Path) -> None:
    prefix = f"owner-{tmp_path.name[-6:]}."
    events = generate_population(40, seed=4).events
    a, b = start_pair(worker_env(kafka_bootstrap, prefix, tmp_path / "unused"), tmp_path)
    try:
        _, owned_by_b = wait_split(a, b)
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
