"""Ending the worker process at once, when carrying on could lose data."""

from __future__ import annotations

import logging
import os

__all__ = ["exit_now"]

log = logging.getLogger("segstream.worker")


def exit_now(reason: str, code: int = 1) -> None:
    """End the process at once, committing nothing more: what is not committed is redelivered
    (crash-safe by design, as the crash test shows). For when carrying on could lose data."""
    log.critical("exiting now: %s", reason)
    logging.shutdown()
    os._exit(code)
