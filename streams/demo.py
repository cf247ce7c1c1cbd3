"""``segstream run``: the whole pipeline on one machine, as the README shows it.

A worker process (its log in a file), a history replayed into the input topics (the CDNOW sample
by default) and the segment changes printed live as the worker emits them. The worker runs on the
event-time clock, so twenty months of 1997-98 purchases play out in seconds and customers lapse
as the replayed history moves on. Ctrl-C stops everything cleanly, at any stage.

``segstream run --no-replay`` starts the same worker without :data:`REPLAY_DEFAULTS`: it runs on
the settings of its environment (wall clock, training every 60 s, sweep period 600 s and no rule
segments unless set), as a production worker would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any, Callable, Coroutine

from models.cdnow import SAMPLE
from streams.settings import Settings
from streams.wording import plural

CDNOW_SAMPLE = SAMPLE  # shipped in the package: `segstream run` works from an installed wheel, not only a checkout
RULES = Path(__file__).resolve().parent / "resources" / "segments.toml"  # examples/segments.toml links here

#: Defaults for a replayed history (the environment still wins): event time, frequent retraining.
REPLAY_DEFAULTS = {
    "SEGSTREAM_WORKER__CLOCK": "event",
    "SEGSTREAM_WORKER__TRAIN_INTERVAL_S": "5",
    "SEGSTREAM_WORKER__SWEEP_PERIOD_S": "1",  # the event clock runs ~23 days a second: exits come at a pass
    "SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE": str(RULES),
}


def worker_env(bootstrap: str, replaying: bool) -> dict[str, str]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PYTHONUNBUFFERED": "1"}
    if replaying:
        env = {**REPLAY_DEFAULTS, **env}
    return env


def history_in_time_order(path: Path, work_dir: Path) -> Path:
    """The history to replay, ordered by event time (the order ``segstream replay`` applies it
    in, :func:`streams.replay.order_key`): a CDNOW file is ordered by customer and a contract
    JSONL file by whatever wrote it, and replayed as they are the event clock would jump ahead of
    the events still to come, lapsing customers whose next purchase is only later in the file.
    Lines that are not valid events keep their place at the end (they are dead-lettered, with
    their reason, as any producer's would be)."""
    import orjson

    from models.cdnow import is_cdnow_file, read_transactions
    from schemas.events import EventValidationError, parse_event
    from streams.producer import iter_lines
    from streams.replay import order_key

    out = work_dir / f"{path.stem}.by-time.jsonl"
    if is_cdnow_file(path):
        events = sorted(read_transactions(path), key=lambda e: e["timestamp"])
        out.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
        return out
    keyed, invalid = [], []
    for number, _size, raw in iter_lines(path):
        try:
            keyed.append(order_key(number, raw, parse_event(raw)))
        except EventValidationError:
            invalid.append(raw)
    lines = [key[-2] for key in sorted(keyed)] + invalid
    out.write_bytes(b"".join(line + b"\n" for line in lines))
    return out


async def replay_and_tail(settings: Settings, events: Path, rate: float,
                          on_produced: Callable[[str], None]) -> int:
    """Produce ``events`` while printing segment changes; keep printing until SIGINT or SIGTERM.

    The signal stops whichever stage is running at once: the replay (what was sent stays sent),
    the wait for the worker to catch up, or the tail. Returns that signal."""
    from streams.tail import printers, tail_changes

    stop, halt = asyncio.Event(), threading.Event()  # halt: the same stop, for a thread
    received: list[int] = []

    def on_signal(sig: int) -> None:
        received.append(sig)
        stop.set()
        halt.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        on_change, on_invalid = printers(as_json=False)
        tail = asyncio.create_task(tail_changes(
            settings.broker(), settings.topics.name("segment_changes"), on_change, on_invalid,
            from_beginning=True, stop=stop, client_kwargs=settings.kafka_client_kwargs()))
        try:
            await _unless_stopped(stop, _replay(settings, events, rate, on_produced, halt))
            await tail  # until the signal
        finally:
            stop.set()
            halt.set()
            if not tail.done():
                await tail
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
    return received[0] if received else signal.SIGTERM


async def _replay(settings: Settings, events: Path, rate: float, on_produced: Callable[[str], None],
                  halt: threading.Event) -> None:
    from streams.producer import produce_file

    report = await produce_file(settings, events, "auto", rate=rate)
    on_produced(f"replayed {plural(report.sent, 'event')} in {report.seconds:.1f}s; "
                f"{plural(len(report.skipped), 'line')} skipped; "
                "waiting for the worker to catch up (every event consumed, the sample swept, the model "
                "trained on the whole history)...")
    settled = await asyncio.to_thread(wait_caught_up, settings, report.sent, halt=halt)
    if not halt.is_set():
        on_produced(segments_report_text(settings))
        on_produced(f"caught up{settled}: from here on a segment changes only when its customer's data does "
                    "(new events; the event clock stands still until one arrives). Ctrl-C stops.")


def segments_report_text(settings: Settings) -> str:
    """The worker's segment KPIs and scorecard as a terminal table (what ``segstream segments`` prints)."""
    import shutil

    from schemas.errors import ConfigurationError
    from streams.segments_report import from_workers, render

    w = settings.worker
    try:
        report = from_workers([f"http://{w.web_host}:{w.web_port}"])
    except ConfigurationError as exc:
        return f"no segment KPIs to show yet: {exc}"
    width = shutil.get_terminal_size((160, 40)).columns
    return (render(report, settings.engine.scorecard, "table", width=width)
            + "\nThe same for a marketer: segstream segments --format html --out segments.html (or markdown)")


async def _unless_stopped(stop: asyncio.Event, work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` until it ends or ``stop`` is set, which cancels it (its errors are raised)."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def wait_caught_up(settings: Settings, sent: int, timeout_s: float = 300.0,
                   halt: threading.Event | None = None) -> str:
    """Until the worker consumed ``sent`` events and then neither emitted a change nor installed a
    model for one training interval and sweep period and more: the replay's last model (trained on
    the complete history, which the sweep offers the trainer within a sweep period) is in force.
    Returns what it saw, for the message (or that it gave up waiting); ends early once ``halt``
    is set."""
    import time
    import urllib.request

    import orjson

    w = settings.worker
    url = f"http://{w.web_host}:{w.web_port}"
    deadline, last, since, quiet_s = time.monotonic() + timeout_s, None, time.monotonic(), None
    halt = halt or threading.Event()

    def metric(text: str, name: str) -> float:
        return sum(float(line.rpartition(" ")[2]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    while time.monotonic() < deadline and not halt.is_set():
        try:
            if quiet_s is None:  # the worker's own intervals (REPLAY_DEFAULTS), not this process's settings
                with urllib.request.urlopen(f"{url}/config", timeout=5) as resp:
                    config = orjson.loads(resp.read())
                quiet_s = 2 * config["SEGSTREAM_WORKER__TRAIN_INTERVAL_S"] + config["SEGSTREAM_WORKER__SWEEP_PERIOD_S"]
            with urllib.request.urlopen(f"{url}/metrics", timeout=5) as resp:
                text = resp.read().decode()
            with urllib.request.urlopen(f"{url}/ready", timeout=5) as resp:
                version = orjson.loads(resp.read()).get("model_version")
        except OSError:
            halt.wait(1)
            continue
        state = (metric(text, "segstream_events_total{"), metric(text, "segstream_segment_changes_total{"), version)
        if state != last:
            last, since = state, time.monotonic()
        elif state[0] >= sent and quiet_s is not None and time.monotonic() - since >= quiet_s:
            model = f"model v{version}" if version is not None else "no clustering model yet"
            return f" ({model}, {plural(round(state[1]), 'change')})"
        halt.wait(2)
    return "" if halt.is_set() else f" as far as {timeout_s:.0f} s of waiting goes"

