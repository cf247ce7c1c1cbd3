"""A ``segstream worker`` run as a child process: what ``segstream run`` and ``segstream bench``
start, wait for and stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from monitoring.exposition import metric_sum
from streams.child_process import dies_with_parent
from schemas.errors import SetupError

if TYPE_CHECKING:
    from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def env_for(settings: "Settings", port: int, data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a worker child on ``settings``' broker and topics, its own app id (the
    topic prefix + ``app``), web port and data directory; ``extra``: more SEGSTREAM_ variables.
    Everything else (Kafka security included) is inherited."""
    return {**os.environ, "PYTHONUNBUFFERED": "1",
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
            "SEGSTREAM_TOPICS__PREFIX": settings.topics.prefix,
            "SEGSTREAM_TOPICS__PARTITIONS": str(settings.topics.partitions),
            "SEGSTREAM_WORKER__APP_ID": f"{settings.topics.prefix}app",
            "SEGSTREAM_WORKER__WEB_PORT": str(port), "SEGSTREAM_WORKER__DATA_DIR": str(data_dir),
            **extra}


def start(env: dict[str, str], log_file: Path) -> subprocess.Popen:
    """Start a worker with ``env``; its output is appended to ``log_file``."""
    with log_file.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT, preexec_fn=dies_with_parent())


def http_get(port: int, path: str, timeout: float = 5.0, host: str = "127.0.0.1") -> bytes | None:
    """The body of ``GET path`` on the worker's web port when it answers 200, else None."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}{path}", timeout=timeout) as resp:
            return resp.read() if resp.status == 200 else None
    except OSError:
        return None


def metric(port: int, name: str, host: str = "127.0.0.1", **labels: str) -> float | None:
    """Sum of the worker's samples named ``name`` with ``labels`` (:func:`monitoring.exposition.metric_sum`);
    None when the worker does not answer."""
    raw = http_get(port, "/metrics", host=host)
    return None if raw is None else metric_sum(raw.decode(), name, **labels)


def ready(port: int, host: str = "127.0.0.1") -> dict | None:
    """The worker's /ready document when it answers 200, else None."""
    raw = http_get(port, "/ready", timeout=2, host=host)
    return orjson.loads(raw) if raw is not None else None


def wait_ready(proc: subprocess.Popen, port: int, log_file: Path, timeout_s: float = 180.0,
               model: bool = False, host: str = "127.0.0.1") -> dict:
    """Until ``proc``'s /ready answers 200 (and, with ``model``, a model version is installed).
    Only ``proc``'s own answer counts (the ``pid`` in it): another worker on the same port (a
    second ``segstream run``) must not pass for it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        check_alive(proc, log_file)
        status = ready(port, host)
        if status is not None and status.get("pid") not in (None, proc.pid):
            check_alive(proc, log_file)  # ours may just have died of the busy port
            raise SetupError(f"another process (pid {status['pid']}) answers on port {port}; log {log_file}")
        if status is not None and (not model or status.get("model_version") is not None):
            return status
        time.sleep(0.25)
    raise TimeoutError(f"worker not {'trained' if model else 'ready'} after {timeout_s:.0f}s; log {log_file}")


def check_alive(proc: subprocess.Popen, log_file: Path) -> None:
    if proc.poll() is not None:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise SetupError(f"the worker exited with {proc.returncode}; log {log_file}:\n{tail}")


def stop(proc: subprocess.Popen, timeout_s: float = 60.0) -> int:
    """SIGTERM (a graceful stop), then SIGKILL after ``timeout_s``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode
