"""The monitoring files and the docker-compose stack, checked without Docker or a running Prometheus:
promtool validates the Prometheus config and the alert rules and runs their unit tests; the Grafana
dashboard, the provisioning and docker-compose.yml are checked for structure and consistency.
(tests/test_monitoring_live.py evaluates every expression against a live Prometheus.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from monitoring.promql import (
    DEFAULT_ALERTS,
    DEFAULT_ALERTS_TEST,
    DEFAULT_DATASOURCES,
    DEFAULT_PROMETHEUS_CONFIG,
    alert_rules,
    dashboard_expressions,
    grafana_to_promql,
    iter_panels,
    load_dashboard,
    load_yaml,
    metric_names,
)
from tests.conftest import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
LOCAL_PROMETHEUS_CONFIG = DEFAULT_PROMETHEUS_CONFIG.with_name("prometheus-local.yml")
DASHBOARD_PROVIDER = ROOT / "monitoring" / "grafana" / "provisioning" / "dashboards" / "segstream.yml"

#: Every metric a worker exposes (monitoring/metrics.py), plus Prometheus' own `up`.
KNOWN_METRICS = {
    "up",
    "segstream_events_total",
    "segstream_dead_letters_total",
    "segstream_delivery_holes_total",
    "segstream_states_written_behind_total",
    "segstream_processing_seconds",
    "segstream_batch_messages",
    "segstream_event_to_change_seconds",
    "segstream_commit_write_seconds",
    "segstream_gc_pause_seconds",
    "segstream_segment_changes_total",
    "segstream_segment_transitions_total",
    "segstream_segment_flaps_total",
    "segstream_segment_customers",
    "segstream_customers",
    "segstream_segment_size_estimate",
    "segstream_consumer_lag",
    "segstream_model_version",
    "segstream_model_installed_timestamp_seconds",
    "segstream_model_max_centroid_shift",
    "segstream_model_centroid_shift",
    "segstream_model_share_tvd",
    "segstream_drift_detections_total",
    "segstream_erasures_total",
    "segstream_reevaluated_customers_total",
    "segstream_trainer_samples_sent_total",
    "segstream_trainings_total",
}
HISTOGRAMS = {"segstream_processing_seconds", "segstream_batch_messages", "segstream_event_to_change_seconds",
              "segstream_commit_write_seconds", "segstream_gc_pause_seconds"}
SERIES_NAMES = (KNOWN_METRICS - HISTOGRAMS) | {f"{h}{s}" for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")}

REQUIRED_ALERTS = {
    "SegstreamWorkerDown", "SegstreamNoEvents", "SegstreamInvalidEventRate", "SegstreamConsumerLagGrowing",
    "SegstreamFlapping", "SegstreamDriftDetected", "SegstreamModelStale", "SegstreamChangesWithoutInput",
}
WORKERS = ("worker-1", "worker-2")


# --- promtool -----------------------------------------------------------------------------------

def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool is not installed: run scripts/install-system-deps.sh (Debian package 'prometheus')")
    return subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_ok(proc: subprocess.CompletedProcess) -> None:
    assert proc.returncode == 0, f"{' '.join(proc.args)} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.mark.parametrize("config", [DEFAULT_PROMETHEUS_CONFIG, LOCAL_PROMETHEUS_CONFIG], ids=lambda p: p.name)
def test_promtool_check_config(config):
    # Run from elsewhere: rule_files are resolved against the config file's directory, as in the
    # container where monitoring/prometheus is mounted at /etc/prometheus.
    proc = promtool("check", "config", str(config), cwd=ROOT)
    assert_ok(proc)
    assert "1 rule files found" in proc.stdout + proc.stderr


def test_local_prometheus_config_scrapes_local_workers():
    config = load_yaml(LOCAL_PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    (job,) = config["scrape_configs"]
    assert job["job_name"] == "segstream"
    assert "127.0.0.1:6066" in {t for sc in job["static_configs"] for t in sc["targets"]}


def test_promtool_check_rules():
    proc = promtool("check", "rules", str(DEFAULT_ALERTS))
    assert_ok(proc)
    assert f"{len(REQUIRED_ALERTS)} rules found" in proc.stdout + proc.stderr


def test_promtool_rule_unit_tests():
    """alerts_test.yml: WorkerDown, InvalidEventRate, DriftDetected (and the others) fire on
    synthetic series exactly when they should."""
    proc = promtool("test", "rules", DEFAULT_ALERTS_TEST.name, cwd=DEFAULT_ALERTS_TEST.parent)
    assert_ok(proc)
    tested = {t["alertname"] for test in load_yaml(DEFAULT_ALERTS_TEST)["tests"] for t in test["alert_rule_test"]
              if t.get("exp_alerts")}
    assert {"SegstreamWorkerDown", "SegstreamInvalidEventRate", "SegstreamDriftDetected"} <= tested


def test_dashboard_expressions_are_valid_promql(tmp_path):
    """Every panel query parses (promtool checks them as recording rules, Grafana macros replaced)."""
    rules = [{"record": f"segstream_dashboard:query_{i}", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(dashboard_expressions())]
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))  # JSON is YAML
    assert_ok(promtool("check", "rules", str(path)))


# --- alert rules --------------------------------------------------------------------------------

def test_the_required_alerts_exist():
    rules = alert_rules()
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) == REQUIRED_ALERTS
    by_name = {r["name"]: r for r in rules}
    assert by_name["SegstreamWorkerDown"]["for"] == "1m"
    assert 'up{job="segstream"}' in by_name["SegstreamWorkerDown"]["expr"]
    # Fires at the next rule evaluation: tests/test_monitoring_live.py relies on that.
    assert by_name["SegstreamDriftDetected"]["for"] is None


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["name"])
def test_every_alert_has_severity_summary_and_runbook(rule):
    assert rule["labels"].get("severity") in {"critical", "warning", "info"}
    for key in ("summary", "description", "runbook"):
        value = rule["annotations"].get(key)
        assert isinstance(value, str) and value.strip(), f"{rule['name']}: no {key}"
    assert "\n" not in rule["annotations"]["runbook"].strip(), "a runbook is one line"
    assert rule["group"] == "segstream"


# --- Grafana ------------------------------------------------------------------------------------

def provisioned_datasource() -> dict:
    sources = load_yaml(DEFAULT_DATASOURCES)["datasources"]
    assert len(sources) == 1
    return sources[0]


def test_provisioned_datasource():
    ds = provisioned_datasource()
    assert ds["uid"] == "prometheus" and ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090"
    assert ds["isDefault"] is True


def test_dashboard_structure():
    dashboard = load_dashboard()
    assert dashboard["uid"] == "segstream"
    assert 36 <= dashboard["schemaVersion"] <= 41
    panels = list(iter_panels(dashboard["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    assert any(p["type"] == "row" and p.get("collapsed") and p.get("panels") for p in panels), \
        "expected a collapsed row with nested panels (exercises the nested walk)"
    uid = provisioned_datasource()["uid"]
    queried = [p for p in panels if p["type"] != "row"]
    assert len(queried) >= 20
    for panel in queried:
        assert panel.get("title"), panel["id"]
        assert panel["datasource"]["uid"] == uid, panel["title"]
        assert "gridPos" in panel
        targets = panel.get("targets") or []
        assert targets, f"{panel['title']}: no query"
        ref_ids = [t.get("refId") for t in targets]
        assert all(ref_ids) and len(set(ref_ids)) == len(ref_ids), panel["title"]
        for target in targets:
            assert isinstance(target.get("expr"), str) and target["expr"].strip(), panel["title"]
            assert target["datasource"]["uid"] == uid, panel["title"]
    titles = [p["title"] for p in queried]
    assert len(titles) == len(set(titles)), "panel titles must be unique"
    # dashboard_expressions walks every target, nested rows included.
    assert len(dashboard_expressions()) == sum(len(p["targets"]) for p in queried)


def test_dashboard_covers_what_ops_watch():
    text = "\n".join(expr for _, expr in dashboard_expressions())
    for needed in ("segstream_events_total", "segstream_processing_seconds_bucket",
                   "segstream_event_to_change_seconds_bucket", "segstream_consumer_lag",
                   "segstream_segment_customers", "segstream_segment_size_estimate",
                   "segstream_segment_transitions_total", "segstream_segment_changes_total",
                   "segstream_segment_flaps_total", "segstream_drift_detections_total",
                   "segstream_model_max_centroid_shift", "segstream_model_share_tvd",
                   "segstream_dead_letters_total", "segstream_model_version",
                   "segstream_model_installed_timestamp_seconds", 'up{job="segstream"}'):
        assert needed in text, needed
    assert "histogram_quantile(0.99" in text and "histogram_quantile(0.5" in text


def test_dashboard_provider_points_at_the_mounted_dashboards():
    provider = load_yaml(DASHBOARD_PROVIDER)["providers"][0]
    assert provider["type"] == "file"
    grafana = compose_services()["grafana"]
    mounts = dict(volume_mounts(grafana))
    assert mounts["./monitoring/grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_every_metric_name_is_one_the_workers_expose():
    used: dict[str, str] = {}
    for title, expr in dashboard_expressions():
        used.update({name: f"panel {title!r}" for name in metric_names(expr)})
    for rule in alert_rules():
        used.update({name: f"alert {rule['name']}" for name in metric_names(rule["expr"])})
    unknown = {name: where for name, where in used.items() if name not in SERIES_NAMES}
    assert not unknown, f"metric names the workers do not expose: {unknown}"
    # Histograms are only read through their series.
    assert not (set(used) & HISTOGRAMS)


def test_metric_names_parser():
    expr = ('sum by (le) (rate(segstream_processing_seconds_bucket{outcome="a(b)"}[$__rate_interval])) '
            '/ on() group_left sum(segstream_customers offset 1h) and deriv(sum(segstream_consumer_lag)[10m:1m]) > 0.5e3')
    assert metric_names(expr) == {"segstream_processing_seconds_bucket", "segstream_customers",
                                  "segstream_consumer_lag"}
    assert grafana_to_promql("rate(x[$__rate_interval]) * $__range_s") == "rate(x[1m]) * 3600"


# --- docker-compose.yml -------------------------------------------------------------------------

_INTERPOLATION = re.compile(r"\$\{([^}]*)\}")
_REFERENCE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)(.*))?$", re.S)


def compose() -> dict:
    return load_yaml(COMPOSE_FILE)


def compose_services() -> dict:
    return compose()["services"]


def interpolate(value, env: dict[str, str] | None = None):
    """Compose's interpolation of ${VAR:-default} / ${VAR-default} (no variable set here, so the
    defaults), with $$ as a literal $. A reference without a default is an error."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value
    env = env or {}
    parts = value.split("$$")

    def sub(m: re.Match) -> str:
        ref = _REFERENCE.match(m.group(1))
        assert ref, f"unsupported interpolation ${{{m.group(1)}}}"
        name, op, default = ref.groups()
        assert op is not None, f"${{{name}}} has no default: the stack would need it set"
        return env.get(name) or default

    out = []
    for part in parts:
        assert not re.search(r"\$(?![{])", part), f"bare $ reference in {value!r} (use ${{VAR:-default}} or $$)"
        out.append(_INTERPOLATION.sub(sub, part))
    return "$".join(out)


def service_env(service: dict) -> dict[str, str]:
    env = interpolate(service.get("environment") or {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: str(v) for k, v in env.items()}


def volume_mounts(service: dict) -> list[tuple[str, str]]:
    out = []
    for vol in service.get("volumes") or []:
        source, target, *_ = interpolate(vol).split(":")
        out.append((source, target))
    return out


def test_compose_has_the_stack():
    doc = compose()
    services = doc["services"]
    assert {"kafka", "topics", *WORKERS, "prometheus", "grafana", "producer"} <= set(services)
    kafka = services["kafka"]
    assert interpolate(kafka["image"]).startswith("apache/kafka:")
    kenv = service_env(kafka)
    assert set(kenv["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}  # KRaft, one node
    assert "PLAINTEXT://kafka:9092" in kenv["KAFKA_ADVERTISED_LISTENERS"]
    assert "healthcheck" in kafka
    assert interpolate(services["prometheus"]["image"]).startswith("prom/prometheus:")
    assert interpolate(services["grafana"]["image"]).startswith("grafana/grafana:")
    assert services["topics"]["command"] == ["topics"]
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_interpolations_all_have_defaults():
    doc = compose()
    interpolate(doc)  # raises on a reference without a default or a bare $VAR
    text = COMPOSE_FILE.read_text()
    assert "${" in text, "tunables are environment variables"


def test_compose_dependencies_exist_and_are_healthchecked():
    services = compose_services()
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        items = deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)
        for dep, cond in items:
            assert dep in services, f"{name} depends on unknown service {dep}"
            if cond.get("condition") == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} healthy, which has no healthcheck"


def test_compose_workers():
    doc = compose()
    services = doc["services"]
    declared_volumes = set(doc.get("volumes") or {})
    data_volumes = []
    dockerfile = (ROOT / "Dockerfile").read_text()
    workdir = re.search(r"^WORKDIR\s+(\S+)", dockerfile, re.M).group(1)
    for name in WORKERS:
        svc = services[name]
        assert interpolate(svc["build"]) == "." and (ROOT / "Dockerfile").exists()
        assert svc["command"] == ["worker"]
        env = service_env(svc)
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
        # Listens on all interfaces, advertises its service name (lookups are forwarded there).
        assert env["SEGSTREAM_WORKER__WEB_BIND"] == "0.0.0.0" and env["SEGSTREAM_WORKER__WEB_HOST"] == name
        assert env["SEGSTREAM_WORKER__APP_ID"] == "segstream"  # one consumer group
        assert env["SEGSTREAM_WORKER__STORE"] == "rocksdb://"
        assert ".[rocksdb]" in dockerfile, "the image needs the rocksdb extra"
        mounts = dict((target, source) for source, target in volume_mounts(svc))
        data_dir = env["SEGSTREAM_WORKER__DATA_DIR"]
        assert data_dir in mounts, f"{name}: its data dir is not on a volume"
        assert mounts[data_dir] in declared_volumes
        data_volumes.append(mounts[data_dir])
        rules = env["SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE"]
        assert rules.startswith(workdir + "/") and (ROOT / rules[len(workdir) + 1:]).is_file(), rules
        health = " ".join(svc["healthcheck"]["test"])
        assert "urllib" in health and f"127.0.0.1:{env['SEGSTREAM_WORKER__WEB_PORT']}/ready" in health
    assert len(set(data_volumes)) == len(WORKERS), "each worker needs a data volume of its own"
    host_ports = [p.split(":")[-2] for s in services.values() for p in interpolate(s.get("ports") or [])]
    assert len(host_ports) == len(set(host_ports)), f"host ports collide: {host_ports}"


def test_compose_worker_environment_is_valid_settings(monkeypatch):
    """Every SEGSTREAM_* variable given to a worker names a real setting with a valid value."""
    from streams.settings import Settings

    for name in WORKERS:
        env = service_env(compose_services()[name])
        for key in list(__import__("os").environ):
            if key.startswith("SEGSTREAM_") or key == "KAFKA_BOOTSTRAP_SERVERS":
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = Settings()
        assert settings.bootstrap_servers == "kafka:9092"
        assert settings.worker.web_bind == "0.0.0.0" and settings.worker.store == "rocksdb://"
        assert str(settings.worker.data_dir) == env["SEGSTREAM_WORKER__DATA_DIR"]
        assert settings.engine.segmentation.rules_file == env["SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE"]
        for key in env:
            if key.startswith("SEGSTREAM_"):
                path = key[len("SEGSTREAM_"):].lower().split("__")
                node = settings
                for part in path:
                    assert hasattr(node, part), f"{name}: {key} is not a setting"
                    node = getattr(node, part)


def test_prometheus_scrapes_every_worker_on_its_web_port():
    config = load_yaml(DEFAULT_PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    job = jobs["segstream"]
    assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
    targets = {t for sc in job["static_configs"] for t in sc["targets"]}
    services = compose_services()
    expected = {f"{name}:{service_env(services[name])['SEGSTREAM_WORKER__WEB_PORT']}" for name in WORKERS}
    assert targets == expected
    assert expected == {"worker-1:6066", "worker-2:6066"}


def test_compose_prometheus_mounts_the_config():
    prometheus = compose_services()["prometheus"]
    mounts = dict(volume_mounts(prometheus))
    assert mounts["./monitoring/prometheus"] == "/etc/prometheus"
    assert (ROOT / "monitoring" / "prometheus").is_dir()
    flags = interpolate(prometheus["command"])
    assert "--config.file=/etc/prometheus/prometheus.yml" in flags
    # The rule file sits beside the config in the mounted directory.
    assert (DEFAULT_PROMETHEUS_CONFIG.parent / "alerts.yml").is_file()


def test_compose_grafana_is_anonymous_viewer():
    grafana = compose_services()["grafana"]
    env = service_env(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "true"
    assert env["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer"
    for source, _ in volume_mounts(grafana):
        if source.startswith("./"):
            assert (ROOT / source).exists(), source


def test_compose_demo_producer():
    producer = compose_services()["producer"]
    env = service_env(producer)
    script = " ".join(interpolate(producer["command"]))
    assert "segstream generate" in script and "segstream produce --rate" in script
    # The shell variables the script reads ($$ in the file) are in its environment.
    for var in re.findall(r"\$\{(\w+)\}", script):
        assert var in env, var
    assert env["DEMO_RATE"] == "200"
    for name in WORKERS:
        assert producer["depends_on"][name]["condition"] == "service_healthy"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
