"""Who a worker is in its consumer group: a static member by default, one worker per data directory.

**Static membership** (KIP-345): a worker that joins with a ``group.instance.id`` it had before
gets its partitions back at once, without a rebalance; a dynamic member that restarts is a new
member, and the group waits for the old one's session to time out (30 s) before the rebalance
that hands its partitions out again. Every worker is a static member by default, with an id that
stays the same across restarts and differs between workers: the host name, the data directory
and the web address (``<host>-<10 hex digits of a hash of the directory's absolute path and the
web host and port>``). The web address is in it because faust hands every member the addresses
of the others in the assignment (lookups are forwarded there), and a static member that rejoins
is given its previous assignment without a rebalance: a worker restarted on another port must
join as a new member, or faust's assignor refuses the old address (``assert metadata.url ==
self._url``) and the worker never gets ready. ``GROUP_INSTANCE_ID``
overrides it (e.g. a pod name in a StatefulSet); ``STATIC_MEMBERSHIP=false`` makes workers dynamic
members. A static member that stops for good does not leave the group: its partitions move
after ``SESSION_TIMEOUT_S``, as in Kafka Streams.

Two workers on one data directory would share an instance id (the broker fences one of them) and
a RocksDB store, so the directory is locked (:func:`lock_data_dir`) for the worker's lifetime;
the kernel releases the lock when the process ends, however it ends.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import socket
from pathlib import Path
from typing import IO

from streams.settings import WorkerSettings
from schemas.errors import SetupError

__all__ = ["DataDirInUse", "default_instance_id", "group_instance_id", "lock_data_dir"]

LOCK_FILE = ".worker.lock"


class DataDirInUse(SetupError):
    """Another live worker holds the data directory."""


def default_instance_id(worker: WorkerSettings, host: str | None = None) -> str:
    """``<host>-<hash of the absolute data directory and the web address>``: stable across
    restarts with the same settings, one per worker."""
    where = f"{worker.data_dir.resolve()}\n{worker.web_host}:{worker.web_port}"
    return f"{host or socket.gethostname()}-{hashlib.sha1(where.encode()).hexdigest()[:10]}"


def group_instance_id(worker: WorkerSettings) -> str | None:
    """The ``group.instance.id`` the worker joins with (None: a dynamic member)."""
    if not worker.static_membership:
        return None
    return worker.group_instance_id or default_instance_id(worker)


def lock_data_dir(data_dir: Path) -> IO[str]:
    """Lock ``data_dir`` for this process (created if missing); keep the returned file open as
    long as the worker runs. Raises :class:`DataDirInUse` when another process holds it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    handle = open(data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise DataDirInUse(f"data directory {data_dir} is in use by {holder}; give each worker its own "
                           "SEGSTREAM_WORKER__DATA_DIR") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"worker pid {os.getpid()}\n")
    handle.flush()
    return handle
