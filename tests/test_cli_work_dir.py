"""The work dir of ``segstream crash-test``, ``soak`` and ``bench``: a temporary one is removed when
the check passes, kept (and named) when it fails or is interrupted, kept with ``--keep``; a
``--run-dir`` the user gave is never removed. The checks are replaced by fast fakes: no Kafka."""

from __future__ import annotations

import re

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from streams.cli import cli
from streams.harnesses import bench, crash_test, soak

COMMANDS = {"crash-test": (crash_test, "segstream-crash-"), "soak": (soak, "segstream-soak-"),
            "bench": (bench, "segstream-bench-")}


@dataclass
class FakeReport:
    ok: bool

    def lines(self) -> list[str]:
        return [f"fake check: {'PASSED' if self.ok else 'FAILED'}"]

    def to_json(self) -> bytes:
        return b"{}"


def fake_run(outcome: str, result: Any) -> Any:
    """A check's ``run`` that writes a log into its work dir, then returns ``result`` or, as ``outcome``
    says, fails like a worker that died (RuntimeError) or is interrupted (Ctrl-C)."""
    def run(plan_or_config: Any, work_dir: Path | None = None, log: Any = None) -> Any:
        work_dir = work_dir or plan_or_config.work_dir  # bench's is in its config
        (work_dir / "worker.log").write_text("the logs that explain it\n")
        if outcome == "died":
            raise RuntimeError("the worker exited with code -9")
        if outcome == "interrupted":
            raise KeyboardInterrupt
        return result
    return run


def invoke(command: str, outcome: str, tmp: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> Result:
    """``segstream COMMAND ARGS`` with its check faked: ``outcome`` passed, failed (a report not
    ok), died or interrupted; temporary directories are made in ``tmp``."""
    module, _ = COMMANDS[command]
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    if command == "bench":  # no verdict: its result is the figures, here none
        monkeypatch.setattr(bench, "run", fake_run(outcome, {"seconds": 1.0}))
        monkeypatch.setattr(bench, "figure_rows", lambda results: [])
        monkeypatch.setattr(bench, "summary_lines", lambda results: ["ratio engine/raw = 1.00"])
    else:
        monkeypatch.setattr(module, "run", fake_run(outcome, FakeReport(ok=outcome == "passed")))
    return CliRunner().invoke(cli, [command, *args])


def work_dirs(tmp: Path, command: str) -> list[Path]:
    return list(tmp.glob(COMMANDS[command][1] + "*"))


@pytest.mark.parametrize("command", COMMANDS)
def test_a_passing_check_removes_its_temporary_work_dir_and_says_so(command: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(command, "passed", tmp_path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert work_dirs(tmp_path, command) == []
    assert f"Removed the run directory {tmp_path}/{COMMANDS[command][1]}" in result.stderr
    assert "(--keep or --run-dir DIR keeps the logs and data)" in result.stderr


@pytest.mark.parametrize("outcome", ["failed", "died", "interrupted"])
@pytest.mark.parametrize("command", ["crash-test", "soak"])
def test_a_failed_or_interrupted_check_keeps_its_work_dir_and_names_it(command: str, outcome: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(command, outcome, tmp_path, monkeypatch)
    assert result.exit_code == (130 if outcome == "interrupted" else 1), result.output
    [kept] = work_dirs(tmp_path, command)
    assert (kept / "worker.log").read_text() == "the logs that explain it\n"
    assert "Removed" not in result.stderr
    named = {"failed": f"test: logs in {kept}", "died": f"(logs in {kept})",
             "interrupted": f"Run directory kept for its logs: {kept}"}[outcome]
    assert named in result.stderr, result.stderr


@pytest.mark.parametrize("outcome", ["died", "interrupted"])
def test_a_bench_that_ends_in_an_error_keeps_its_work_dir_and_names_it(outcome: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke("bench", outcome, tmp_path, monkeypatch)
    assert result.exit_code == (130 if outcome == "interrupted" else 1), result.output
    [kept] = work_dirs(tmp_path, "bench")
    assert (kept / "worker.log").exists()
    named = {"died": f"bench: FAILED: the worker exited with code -9 (logs in {kept})",
             "interrupted": f"Run directory kept for its logs: {kept}"}[outcome]
    assert named in result.stderr, result.stderr
    assert "Traceback" not in result.output


def test_bench_refuses_fewer_customers_than_the_first_training_needs(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """It would wait for a model that never comes, then end in a timeout."""
    monkeypatch.delenv("SEGSTREAM_ENGINE__SEGMENTATION__MIN_CUSTOMERS_TO_TRAIN", raising=False)
    result = invoke("bench", "passed", tmp_path, monkeypatch, "--customers", "200")
    assert result.exit_code == 2, result.output
    said = " ".join(re.sub(r"[│╭╮╰╯─]", " ", result.output).split())  # the words, out of rich's error box
    assert "trains its first model at 300 customers" in said and "give at least 300" in said, said
    assert work_dirs(tmp_path, "bench") == []  # refused before anything started
    monkeypatch.setenv("SEGSTREAM_ENGINE__SEGMENTATION__MIN_CUSTOMERS_TO_TRAIN", "150")
    assert invoke("bench", "passed", tmp_path, monkeypatch, "--customers", "200").exit_code == 0


@pytest.mark.parametrize("command", COMMANDS)
def test_keep_keeps_the_work_dir_of_a_passing_check(command: str, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    result = invoke(command, "passed", tmp_path, monkeypatch, "--keep")
    assert result.exit_code == 0, result.output
    [kept] = work_dirs(tmp_path, command)
    assert (kept / "worker.log").exists()
    assert "Removed" not in result.stderr
    assert f"Run directory kept (--keep): {kept}" in result.stderr  # said last, where it is


@pytest.mark.parametrize("command", COMMANDS)
def test_a_run_dir_the_user_gave_is_never_removed(command: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    mine = tmp_path / "mine" / "run"  # made if missing
    result = invoke(command, "passed", tmp_path, monkeypatch, "--run-dir", str(mine))
    assert result.exit_code == 0, result.output
    assert (mine / "worker.log").exists()
    assert work_dirs(tmp_path, command) == []  # no temporary one either
    assert "Removed" not in result.stderr
