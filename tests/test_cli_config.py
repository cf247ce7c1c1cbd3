"""A misconfiguration is one line per setting, named by its environment variable, and exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def segstream(*args: str, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SEGSTREAM_")}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_invalid_settings_are_named_one_line_each_and_exit_2(tmp_path: Path) -> None:
    done = segstream("worker", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9", SEGSTREAM_WORKER__CLOCK="bogus",
                     SEGSTREAM_WORKER__BATCH_MAX="0", SEGSTREAM_WORKER__DATA_DIR=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "invalid configuration: SEGSTREAM_WORKER__CLOCK: String should match pattern '^(wall|event)$' (got 'bogus')",
        "invalid configuration: SEGSTREAM_WORKER__BATCH_MAX: Input should be greater than or equal to 1 (got '0')",
    ]


def test_exactly_once_is_refused_at_start_not_silently_ignored(tmp_path: Path) -> None:
    done = segstream("worker", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9", SEGSTREAM_WORKER__DATA_DIR=str(tmp_path),
                     SEGSTREAM_WORKER__PROCESSING_GUARANTEE="exactly_once")
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("invalid configuration: SEGSTREAM_WORKER__PROCESSING_GUARANTEE: ")
    assert "exactly_once is not supported" in line and "at_least_once" in line


def test_secrets_are_not_echoed() -> None:
    done = segstream("topics", SEGSTREAM_KAFKA__SECURITY_PROTOCOL="SASL_SSL",
                     SEGSTREAM_KAFKA__SASL_PASSWORD="hunter2-secret")
    assert done.returncode == 2
    assert "hunter2-secret" not in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("invalid configuration: SEGSTREAM_KAFKA: ")


def test_a_broker_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    done = segstream("topics", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9")
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("cannot connect to Kafka at 127.0.0.1:9 (KAFKA_BOOTSTRAP_SERVERS): ")
    assert "Errno 111" in line  # why, as the client saw it (connection refused)


@pytest.mark.kafka
def test_topics_with_another_partition_count_are_refused_in_one_line(kafka_bootstrap: str,
                                                                     unique_prefix: str) -> None:
    assert segstream("topics", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
                     SEGSTREAM_TOPICS__PREFIX=unique_prefix).returncode == 0
    done = segstream("topics", KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SEGSTREAM_TOPICS__PREFIX=unique_prefix,
                     SEGSTREAM_TOPICS__PARTITIONS="8")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    [line] = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert line.startswith("existing topics do not match the configuration")


@pytest.mark.parametrize("var, meant", [
    ("SEGSTREAM_WORKERS__BATCH_MAX", "SEGSTREAM_WORKER__BATCH_MAX"),  # the section misspelt: pydantic ignores it
    ("SEGSTREAM_WORKER__BATCHMAX", "SEGSTREAM_WORKER__BATCH_MAX"),
    ("SEGSTREAM_ENGINE__SEGMENTATION__NSEGMENTS", "SEGSTREAM_ENGINE__SEGMENTATION__N_SEGMENTS"),
])
def test_a_variable_that_names_no_setting_is_refused_with_the_closest_name(var: str, meant: str) -> None:
    done = segstream("topics", **{var: "5"})
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"invalid configuration: unknown setting {var} (did you mean {meant}?)"]


def test_a_name_close_to_nothing_is_not_given_a_section_for_a_meaning() -> None:
    """SEGSTREAM_FOO used to be "close" to the section SEGSTREAM_KAFKA by their common prefix."""
    done = segstream("topics", SEGSTREAM_FOO="1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["invalid configuration: unknown setting SEGSTREAM_FOO "
                                        "(docs/worker.md lists the settings)"]


@pytest.mark.parametrize("command", [["topics"], ["produce", "README.md"], ["tail"], ["worker"]])
def test_no_broker_configured_is_one_line_and_exit_2(command: list[str]) -> None:
    done = segstream(*command, KAFKA_BOOTSTRAP_SERVERS="")  # set by the kafka fixture in a full run
    assert done.returncode == 2
    [line] = done.stderr.splitlines()
    assert line.startswith("KAFKA_BOOTSTRAP_SERVERS is not set: ")


def test_version() -> None:
    from importlib.metadata import version

    done = segstream("--version")
    assert (done.returncode, done.stdout) == (0, f"segstream {version('segstream')}\n")


def test_settings_that_are_keys_of_a_mapping_and_compose_variables_are_accepted() -> None:
    from streams.settings import unknown_variables

    assert unknown_variables({"SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES__EUR": "1.08", "SEGSTREAM_IMAGE": "x",
                              "SEGSTREAM_WORKER": "{}", "KAFKA_BOOTSTRAP_SERVERS": "h:9092", "PATH": "/bin"}) == []


def test_currency_rates_from_the_environment_are_iso_codes() -> None:
    """Environment variables are case-insensitive: CURRENCY_RATES__EUR arrives as "eur", which
    would never match an event's "EUR" (the rate silently unused)."""
    from models.config import ValueConfig

    assert ValueConfig(currency_rates={"eur": 1.08}).currency_rates == {"EUR": 1.08}
    with pytest.raises(ValueError, match="ISO 4217"):
        ValueConfig(currency_rates={"euro": 1.08})


def test_a_rules_file_that_is_missing_or_invalid_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('[[segment]]\nid = "x"\nall = [{field = "clv", op = ">", value = 1}]\n')
    for path, why in [(tmp_path / "missing.toml", "cannot read"), (bad, "label: Field required")]:
        done = segstream("worker", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9", SEGSTREAM_WORKER__DATA_DIR=str(tmp_path),
                         SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE=str(path))
        assert done.returncode == 2 and "Traceback" not in done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith("invalid configuration: SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE: ") and why in line


@pytest.mark.parametrize("command", ["worker", "run"])
@pytest.mark.parametrize("port", ["0", "65536", "-1"])
def test_a_web_port_out_of_range_is_one_line_and_exit_2(command: str, port: str, tmp_path: Path) -> None:
    done = segstream(command, "--web-port", port, KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:9",
                     SEGSTREAM_WORKER__DATA_DIR=str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"invalid configuration: --web-port: should be a port from 1 to 65535 (got {port})"]


COMMANDS = [[], ["kafka"], ["kafka-jars"], ["topics"], ["worker"], ["run"], ["produce"], ["tail"], ["replay"],
            ["generate"], ["bench"], ["crash-test"], ["soak"], ["schemas"], ["schemas", "export"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "segstream")
def test_help_reads_well_in_an_80_column_terminal(command: list[str]) -> None:
    done = segstream(*command, "--help", COLUMNS="80")
    assert done.returncode == 0, done.stderr
    text = done.stdout
    assert text.splitlines()[1].strip().startswith(f"Usage: segstream {' '.join(command)}".rstrip())
    assert "<bool>" not in text  # a flag takes no value
    assert "…" not in text  # no word cut off for want of room
    assert max(len(line) for line in text.splitlines()) <= 80


def test_a_boolean_flag_shows_both_its_forms() -> None:
    row = next(line for line in segstream("run", "--help", COLUMNS="120").stdout.splitlines() if "--replay" in line)
    assert row.split()[1:3] == ["--replay", "--no-replay"]


def test_a_setting_that_is_not_valid_json_is_named_in_one_line(tmp_path: Path) -> None:
    """pydantic-settings fails on the whole section ("engine") with a traceback of its own."""
    (tmp_path / "events.jsonl").write_text("")
    done = segstream("replay", str(tmp_path / "events.jsonl"), "--as-of", "2026-01-01T00:00:00Z",
                     "--profiles-out", str(tmp_path / "p.jsonl"),
                     SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES="{USD:1")
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["invalid configuration: SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES: not valid "
                                        "JSON (expecting property name enclosed in double quotes at line 1 column 2); "
                                        "expected a JSON object of names to numbers"]


BETA_GEO = "SEGSTREAM_ENGINE__VALUE__BETA_GEO"
EXPECTED_BETA_GEO = "expected a JSON object with the keys r, alpha, a, b (BG/NBD parameters in days)"


@pytest.mark.parametrize(("env", "line"), [
    ({BETA_GEO: '{"r":0.24,"alpha":30.9'},
     f"{BETA_GEO}: not valid JSON (expecting ',' delimiter at line 1 column 23); {EXPECTED_BETA_GEO}"),
    ({BETA_GEO: "0.24,30.9,0.79,2.43"}, f"{BETA_GEO}: not valid JSON (extra data at line 1 column 5); {EXPECTED_BETA_GEO}"),
    ({BETA_GEO: "[0.24, 30.9, 0.79, 2.43]"}, f"{BETA_GEO}: a JSON array, not an object; {EXPECTED_BETA_GEO}"),
    ({BETA_GEO: '{"r":0.24,"alpha":30.9,"a":0.79}'}, f"{BETA_GEO}: missing b; {EXPECTED_BETA_GEO}"),
    ({BETA_GEO: '{"r":0.24,"alpha":30.9,"a":0.79,"b":2.43,"c":1}'},
     f"{BETA_GEO}: key 'c': not a key of this object; {EXPECTED_BETA_GEO}"),
    ({"SEGSTREAM_ENGINE__VALUE": '{"beta_geo": "r=0.24"}'},
     f"SEGSTREAM_ENGINE__VALUE: key 'beta_geo': a JSON string, not an object; {EXPECTED_BETA_GEO}"),
    ({"SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES": "EUR=1.08"},
     "SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES: not valid JSON (expecting value at line 1 column 1); "
     "expected a JSON object of names to numbers"),
], ids=["truncated", "not-json", "array", "missing-key", "unknown-key", "inside-a-section", "mapping"])
def test_a_json_setting_that_is_wrong_names_the_variable_and_what_it_takes(env: dict[str, str], line: str,
                                                                           tmp_path: Path) -> None:
    """Not the internal class ("valid dictionary or instance of BetaGeoPinned"), nor the section
    ("engine"): the variable the user set, what is wrong with its value, and what it should be."""
    (tmp_path / "events.jsonl").write_text("")
    done = segstream("replay", str(tmp_path / "events.jsonl"), "--as-of", "2026-01-01T00:00:00Z",
                     "--profiles-out", str(tmp_path / "p.jsonl"), **env)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [f"invalid configuration: {line}"]


def test_tail_with_no_broker_says_so_in_one_line() -> None:
    from streams.local_kafka import free_port

    done = segstream("tail", "--max", "1", KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}")
    assert done.returncode == 2
    assert len(done.stderr.splitlines()) == 2  # what it tails, then why it cannot
    assert done.stderr.splitlines()[1].startswith("cannot connect to Kafka at 127.0.0.1:")
    assert "Traceback" not in done.stderr and "Unclosed" not in done.stderr


@pytest.mark.parametrize("args", [
    ["replay", "README.md", "--as-of", "2026-04-01T00:00:00Z", "--profiles-out", "/nonexistent/dir/p.jsonl"],
    ["replay", "README.md", "--as-of", "2026-04-01T00:00:00Z", "--profiles-out", "{tmp}/p.jsonl", "--changes-out", "{tmp}"],
    ["generate", "--customers", "3", "--out", "/nonexistent/e.jsonl"],
])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(args: list[str], tmp_path: Path) -> None:
    done = segstream(*[a.format(tmp=tmp_path) for a in args])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert line.startswith("--") and "cannot write" in line
