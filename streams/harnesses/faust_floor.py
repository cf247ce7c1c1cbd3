"""The benchmark's faust floor: what a faust worker reaches before any processing of ours.

An agent with the worker's Kafka clients and batching (:func:`streams.app.faust_app`, the same
``take_events`` window) that only counts the input topics' messages; ``take_events`` acks them as
it does for the worker. Its rate is the ceiling of any faust agent on this machine: the gap
between it and raw aiokafka is faust's per-message machinery, the gap between it and the worker
is ours. Run by ``segstream bench`` as a child process, with the worker's environment::

    python -m streams.harnesses.faust_floor EXPECTED RESULT_FILE

It writes one JSON document (``events``, ``seconds``, ``events_per_s``, ``cpu_s``) to RESULT_FILE
once it has taken EXPECTED messages, and exits.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import faust
import orjson

from streams.settings import Settings


class Tally:
    """Counts the messages an agent takes, from the end of its first batch; at ``expected`` writes
    the result to ``result_file`` and ends the process (a measurement child: nothing to shut down)."""

    def __init__(self, expected: int, result_file: Path):
        self.expected, self.result_file = expected, result_file
        self.events = self.first_batch = self.batches = 0
        self.first = self.cpu0 = 0.0

    def take(self, messages: int) -> None:
        if not self.events:
            self.first, self.first_batch, self.cpu0 = time.perf_counter(), messages, time.process_time()
        self.events += messages
        self.batches += 1
        if self.events >= self.expected:
            seconds = time.perf_counter() - self.first
            counted = self.events - self.first_batch  # from the end of the first batch
            self.result_file.write_bytes(orjson.dumps({
                "events": self.events, "seconds": seconds,
                "events_per_s": counted / seconds if seconds > 0 else 0.0,
                "cpu_s": time.process_time() - self.cpu0, "batches": self.batches,
            }))
            os._exit(0)


def run_worker(app: "faust.App") -> None:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


def main(expected: int, result_file: Path) -> None:
    settings = Settings()
    w = settings.worker
    from streams.app import faust_app, use_event_loop

    use_event_loop(settings)  # as the worker does, before any loop exists

    app = faust_app(settings, app_id=f"{w.app_id}-floor", web_enabled=False)
    source = app.topic(*settings.topics.input_topics.values(), key_type=bytes, value_type=bytes)
    tally = Tally(expected, result_file)

    @app.agent(source, name="segstream.floor", concurrency=1)
    async def count(stream: faust.StreamT) -> None:
        async for events in stream.take_events(w.batch_max, within=w.batch_within_s):  # type: ignore[attr-defined]  # not in faust's StreamT
            tally.take(len(events))

    run_worker(app)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
