"""faust's Monitor without its per-message statistics (a workaround of faust's hot-path cost).

faust-streaming 0.15.3 calls several bookkeeping hooks of its Monitor for every message, for its
own /stats pages, which segstream does not serve. Can go when faust lets an app turn them off.
"""

from __future__ import annotations

from typing import Any

from faust.sensors.monitor import Monitor

__all__ = ["QuietMonitor"]


class QuietMonitor(Monitor):
    """faust's Monitor without its per-message statistics (kept for faust's own /stats pages):
    several bookkeeping calls per message on the hot path. segstream's metrics live in
    monitoring.metrics; the rebalance, commit and assignment hooks stay as they are."""

    def on_message_in(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        return None

    def on_stream_event_out(self, tp: Any, offset: int, stream: Any, event: Any, state: Any = None) -> None:
        return None

    def on_message_out(self, tp: Any, offset: int, message: Any) -> None:
        return None

    def on_table_get(self, table: Any, key: Any) -> None:
        return None

    def on_table_set(self, table: Any, key: Any, value: Any) -> None:
        return None

    def on_send_initiated(self, producer: Any, topic: str, message: Any, keysize: int, valsize: int) -> None:
        return None

    def on_send_completed(self, producer: Any, state: Any, metadata: Any) -> None:
        return None
