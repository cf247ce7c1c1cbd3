"""The wheel holds everything the commands need at run time: every subpackage (streams.fixups,
streams.harnesses), the contracts' JSON Schemas, the CDNOW sample, the demo's rule segments and
the Kafka jars' pom. Before, `segstream run` and `segstream kafka` worked only from a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHECK = """
import streams.fixups.kafka_transport, streams.harnesses.bench, streams.cli
from streams.demo import CDNOW_SAMPLE, RULES
from streams.local_kafka import POM
from schemas.export import SCHEMA_DIR
import models.cdnow
for path in (CDNOW_SAMPLE, RULES, POM):
    assert path.is_file(), path
    assert str(path).startswith(os.environ["UNPACKED"]), path
assert models.cdnow.__file__.startswith(os.environ["UNPACKED"])
assert any(SCHEMA_DIR.glob("*.schema.json"))
print(sum(1 for _ in models.cdnow.read_transactions()))
"""


def test_the_wheel_runs_without_the_checkout(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(tmp_path)],
                   check=True, capture_output=True, timeout=600)
    [wheel] = tmp_path.glob("segstream-*.whl")
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    env = {**os.environ, "PYTHONPATH": str(unpacked), "UNPACKED": str(unpacked)}
    done = subprocess.run([sys.executable, "-c", "import os\n" + CHECK], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == 6919  # the CDNOW sample's transactions, read from the wheel
