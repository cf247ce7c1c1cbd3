"""`segstream bench` end to end on the real broker, with tiny sizes.

Checks that every figure is produced and that the ratio lines come last; never the performance
goals themselves (a shared test machine says nothing about them).
"""

from __future__ import annotations

import math
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from streams.cli import cli

pytestmark = pytest.mark.kafka


def test_bench_prints_every_figure_and_the_ratios_last(kafka_bootstrap: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    # A model can be trained on 150 customers, soon after the backlog is drained.
    monkeypatch.setenv("SEGSTREAM_ENGINE__SEGMENTATION__N_SEGMENTS", "4")
    monkeypatch.setenv("SEGSTREAM_ENGINE__SEGMENTATION__MIN_CUSTOMERS_TO_TRAIN", "40")
    monkeypatch.setenv("SEGSTREAM_ENGINE__VALUE__MIN_CUSTOMERS_FOR_FIT", "30")
    monkeypatch.setenv("SEGSTREAM_WORKER__TRAIN_INTERVAL_S", "2")
    json_out = tmp_path / "bench.json"

    result = CliRunner().invoke(cli, [
        "bench", "--customers", "150", "--latency-seconds", "5", "--memory-customers", "2000",
        "--json-out", str(json_out), "--run-dir", str(tmp_path / "run"),
    ])

    assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert lines[-2].startswith("ratio worker/raw = ") and lines[-2].endswith("(goal >= 0.50)")
    assert lines[-1].startswith("ratio engine/raw = ")
    for line in lines[-2:]:
        assert float(line.split("=")[1].split()[0]) > 0
    goals = [line for line in lines if line.startswith("goal ")]
    assert len(goals) == 4 and all(line.endswith(("MET", "MISSED")) for line in goals)

    figures = orjson.loads(json_out.read_bytes())
    n = figures["config"]["events"]
    assert n > 1000
    positive = {
        "produce": ["events_per_s"],
        "engine": ["events_per_s_per_core", "events_per_s_wall", "cpu_s"],
        "raw": ["events_per_s", "seconds"],
        "faust_floor": ["events_per_s", "seconds", "cpu_s"],
        "worker": ["events_per_s", "seconds", "mean_batch"],
        "latency": ["p50_ms", "p99_ms", "max_ms", "target_rate", "achieved_rate", "probes_sent", "probes_seen"],
        "ratios": ["worker_raw", "engine_raw", "floor_raw", "worker_floor"],
    }
    for section, keys in positive.items():
        for key in keys:
            value = figures[section][key]
            assert value is not None and not math.isnan(value) and value > 0, (section, key, value)
    # Every message went through each of the three paths.
    assert figures["engine"]["events"] == n and figures["engine"]["applied"] == n
    assert figures["raw"]["events"] == n
    assert figures["worker"]["events"] == n
    assert figures["faust_floor"]["events"] == n
    memory = figures["memory"]["2000"]
    assert memory["customers"] == 2000
    assert memory["bytes_per_customer"] > 0 and memory["mean_key_value_bytes"] > 0
