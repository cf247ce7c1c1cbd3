"""Security basics on a broker that requires SASL: every client of segstream authenticates through
the settings, customer data on the web API needs the bearer token, and neither customer data nor
secrets reach the logs at INFO."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from models.synthetic import generate_population, iter_jsonl
from streams.local_kafka import LocalKafka
from streams.settings import Settings
from tests.kafka_helpers import ROOT, WorkerProcess, wait_until
from tests.test_worker_e2e import ground_truth, matches_truth, worker_env

pytestmark = pytest.mark.kafka

PASSWORD = "s3cret-Pa55word"
TOKEN = "tok-7c1f0e9a2b"


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    kafka = LocalKafka.from_settings(Settings().local_kafka, run_dir=tmp_path_factory.mktemp("sasl-kafka"))
    kafka.sasl_users = {"admin": "admin-Pa55", "segstream": PASSWORD}
    kafka.start()
    try:
        yield kafka
    finally:
        kafka.stop()


def sasl_env(bootstrap: str, password: str = PASSWORD) -> dict[str, str]:
    return {"KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "SEGSTREAM_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "SEGSTREAM_KAFKA__SASL_MECHANISM": "PLAIN",
            "SEGSTREAM_KAFKA__SASL_USERNAME": "segstream",
            "SEGSTREAM_KAFKA__SASL_PASSWORD": password}


def cli(env: dict[str, str], *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=timeout_s)


def test_a_wrong_password_is_refused_with_a_clear_error(sasl_broker: LocalKafka) -> None:
    env = {**sasl_env(sasl_broker.bootstrap_servers, password="wrong"), "SEGSTREAM_TOPICS__PREFIX": "denied."}
    result = cli(env, "topics")
    assert result.returncode != 0
    assert "authentication" in (result.stdout + result.stderr).lower()
    assert "wrong" not in result.stdout + result.stderr  # the password is not echoed


def test_worker_producer_and_api_on_a_sasl_broker_with_a_bearer_token(sasl_broker: LocalKafka, tmp_path: Path) -> None:
    prefix = f"sec{int(time.time() * 1000)}."
    pop = generate_population(40, seed=21)
    events_file = tmp_path / "events.jsonl"
    with events_file.open("wb") as f:
        f.writelines(iter_jsonl(pop.events))
    env = {**worker_env(sasl_broker.bootstrap_servers, prefix, tmp_path / "data"),
           **sasl_env(sasl_broker.bootstrap_servers),
           "SEGSTREAM_WORKER__API_TOKEN": TOKEN, "SEGSTREAM_WORKER__LOG_LEVEL": "info"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    try:
        worker.wait_ready()
        produced = cli(env, "produce", str(events_file))
        assert produced.returncode == 0, produced.stderr
        wait_until(lambda: worker.metric("segstream_events_total", outcome="applied") >= len(pop.events), 120,
                   "every event applied")

        customer = pop.events[0]["customer_id"]
        assert worker.request(f"/customers/{customer}")[0] == 401
        assert worker.request(f"/customers/{customer}", headers={"Authorization": "Bearer nope"})[0] == 401
        assert worker.request(f"/customers/{customer}", headers={"Authorization": f"Basic {TOKEN}"})[0] == 401
        status, profile = worker.request(f"/customers/{customer}", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and matches_truth(profile, ground_truth(pop.events)[customer])  # type: ignore[arg-type]
        assert worker.request(f"/customers/{customer}", method="DELETE")[0] == 401
        for path in ("/health", "/ready", "/metrics", "/segments"):  # no customer data: open to probes
            assert worker.request(path)[0] == 200, path
        status, _ = worker.request(f"/customers/{customer}", method="DELETE",
                                   headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 202
        wait_until(lambda: worker.request(f"/customers/{customer}",
                                          headers={"Authorization": f"Bearer {TOKEN}"})[0] == 404, 60, "erased")
    finally:
        assert worker.stop() == 0, worker.log_tail()

    log = worker.log_path.read_text(errors="replace")
    assert "[INFO]" in log  # the log was written at INFO
    customers = {e["customer_id"] for e in pop.events}
    leaked = sorted(c for c in customers if c in log)
    assert leaked == [], f"customer ids in the worker log: {leaked[:5]}"
    assert PASSWORD not in log and TOKEN not in log
