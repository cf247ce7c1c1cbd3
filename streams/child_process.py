"""Processes a segstream command starts end with it, however it ends.

``segstream run`` starts a Java broker and a worker; ``segstream bench`` and the crash test start
workers. A graceful stop (Ctrl-C, SIGTERM) stops them in ``finally`` blocks, but a command that is
SIGKILLed, killed by the OOM killer or torn down with its pipe has no ``finally``, and the broker
would go on listening with parent 1. Linux's parent-death signal (``prctl(PR_SET_PDEATHSIG)``)
makes the kernel signal the child when its parent dies: armed in the child between ``fork`` and
``exec`` (``preexec_fn``), it survives the ``exec`` of ``java`` or ``python``.

Elsewhere than Linux the children are only stopped by the ``finally`` blocks.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from typing import Callable

__all__ = ["arm_parent_death_signal", "dies_with_parent"]

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def arm_parent_death_signal(sig: int, parent_pid: int) -> None:
    """In the calling process: receive ``sig`` when the parent dies; exit at once if it already
    has (it died between the ``fork`` and here)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig))
    if os.getppid() != parent_pid:
        os._exit(1)


def dies_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen`: the child gets ``sig`` (SIGTERM: its own
    graceful stop) when this process dies. ``None`` where it cannot be armed."""
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()
    return lambda: arm_parent_death_signal(sig, parent)
