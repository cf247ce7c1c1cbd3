"""Nothing a command starts outlives it, however it is stopped; a busy web port is one line and
exit 2 before anything starts; readiness is read from the process that was started."""

from __future__ import annotations

import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from streams import worker_process
from streams.local_kafka import free_port

ROOT = Path(__file__).resolve().parent.parent


def segstream(*args: str, env: dict[str, str], **kwargs: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)  # type: ignore[call-overload]


def clean_env(**extra: str) -> dict[str, str]:
    return {**{k: v for k, v in os.environ.items() if not k.startswith(("SEGSTREAM_", "KAFKA_"))},
            "PYTHONUNBUFFERED": "1", **extra}


@pytest.mark.parametrize("command", [["run", "--no-replay"], ["worker"]])
def test_a_busy_web_port_is_one_line_before_anything_starts(command: list[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = clean_env(SEGSTREAM_WORKER__WEB_PORT=str(port), SEGSTREAM_WORKER__DATA_DIR=str(tmp_path))
        if command[0] == "worker":
            env["KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"  # never reached: the port is checked first
        started = time.monotonic()
        out, err = segstream(*command, env=env).communicate(timeout=60)
    assert err.splitlines() == [f"web port 127.0.0.1:{port} is in use (another worker or 'segstream run'?): stop "
                                "it, or choose another with --web-port or SEGSTREAM_WORKER__WEB_PORT"], err
    assert time.monotonic() - started < 20  # no broker was started for nothing


def test_readiness_is_read_from_the_process_that_was_started(tmp_path: Path) -> None:
    """Another worker answering on the port (pid 1 here) does not make ours ready."""
    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = orjson.dumps({"ready": True, "pid": 1})
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(RuntimeError, match="another process"):
            worker_process.wait_ready(ours, server.server_address[1], tmp_path / "log", timeout_s=10)
    finally:
        ours.kill()
        server.shutdown()


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.kafka
def test_run_killed_leaves_neither_broker_nor_worker(tmp_path: Path) -> None:
    """SIGKILL: no finally block runs; the kernel's parent-death signal stops the children."""
    env = clean_env(SEGSTREAM_WORKER__WEB_PORT=str(free_port()), SEGSTREAM_WORKER__DATA_DIR=str(tmp_path / "data"))
    proc = segstream("run", "--no-replay", "--run-dir", str(tmp_path), env=env)
    try:
        deadline = time.monotonic() + 150
        started: set[int] = set()
        while time.monotonic() < deadline and len(started) < 2:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            started = children(proc.pid)  # the broker (java) and the worker
            time.sleep(0.5)
        assert len(started) == 2, started
        time.sleep(3)  # both running, not only forked
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline and any(alive(pid) for pid in started):
        time.sleep(0.5)
    left = [pid for pid in started if alive(pid)]
    for pid in left:  # do not leave them to the next test
        os.kill(pid, signal.SIGKILL)
    assert left == []


def wait_for_text(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, path.read_text()[-3000:]
        if path.exists() and text in path.read_text():
            return
        time.sleep(0.3)
    raise AssertionError(f"no {text!r} after {timeout_s}s:\n{path.read_text()[-3000:]}")


def started_by(command: list[str], env: dict[str, str], out: Path) -> subprocess.Popen:
    with out.open("wb") as f:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", *command], cwd=ROOT, env=env,
                                stdout=f, stderr=subprocess.STDOUT)


@pytest.mark.kafka
@pytest.mark.parametrize(("command", "ready", "started"), [
    (["kafka"], "export KAFKA_BOOTSTRAP_SERVERS=", 1),  # the broker
    (["run", "--no-replay"], "Ctrl-C stops.", 2),  # the broker and the worker
], ids=["kafka", "run --no-replay"])
def test_ctrl_c_stops_what_the_command_started_then_exits_130(command: list[str], ready: str, started: int,
                                                                tmp_path: Path) -> None:
    """SIGINT, as Ctrl-C sends it: a graceful stop of everything the command started (stopped and
    waited for by the command itself, not left to the parent-death signal), then exit 130."""
    env = clean_env(SEGSTREAM_WORKER__WEB_PORT=str(free_port()), SEGSTREAM_WORKER__DATA_DIR=str(tmp_path / "data"))
    out = tmp_path / "out.txt"
    proc = started_by([*command, "--run-dir", str(tmp_path / "run")], env, out)
    try:
        wait_for_text(out, ready, proc, timeout_s=150)
        running = children(proc.pid)
        assert len(running) == started, running
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
        left = [pid for pid in running if alive(pid)]  # at once: the command waited for them
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, out.read_text()[-3000:]
    assert left == []
    assert "Traceback" not in out.read_text()
    assert (tmp_path / "run").is_dir() and any((tmp_path / "run").rglob("broker.log"))  # --run-dir: kept


def started_and_stopped(command: list[str], ready: str, tmp_path: Path) -> tuple[int, list[str], Path]:
    """``command`` started with its own TMPDIR, stopped with Ctrl-C once ``ready`` is printed: its
    exit code, its output lines and that TMPDIR."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = clean_env(SEGSTREAM_WORKER__WEB_PORT=str(free_port()), SEGSTREAM_WORKER__DATA_DIR=str(tmp_path / "data"),
                    TMPDIR=str(tmp))
    out = tmp_path / "out.txt"
    proc = started_by(command, env, out)
    try:
        wait_for_text(out, ready, proc, timeout_s=150)
        assert [d.name for d in tmp.glob("segstream-*")], "no run directory in TMPDIR"
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    return code, out.read_text().splitlines(), tmp


@pytest.mark.kafka
@pytest.mark.parametrize(("command", "ready"), [
    (["kafka"], "export KAFKA_BOOTSTRAP_SERVERS="),
    (["run", "--no-replay"], "Ctrl-C stops."),
], ids=["kafka", "run --no-replay"])
def test_the_broker_being_ready_is_said_once(command: list[str], ready: str, tmp_path: Path) -> None:
    """The command says it (with the broker's log); the broker's own log line said it again."""
    code, lines, _ = started_and_stopped(command, ready, tmp_path)
    assert code == 130, lines[-30:]
    said = [line for line in lines if "Kafka" in line and " ready " in line]
    assert len(said) == 1 and said[0].startswith("Kafka ready on 127.0.0.1:"), lines


@pytest.mark.kafka
@pytest.mark.parametrize(("command", "ready"), [
    (["kafka"], "export KAFKA_BOOTSTRAP_SERVERS="),
    (["run", "--no-replay"], "Ctrl-C stops."),
], ids=["kafka", "run --no-replay"])
def test_the_temporary_run_directory_is_removed_on_exit(command: list[str], ready: str, tmp_path: Path) -> None:
    """Without --run-dir, the broker data and logs go to a temporary directory that the command
    removes when it stops (they piled up in /tmp, one per run); with it they stay (above)."""
    code, lines, tmp = started_and_stopped(command, ready, tmp_path)
    assert code == 130, lines[-30:]
    assert list(tmp.glob("segstream-*")) == []
    assert any(line.startswith(f"Removed the run directory {tmp}/segstream-") for line in lines), lines


@pytest.mark.kafka
def test_ctrl_c_stops_a_worker_gracefully_then_exits_130(kafka_bootstrap: str, unique_prefix: str,
                                                         tmp_path: Path) -> None:
    from tests.kafka_helpers import WorkerProcess
    from tests.test_worker_e2e import worker_env

    worker = WorkerProcess(worker_env(kafka_bootstrap, unique_prefix, tmp_path / "data"), tmp_path / "worker.log")
    try:
        worker.wait_ready()
        worker.proc.send_signal(signal.SIGINT)
        code = worker.proc.wait(timeout=60)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
    assert code == 130, worker.log_tail()
    assert "Traceback" not in worker.log_tail(1_000_000)


@pytest.mark.kafka
@pytest.mark.parametrize("command", [["tail"], ["produce", "--rate", "1"]], ids=["tail", "produce"])
def test_ctrl_c_ends_tail_and_produce_with_130(command: list[str], kafka_bootstrap: str, unique_prefix: str,
                                               tmp_path: Path) -> None:
    env = clean_env(KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap, SEGSTREAM_TOPICS__PREFIX=unique_prefix)
    if command[0] == "produce":  # a minute of events at 1/s
        events = tmp_path / "events.jsonl"
        events.write_bytes(b"".join(orjson.dumps({"type": "engagement", "event_id": f"e{i}", "customer_id": "c1",
                                                  "timestamp": "2026-01-05T00:00:00Z", "action": "open"}) + b"\n"
                                    for i in range(60)))
        command = [*command, str(events)]
        subprocess.run([sys.executable, "-m", "streams.cli", "topics"], cwd=ROOT, env=env, check=True, timeout=60)
    out = tmp_path / "out.txt"
    proc = started_by(command, env, out)
    try:
        time.sleep(8)  # connected (tail), a few events sent (produce)
        assert proc.poll() is None, out.read_text()
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 130, out.read_text()[-3000:]
    assert "Traceback" not in out.read_text() and "Aborted" not in out.read_text()
