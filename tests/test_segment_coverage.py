"""Segment populations and KPIs count each customer of the group once: a worker counts a partition
only from a whole sweep pass of its own, says which partitions its figures cover, and
``segstream segments --url ...`` refuses to merge figures that overlap or leave partitions out."""

from __future__ import annotations

import asyncio
import http.server
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

from models.kpis import SegmentKPIs
from models.pipeline import Pipeline
from monitoring.metrics import WorkerMetrics
from schemas.errors import ConfigurationError
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.segments_report import from_workers, render
from streams.sweep import Sweeper
from tests.test_event_clock import ENGINE, PURCHASES, REEVALUATE, TOPICS, DeadLetters

START = datetime(2026, 3, 1, tzinfo=timezone.utc)


# ---- the sweep: a partition's pass ends only if it was active throughout ---------------------

def test_a_partition_assigned_during_a_pass_gets_no_end_until_a_whole_pass() -> None:
    """Its customers popped before it was assigned here were skipped: an ``end`` would publish a
    short count for it."""
    from streams.partitioning import home_partition

    keys = [f"c{i}".encode() for i in range(40)]
    sweeper = Sweeper(partitions=2, batch=10, period_s=0.0, identity="me")
    ends: dict[int, int] = {0: 0, 1: 0}
    seen: dict[int, list[str]] = {0: [], 1: []}
    for tick, active in enumerate([{0}, {0}, {0, 1}, {0, 1}]):  # partition 1 assigned at the third tick
        for p, batch in sweeper.tick(keys, active, now=float(tick)).items():
            assert batch.sweeper == "me" and batch.sweep_pass == 1
            ends[p] += batch.end
    assert ends == {0: 1, 1: 0} and sweeper.passes == 1
    for tick in range(4, 8):  # the next pass: partition 1 active throughout
        for p, batch in sweeper.tick(keys, {0, 1}, now=float(tick)).items():
            ends[p] += batch.end
            seen[p].extend(batch.customers)
    assert ends == {0: 2, 1: 1} and sweeper.passes == 2
    assert sorted(seen[1]) == sorted(k.decode() for k in keys if home_partition(k, 2) == 1)


def test_a_partition_revoked_and_given_back_during_a_pass_gets_no_end() -> None:
    keys = [f"c{i}".encode() for i in range(30)]
    sweeper = Sweeper(partitions=2, batch=10, period_s=0.0)
    ends = {0: 0, 1: 0}
    for tick, active in enumerate([{0, 1}, {0}, {0, 1}]):
        for p, batch in sweeper.tick(keys, active, now=float(tick)).items():
            ends[p] += batch.end
    assert ends == {0: 1, 1: 0}


def test_each_sweeper_has_its_own_identity() -> None:
    assert Sweeper(2, 10, 1.0).identity != Sweeper(2, 10, 1.0).identity


# ---- the processor counts its own whole passes only --------------------------------------------

class _Worker:
    def __init__(self, sweeper: str) -> None:
        routes = {name: etype for etype, name in TOPICS.input_topics.items()} | {REEVALUATE: "reevaluate"}
        self.metrics = WorkerMetrics()
        from streams.clock import WorkerClock

        self.processor = CustomerProcessor(Pipeline(ENGINE, train_locally=True), {}, DeadLetters(),
                                           WorkerClock("event"), SampleForwarder(), self.metrics, routes,
                                           active_partitions=lambda: {0}, sweeper=sweeper)
        self.offset = 0

    def _next(self) -> int:
        self.offset += 1
        return self.offset

    def purchase(self, customer: str) -> None:
        event = {"type": "purchase", "event_id": f"p-{customer}", "customer_id": customer,
                 "timestamp": START.isoformat(), "amount": 10.0}
        self._feed(InMessage(PURCHASES, 0, self._next(), customer.encode(), orjson.dumps(event)))

    def sweep(self, customers: list[str], sweep_pass: int, end: bool, sweeper: str | None) -> None:
        body = {"customers": customers, "pass": sweep_pass, "end": end, "sweeper": sweeper}
        self._feed(InMessage(REEVALUATE, 0, self._next(), None, orjson.dumps(body)))

    def _feed(self, msg: InMessage) -> None:
        asyncio.run(self.processor.handle_batch([msg]))

    def counted(self) -> tuple[int, tuple[int, ...]] | None:
        report = self.metrics.kpis
        return None if report is None else (report.kpis.population, report.partitions)


def test_another_sweepers_batches_are_evaluated_but_not_counted() -> None:
    """Pass numbers are each sweeper's own: a previous owner's batch of pass 1 (or this worker's
    before a restart) must not count into this worker's pass 1."""
    worker = _Worker(sweeper="mine")
    for customer in ("ann", "bob", "cid"):
        worker.purchase(customer)
    worker.sweep(["ann", "bob", "cid"], 1, end=False, sweeper="previous-owner")
    worker.sweep(["ann"], 1, end=False, sweeper="mine")
    worker.sweep([], 1, end=True, sweeper="previous-owner")
    assert worker.counted() is None  # the other's end completes nothing
    worker.sweep(["bob", "cid"], 1, end=True, sweeper="mine")
    assert worker.counted() == (3, (0,))  # each customer once


def test_a_pass_with_a_batch_not_counted_publishes_nothing() -> None:
    """A batch that came before the clock had a time is not evaluated: its pass's total would be
    short, so the partition keeps its last whole pass (here: none yet)."""
    worker = _Worker(sweeper="mine")
    worker.sweep(["ann"], 1, end=False, sweeper="mine")  # no event yet: the clock has no time
    worker.purchase("ann")
    worker.purchase("bob")
    worker.sweep(["bob"], 1, end=True, sweeper="mine")
    assert worker.counted() is None
    worker.sweep(["ann", "bob"], 2, end=True, sweeper="mine")
    assert worker.counted() == (2, (0,))


# ---- segstream segments --url: each partition of the group counted once ----------------------

def _kpis(customers: int) -> dict:
    kpis = SegmentKPIs(90)
    for _ in range(customers):
        kpis.add([("rule", "vip")], {"clv": 10.0}, None)
    return kpis.to_dict()


def _doc(customers: int, partitions: list[int], group: str = "segstream", total: int = 4,
         entered: int = 0) -> dict:
    return {"kpis": _kpis(customers), "as_of": START.isoformat(), "group": group, "partitions": partitions,
            "partitions_total": total, "labels": {"rule": {"vip": "VIP"}}, "currency": "USD",
            "flows": [["rule", "vip", {"entered": entered, "left": 0, "span_days": 7.0}]]}


@pytest.fixture
def workers() -> Iterator[dict[str, Any]]:
    """Fake workers' ``GET /segments/kpis`` on 127.0.0.1: ``docs[name]`` is served at ``/<name>``."""
    docs: dict[str, Any] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            name = self.path.strip("/").split("/")[0]
            body = orjson.dumps(docs[name])
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"docs": docs, "url": lambda name: f"http://127.0.0.1:{server.server_port}/{name}"}
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_two_workers_splitting_the_partitions_merge_into_the_groups_figures(workers: dict) -> None:
    workers["docs"].update(a=_doc(3, [0, 1], entered=2), b=_doc(5, [2, 3], entered=7))
    report = from_workers([workers["url"]("a"), workers["url"]("b")])
    assert report.kpis.population == 8 and report.population_label == "All customers"
    assert report.flows[("rule", "vip")].entered == 9  # each worker's entries once
    assert not any("partial" in note for note in report.notes)


def test_the_same_worker_given_twice_is_refused(workers: dict) -> None:
    workers["docs"].update(a=_doc(3, [0, 1, 2, 3]))
    url = workers["url"]("a")
    for twice in (url, url + "/", url.replace("127.0.0.1", "LocalHost"), url.replace("http://", "")):
        with pytest.raises(ConfigurationError, match=r"the same worker as .*/a, given twice"):
            from_workers([url, twice])


def test_a_worker_without_figures_yet_is_named_before_anything_is_compared(workers: dict) -> None:
    """A worker just (re)started answers ``{"kpis": null}``: that is what is said, not that the
    workers disagree on a currency it did not give."""
    workers["docs"].update(a=_doc(3, [0, 1]), b={"kpis": None})
    with pytest.raises(ConfigurationError, match=r"/b: no KPIs yet"):
        from_workers([workers["url"]("a"), workers["url"]("b")])


def test_a_worker_still_reporting_partitions_it_lost_is_refused(workers: dict) -> None:
    """A worker paused through a rebalance answers with its old partitions for a while."""
    workers["docs"].update(a=_doc(3, [0, 1]), b=_doc(6, [0, 1, 2, 3]))
    with pytest.raises(ConfigurationError, match="partition 0 by .* partition 1 by .*rebalance"):
        from_workers([workers["url"]("a"), workers["url"]("b")])


def test_missing_partitions_are_refused_unless_partial_and_then_said(workers: dict) -> None:
    workers["docs"].update(a=_doc(3, [0, 1]))
    with pytest.raises(ConfigurationError, match=r"cover partitions 0, 1 of 4 \(missing: 2, 3\)"):
        from_workers([workers["url"]("a")])
    report = from_workers([workers["url"]("a")], partial=True)
    assert report.kpis.population == 3 and report.population_label == "Customers counted"
    assert any(note.startswith("partial: customer partitions 0, 1 of 4 only") for note in report.notes)
    from models.config import ScorecardConfig

    text = render(report, ScorecardConfig(), "markdown")
    assert "Customers counted" in text and "All customers" not in text and "partitions 0, 1 of 4" in text


def test_workers_of_different_groups_are_refused(workers: dict) -> None:
    workers["docs"].update(a=_doc(3, [0, 1], group="shop-eu"), b=_doc(5, [2, 3], group="shop-us"))
    with pytest.raises(ConfigurationError, match="different consumer groups"):
        from_workers([workers["url"]("a"), workers["url"]("b")])


def test_the_cli_refuses_an_overlap_in_one_line_with_exit_code_2(workers: dict) -> None:
    workers["docs"].update(a=_doc(3, [0, 1, 2, 3]))
    url = workers["url"]("a")
    done = subprocess.run([sys.executable, "-m", "streams.cli", "segments", "--url", url, "--url", url],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "given twice" in done.stderr and "Traceback" not in done.stderr
