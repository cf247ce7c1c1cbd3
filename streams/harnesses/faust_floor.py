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

import orjson

from streams.settings import Settings


def main(expected: int, result_file: Path) -> None:
    settings = Settings()
    w = settings.worker
    import faust

    from streams.app import faust_app, use_event_loop

    use_event_loop(settings)  # as the worker does, before any loop exists

    app = faust_app(settings, app_id=f"{w.app_id}-floor", web_enabled=False)
    source = app.topic(*settings.topics.input_topics.values(), key_type=bytes, value_type=bytes)
    seen = {"events": 0, "first": 0.0, "first_batch": 0, "cpu0": 0.0}

    @app.agent(source, name="segstream.floor", concurrency=1)
    async def count(stream: faust.StreamT) -> None:
        async for events in stream.take_events(w.batch_max, within=w.batch_within_s):  # type: ignore[attr-defined]  # not in faust's StreamT
            if not seen["events"]:
                seen.update(first=time.perf_counter(), first_batch=len(events), cpu0=time.process_time())
            seen["events"] += len(events)
            if seen["events"] >= expected:
                seconds = time.perf_counter() - seen["first"]
                counted = seen["events"] - seen["first_batch"]  # from the end of the first batch
                result_file.write_bytes(orjson.dumps({
                    "events": seen["events"], "seconds": seconds,
                    "events_per_s": counted / seconds if seconds > 0 else 0.0,
                    "cpu_s": time.process_time() - seen["cpu0"],
                }))
                os._exit(0)  # a measurement child: nothing to shut down gracefully

    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
