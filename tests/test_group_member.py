"""A worker's identity in its consumer group: static by default, stable across restarts, one per
data directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.group_member import DataDirInUse, default_instance_id, group_instance_id, lock_data_dir
from streams.settings import WorkerSettings

ROOT = Path(__file__).resolve().parent.parent


def test_workers_are_static_members_with_a_stable_id_per_data_directory(tmp_path: Path) -> None:
    a, b = WorkerSettings(data_dir=tmp_path / "a"), WorkerSettings(data_dir=tmp_path / "b")
    assert group_instance_id(a) == group_instance_id(WorkerSettings(data_dir=tmp_path / "a"))  # a restart
    assert group_instance_id(a) != group_instance_id(b)
    assert default_instance_id(a, host="h1") != default_instance_id(a, host="h2")
    # Another web address is another member: faust's assignment carries each member's address.
    assert group_instance_id(a) != group_instance_id(WorkerSettings(data_dir=tmp_path / "a", web_port=6070))
    # The same directory however it is written (relative or absolute).
    relative = WorkerSettings(data_dir=Path("."))
    assert group_instance_id(relative) == group_instance_id(WorkerSettings(data_dir=Path.cwd()))


def test_the_id_can_be_set_or_membership_made_dynamic(tmp_path: Path) -> None:
    assert group_instance_id(WorkerSettings(group_instance_id="pod-3")) == "pod-3"
    assert group_instance_id(WorkerSettings(static_membership=False, group_instance_id="pod-3")) is None


def test_a_data_directory_holds_one_worker(tmp_path: Path) -> None:
    held = lock_data_dir(tmp_path / "data")
    try:
        with pytest.raises(DataDirInUse, match="in use by worker pid"):
            lock_data_dir(tmp_path / "data")
        lock_data_dir(tmp_path / "other").close()  # another directory is free
    finally:
        held.close()
    lock_data_dir(tmp_path / "data").close()  # released with the file (and by the kernel at exit)


def test_a_second_worker_on_the_same_data_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    held = lock_data_dir(tmp_path / "data")
    try:
        env = {"PATH": "/usr/bin:/bin", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9",
               "SEGSTREAM_WORKER__DATA_DIR": str(tmp_path / "data")}
        done = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
    finally:
        held.close()
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"data directory {tmp_path / 'data'} is in use by worker pid "
        f"{os.getpid()}; give each worker its own SEGSTREAM_WORKER__DATA_DIR"]
