"""Monitoring against a real Prometheus server scraping a live worker on the real broker.

The worker processes a synthetic population; Prometheus (Debian's package) scrapes it every
second with the project's alert rules loaded. Every PromQL expression of the Grafana dashboard and
of the alert rules must evaluate without error, the throughput and segment panels must return data,
an injected shift in satisfaction must make the drift alert fire, and no metric label may carry a
customer id.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest

from models.synthetic import generate_population
from monitoring.promql import DEFAULT_ALERTS, alert_rules, dashboard_expressions, grafana_to_promql
from streams.local_kafka import free_port
from tests.kafka_helpers import WorkerProcess, produce, run, wait_until
from tests.test_worker_e2e import LAPSED_RULES, to_messages, worker_env

pytestmark = pytest.mark.kafka



class Prometheus:
    def __init__(self, target: str, work: Path):
        self.port = free_port()
        config = work / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files:\n  - {DEFAULT_ALERTS}\n"
            "scrape_configs:\n  - job_name: segstream\n    static_configs:\n"
            f"      - targets: ['{target}']\n"
        )
        binary = shutil.which("prometheus")
        assert binary, "the prometheus Debian package is missing (scripts/install-system-deps.sh installs it)"
        self.log = (work / "prometheus.log").open("wb")
        self.proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={work / 'tsdb'}",
                                      f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
                                     stdout=self.log, stderr=subprocess.STDOUT)

    def api(self, path: str, **params: str) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return orjson.loads(resp.read())
        except urllib.error.HTTPError as exc:  # 400/422 carry the PromQL error in the body
            return orjson.loads(exc.read())

    def query(self, expr: str) -> dict:
        return self.api("query", query=expr)

    def firing(self, alert: str) -> list[dict]:
        alerts = self.api("alerts").get("data", {}).get("alerts", [])
        return [a for a in alerts if a["labels"].get("alertname") == alert and a["state"] == "firing"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def detractor_wave(customers: list[str], start: datetime) -> list[dict]:
    """Every customer turns detractor and complains: a shift in satisfaction and cost to serve."""
    events = []
    for i, customer in enumerate(customers):
        ts = (start + timedelta(minutes=i)).isoformat()
        events.append({"type": "feedback", "event_id": f"wave-{customer}-nps", "customer_id": customer,
                       "timestamp": ts, "kind": "nps", "score": 0})
        for j in range(3):
            events.append({"type": "feedback", "event_id": f"wave-{customer}-c{j}", "customer_id": customer,
                           "timestamp": ts, "kind": "complaint"})
    return events


@pytest.fixture(scope="module")
def monitored(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("monitoring")
    prefix = f"mon{datetime.now().strftime('%H%M%S%f')}."
    rules = tmp / "rules.toml"
    rules.write_text(LAPSED_RULES)
    env = worker_env(kafka_bootstrap, prefix, tmp / "data", SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE=str(rules),
                     SEGSTREAM_WORKER__LAG_INTERVAL_S="1")
    worker = WorkerProcess(env, tmp / "worker.log")
    prometheus = None
    try:
        worker.wait_ready()
        prometheus = Prometheus(f"127.0.0.1:{worker.port}", tmp)
        pop = generate_population(200, seed=21)
        run(produce(kafka_bootstrap, to_messages(prefix, pop.events)))
        wait_until(lambda: worker.metric("segstream_events_total", outcome="applied") >= len(pop.events), 180,
                   "the population to be processed")
        wait_until(lambda: worker.metric("segstream_segment_customers") > 0, 60, "a full sweep pass")
        wait_until(lambda: prometheus.query('up{job="segstream"} == 1')["data"]["result"], 60,
                   "Prometheus to scrape the worker")
        yield {"worker": worker, "prometheus": prometheus, "events": pop.events, "prefix": prefix,
               "bootstrap": kafka_bootstrap, "end": datetime.fromtimestamp(pop.end, timezone.utc)}
    finally:
        if prometheus is not None:
            prometheus.stop()
        assert worker.stop() == 0, worker.log_tail()


def test_every_dashboard_and_alert_expression_evaluates(monitored: dict) -> None:
    prometheus = monitored["prometheus"]
    expressions = [(f"panel {title}", grafana_to_promql(expr)) for title, expr in dashboard_expressions()]
    expressions += [(f"alert {rule['name']}", rule["expr"]) for rule in alert_rules()]
    assert len(expressions) >= 15
    errors = {what: doc.get("error") for what, expr in expressions
              if (doc := prometheus.query(expr)).get("status") != "success"}
    assert not errors, errors
    rules = prometheus.api("rules")["data"]["groups"]
    assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules


def test_throughput_and_segment_panels_return_data(monitored: dict) -> None:
    prometheus = monitored["prometheus"]
    by_title = {title.lower(): grafana_to_promql(expr) for title, expr in dashboard_expressions()}
    throughput = [expr for title, expr in by_title.items() if "throughput" in title or "events/s" in title]
    segments = [expr for title, expr in by_title.items() if "segment" in title and "segstream_segment_customers" in expr]
    assert throughput and segments, sorted(by_title)
    for expr in throughput + segments:
        result = wait_until(lambda e=expr: prometheus.query(e)["data"]["result"], 60, f"data for {expr}")
        assert result
    # The exact populations agree with what the worker holds.
    clusters = prometheus.query('sum(segstream_segment_customers{kind="cluster"})')["data"]["result"]
    customers = prometheus.query("sum(segstream_customers)")["data"]["result"]
    assert float(clusters[0]["value"][1]) == float(customers[0]["value"][1]) > 0


def test_no_metric_label_takes_per_customer_values(monitored: dict) -> None:
    _, text = monitored["worker"].request("/metrics")
    customers = {e["customer_id"] for e in monitored["events"]}
    values: dict[str, set[str]] = {}
    for line in str(text).splitlines():
        if line.startswith("#") or "{" not in line:
            continue
        for name, value in re.findall(r'(\w+)="([^"]*)"', line.partition("{")[2].rpartition("}")[0]):
            values.setdefault(name, set()).add(value)
    assert values, "no labelled series at all"
    assert not {v for vs in values.values() for v in vs} & customers
    # Bounded: no label has more values than segments, features, buckets or reasons could give.
    assert max(len(vs) for vs in values.values()) <= 64, {k: len(v) for k, v in values.items()}


def test_injected_drift_fires_the_drift_alert(monitored: dict) -> None:
    prometheus, worker = monitored["prometheus"], monitored["worker"]
    shifted = 'segstream_drift_detections_total{feature=~"satisfaction|cost_to_serve"}'
    assert worker.metric("segstream_drift_detections_total", feature="satisfaction") == 0
    assert not [a for a in prometheus.firing("SegstreamDriftDetected")
                if a["labels"].get("feature") in ("satisfaction", "cost_to_serve")]
    # A baseline first: the detectors ignore their first 500 samples (a few trainings of this
    # 200-customer sample), and a shift inside that grace period would become the baseline.
    # Counted as run, not as published: a retraining on unchanged data publishes no new version.
    wait_until(lambda: (worker.get("/ready")["trainer_status"] or {}).get("trainings", 0) >= 6, 90,
               "a baseline of several trainings")
    customers = sorted({e["customer_id"] for e in monitored["events"]})
    wave = detractor_wave(customers, monitored["end"] + timedelta(hours=1))
    run(produce(monitored["bootstrap"], to_messages(monitored["prefix"], wave)))
    wait_until(lambda: prometheus.query(f"sum({shifted})")["data"]["result"], 120,
               "the trainer to detect the shift")
    firing = wait_until(lambda: [a for a in prometheus.firing("SegstreamDriftDetected")
                                 if a["labels"].get("feature") in ("satisfaction", "cost_to_serve")], 60,
                        "Prometheus to fire the drift alert")
    assert firing[0]["annotations"].get("runbook")


def test_segment_kpis_and_scorecard_reach_segments_metrics_and_the_report(monitored: dict, tmp_path: Path) -> None:
    """A complete sweep pass gives each segment its KPIs and scorecard in /segments, the raw sums in
    /segments/kpis, the segstream_segment_* gauges, and `segstream segments --url` renders them."""
    worker, prometheus = monitored["worker"], monitored["prometheus"]
    kpis = wait_until(lambda: (worker.get("/segments").get("kpis") or {}).get("segments"), 60, "KPIs of a sweep pass")
    population = worker.get("/segments")["kpis"]["population"]
    assert population["size"] == len({e["customer_id"] for e in monitored["events"]})
    clusters = [k for k in kpis if k["kind"] == "cluster"]
    assert clusters and sum(k["size"] for k in clusters) == population["size"]  # every customer is in one
    for k in kpis:
        assert set(k["scorecard"]["criteria"]) == {"substantial", "measurable", "accessible", "differentiable",
                                                   "stable", "profitable"}
        assert k["label"]
    raw = worker.get("/segments/kpis")
    assert raw["kpis"]["population"] and raw["currency"] == "USD"
    # The earlier tests' waves retrain the model, and a sweep pass of a new version can complete
    # between two reads: the gauges must reach Prometheus as the worker's segments of its latest
    # pass (Prometheus sees them one scrape later).
    def gauges_of_the_latest_pass() -> list[dict]:
        shares = {r["metric"]["segment"] for r in prometheus.query("segstream_segment_share")["data"]["result"]}
        latest = (worker.get("/segments").get("kpis") or {}).get("segments") or []
        return latest if shares and shares == {k["segment_id"] for k in latest} else []

    kpis = wait_until(gauges_of_the_latest_pass, 60, "the KPI gauges of the latest sweep pass in Prometheus")
    out = tmp_path / "report.md"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "segments", "--url", f"127.0.0.1:{worker.port}",
                           "--format", "markdown", "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert all(f"({k['segment_id']})" in text for k in kpis), text[:2000]
    unreachable = subprocess.run([sys.executable, "-m", "streams.cli", "segments", "--url", f"http://127.0.0.1:{free_port()}"],
                                 capture_output=True, text=True, timeout=60)
    assert unreachable.returncode == 2 and "cannot reach the worker" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_the_demo_prints_the_segments_report_once_caught_up(monitored: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """What `segstream run` prints after "caught up": the worker's KPI table and scorecard, or one
    line saying why there is none (here: a port no worker listens on)."""
    from streams.demo import segments_report_text
    from streams.settings import Settings

    worker = monitored["worker"]
    wait_until(lambda: (worker.get("/segments").get("kpis") or {}).get("segments"), 60, "KPIs of a sweep pass")
    monkeypatch.setenv("SEGSTREAM_WORKER__WEB_PORT", str(worker.port))
    text = segments_report_text(Settings())
    assert "Scorecard" in text and "Size and value" in text and "segstream segments --format html" in text
    monkeypatch.setenv("SEGSTREAM_WORKER__WEB_PORT", str(free_port()))
    assert segments_report_text(Settings()).startswith("no segment KPIs to show yet: ")
