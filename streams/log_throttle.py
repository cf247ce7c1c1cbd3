"""Repeated log lines, throttled: while the broker is unreachable aiokafka logs the same
"Unable connect to node" error thousands of times a second (1.4 MB in a 6-second outage,
measured in the crash test), which buries the lines that matter and fills disks.

>>> import logging
>>> f = RepeatThrottle(interval_s=60.0)
>>> rec = lambda: logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, "Unable connect to node %s", (1,), None)
>>> [f.filter(rec()) for _ in range(3)]
[True, False, False]
>>> f.suppressed
2
"""

from __future__ import annotations

import logging
import time

from streams.wording import plural

#: aiokafka's loggers (one per module; the client's own is plain "aiokafka").
NOISY_LOGGERS = (
    "aiokafka", "aiokafka.conn", "aiokafka.cluster", "aiokafka.producer.sender", "aiokafka.producer.producer",
    "aiokafka.consumer.fetcher", "aiokafka.consumer.group_coordinator", "aiokafka.consumer.consumer",
)


class RepeatThrottle(logging.Filter):
    """Lets ``burst`` records of a given message template through per ``interval_s`` (per logger
    and level); the first one after that says how many were held back."""

    def __init__(self, interval_s: float = 30.0, burst: int = 1):
        super().__init__()
        self.interval_s = interval_s
        self.burst = burst
        self.suppressed = 0
        # template -> [window start, passed in the window, held back in the window]
        self._windows: dict[tuple[str, int, str], list[float]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))
        now = time.monotonic()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.interval_s:
            held_back = int(window[2]) if window is not None else 0
            if len(self._windows) > 1000:  # bounded: templates, not formatted messages, are the keys
                self._windows.clear()
            self._windows[key] = [now, 1, 0]
            if held_back:
                record.msg = (f"{record.msg} [{plural(held_back, 'similar message')} not shown in the last "
                              f"{now - window[0]:.0f}s]")  # type: ignore[index]
            return True
        if window[1] < self.burst:
            window[1] += 1
            return True
        window[2] += 1
        self.suppressed += 1
        return False


def throttle_kafka_client_logs(interval_s: float = 30.0) -> RepeatThrottle:
    throttle = RepeatThrottle(interval_s)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).addFilter(throttle)
    return throttle


def throttle_worker_logs(interval_s: float = 10.0, burst: int = 20) -> RepeatThrottle:
    """The worker's own per-message warnings (dead letters): a flood of bad input must not become
    a flood of log lines; the dead-letter topic and the metrics have every one."""
    throttle = RepeatThrottle(interval_s, burst)
    logging.getLogger("segstream.worker").addFilter(throttle)
    return throttle
