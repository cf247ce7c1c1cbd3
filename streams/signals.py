"""SIGINT and SIGTERM as a request to stop, for the commands that run one asyncio loop (``tail``,
``produce``): the work under way ends cleanly (a consumer or producer closed, what was sent
flushed) instead of being cancelled where it stands, and the command learns which signal asked
(Ctrl-C exits 130 after it, see :func:`streams.cli._exit_if_interrupted`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Iterator

__all__ = ["StopRequest", "stop_on_signals"]


class StopRequest:
    """Set by the first SIGINT or SIGTERM: ``event`` to wait on or poll, ``signum`` which one."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.signum: int | None = None

    def on_signal(self, signum: int) -> None:
        if self.signum is None:
            self.signum = signum
        self.event.set()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the running loop, turn SIGINT and SIGTERM into a :class:`StopRequest`; the loop's
    default handling comes back on exit."""
    request = StopRequest()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, request.on_signal, sig)
    try:
        yield request
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(Exception):
                loop.remove_signal_handler(sig)
