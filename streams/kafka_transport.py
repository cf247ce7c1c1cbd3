"""faust's aiokafka transport with the consumer's fetch batching under our control.

faust builds its aiokafka consumer with ``fetch_min_bytes=1``: the broker answers a fetch as soon
as one message is there. Under a steady live stream that is a fetch round trip for every few
messages, and aiokafka encodes and decodes each request and response in Python, for every
partition the worker owns (input topics, erasures, re-evaluations, samples, snapshots). Measured
on the worker at 100-300 events/s, that made a live event cost ten times its backlog cost. With
``fetch_min_bytes`` raised, the broker holds a fetch until that much has arrived or
``fetch_max_wait_ms`` passed: one round trip per window of messages, at most that window's delay.

faust has no setting for either; its app takes a transport object, so this is a subclass of its
own aiokafka transport whose consumer thread sets both before the consumer starts (the consumer
hands them to its fetcher at start).

**Opt-in, off by default** (``FETCH_MIN_BYTES=1``, ``FETCH_MAX_WAIT_MS=1500``: faust's values).
With 64 KiB / 10 ms, the crash test (``tests/test_crash.py``, under CPU load) lost one event
for 10 and for 1 of 100 customers in two of three runs: after a SIGKILL, the restarted worker
processed a later offset of a partition before an earlier one (read back from the changelog and
``__consumer_offsets``), and the earlier one then looked like a redelivery. With faust's values
the same runs passed. Until that is understood, the windows stay off.
"""

from __future__ import annotations

from typing import Any

import aiokafka
from faust.transport.drivers import aiokafka as faust_aiokafka


class FetchTunedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> aiokafka.AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_min_bytes = transport.fetch_min_bytes
        consumer._fetch_max_wait_ms = transport.fetch_max_wait_ms
        return consumer


class FetchTunedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> FetchTunedConsumerThread:
        return FetchTunedConsumerThread(self, loop=self.loop, beacon=self.beacon)


class FetchTunedTransport(faust_aiokafka.Transport):
    Consumer = FetchTunedConsumer

    def __init__(self, *args: Any, fetch_min_bytes: int, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_max_wait_ms = fetch_max_wait_ms


def use_fetch_tuned_transport(app: Any, fetch_min_bytes: int, fetch_max_wait_ms: int) -> FetchTunedTransport:
    """Make ``app`` consume through :class:`FetchTunedTransport` (before it starts)."""
    transport = FetchTunedTransport(app.conf.broker_consumer, app, fetch_min_bytes=fetch_min_bytes,
                                    fetch_max_wait_ms=fetch_max_wait_ms)
    app.transport = transport
    return transport
