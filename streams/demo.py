"""``segstream run``: the whole pipeline on one machine, as the README shows it.

A worker process (its log in a file), a history replayed into the input topics (the CDNOW sample
by default) and the segment changes printed live as the worker emits them. The worker runs on the
event-time clock, so twenty months of 1997-98 purchases play out in seconds and customers lapse
as the replayed history moves on. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable

from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
CDNOW_SAMPLE = ROOT / "data" / "cdnow" / "CDNOW_sample.txt"
RULES = ROOT / "examples" / "segments.toml"

#: Defaults for a replayed history (the environment still wins): event time, frequent retraining.
REPLAY_DEFAULTS = {
    "SEGSTREAM_WORKER__CLOCK": "event",
    "SEGSTREAM_WORKER__TRAIN_INTERVAL_S": "5",
    "SEGSTREAM_WORKER__SWEEP_PERIOD_S": "10",
    "SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE": str(RULES),
}


def worker_env(bootstrap: str, replaying: bool) -> dict[str, str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
    if replaying:
        env = {**REPLAY_DEFAULTS, **env}
    return env


def history_in_time_order(path: Path, work_dir: Path) -> Path:
    """A CDNOW file is ordered by customer; replayed as history it must be ordered by time, or the
    event clock jumps to the end at once. Contract JSONL files are replayed as they are."""
    import orjson

    from models.cdnow import is_cdnow_file, read_transactions

    if not is_cdnow_file(path):
        return path
    events = sorted(read_transactions(path), key=lambda e: e["timestamp"])
    out = work_dir / f"{path.stem}.by-time.jsonl"
    out.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    return out


async def replay_and_tail(settings: Settings, events: Path, rate: float,
                          on_produced: Callable[[str], None]) -> None:
    """Produce ``events`` while printing segment changes; keep printing until Ctrl-C."""
    from streams.producer import produce_file
    from streams.tail import printers, run_tail

    on_change, on_invalid = printers(as_json=False)
    tail = asyncio.create_task(run_tail(
        settings.bootstrap_servers, settings.topics.name("segment_changes"), on_change, on_invalid,
        from_beginning=True, client_kwargs=settings.kafka_client_kwargs()))
    report = await produce_file(settings, events, "auto", rate=rate)
    on_produced(f"replayed {report.sent} events in {report.seconds:.1f}s; "
                f"{len(report.skipped)} lines skipped. Segment changes keep coming as the model retrains "
                "and sweeps run; Ctrl-C stops.")
    await tail
