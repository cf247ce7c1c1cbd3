"""The benchmark's faust *batch* floor (#20, a research prototype): the faust floor's agent, with
faust's per-message delivery replaced by :mod:`streams.fixups.batch_delivery`.

Same app, clients, consumer group machinery, acks and commits as :mod:`streams.harnesses.faust_floor`;
the agent is still declared on the input topics (faust subscribes, assigns, acks and commits), but
gets each partition's fetched records as one batch (at most the worker's ``batch_max``) and only
counts them. Run by ``segstream bench`` next to the faust floor::

    python -m streams.harnesses.faust_batch_floor EXPECTED RESULT_FILE

It writes one JSON document (``events``, ``seconds``, ``events_per_s``, ``cpu_s``, ``batches``) to
RESULT_FILE once it has taken EXPECTED messages, and exits.
"""

from __future__ import annotations

import sys
from pathlib import Path

import faust

from streams.harnesses.faust_floor import Tally, run_worker
from streams.settings import Settings


def main(expected: int, result_file: Path) -> None:
    settings = Settings()
    w = settings.worker
    from streams.app import faust_app, use_event_loop
    from streams.fixups.batch_delivery import use_batch_delivery

    use_event_loop(settings)  # as the worker does, before any loop exists

    app = faust_app(settings, app_id=f"{w.app_id}-batch-floor", web_enabled=False)
    source = app.topic(*settings.topics.input_topics.values(), key_type=bytes, value_type=bytes)
    batches = use_batch_delivery(app, source, w.batch_max)
    tally = Tally(expected, result_file)

    @app.agent(source, name="segstream.batch_floor", concurrency=1)
    async def count(stream: faust.StreamT) -> None:  # the stream only subscribes: batches arrive on `batches`
        async for batch in batches:
            tally.take(len(batch))

    run_worker(app)


if __name__ == "__main__":
    main(int(sys.argv[1]), Path(sys.argv[2]))
