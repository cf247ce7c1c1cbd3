"""A faust worker whose graceful stop has a deadline.

faust stops its services in order on SIGTERM/SIGINT; with the broker unreachable, aiokafka's
metadata loop never lets the consumer stop and the process hangs for good (measured: still alive
60 s after SIGTERM). Past ``timeout_s`` the process exits anyway. Nothing is lost by that: offsets
are committed only after the states and changes they cover are durable, so whatever was not
committed is redelivered to the next owner, and a customer's outbox is sent again (see
streams/processor.py). The exit code is 1: the stop was not clean.
"""

from __future__ import annotations

import signal
import threading

from faust.worker import Worker

from streams.shutdown import exit_now


class BoundedShutdownWorker(Worker):
    def __init__(self, *args: object, shutdown_timeout_s: float = 30.0, **kwargs: object):
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.shutdown_timeout_s = shutdown_timeout_s
        self._deadline: threading.Timer | None = None
        #: The signal that asked for the stop (the command exits 130 after a SIGINT), or None.
        self.stopped_by: signal.Signals | None = None

    def _schedule_shutdown(self, signum: signal.Signals) -> None:  # mode's private hook: no public one
        if self.stopped_by is None:
            self.stopped_by = signum
        if self._deadline is None:
            self._deadline = threading.Timer(self.shutdown_timeout_s, self._give_up)
            self._deadline.daemon = True
            self._deadline.start()
        super()._schedule_shutdown(signum)

    def _give_up(self) -> None:
        exit_now(f"graceful stop did not finish within {self.shutdown_timeout_s:.0f}s (is the broker reachable?); "
                 "uncommitted messages are redelivered to the next owner: nothing is lost")
