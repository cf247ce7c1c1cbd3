"""Write-behind (streams.write_behind): a customer's state reaches the table once per commit, and
still before any segment change it produced is sent. Crashes with write-behind:
tests/test_processor_crashes.py; on the real broker: tests/test_crash.py and test_worker_e2e.py."""

from __future__ import annotations

import asyncio
from typing import Any

from models.state import CustomerState
from streams.write_behind import StateStore
from tests.test_processor_crashes import BrokerOutputs, inbox, processor


class CountingTable(dict):
    """The table, counting writes per key (each one a changelog record on the broker)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: dict[bytes, int] = {}

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.writes[key] = self.writes.get(key, 0) + 1
        super().__setitem__(key, value)


class OutboxCheckingOutputs(BrokerOutputs):
    """Checks, when changes are sent, that the table already holds each one in its customer's outbox."""

    def __init__(self, table: dict) -> None:
        super().__init__()
        self.table = table
        self.checked = 0

    async def changes(self, changes: list) -> None:
        for change in changes:
            raw = self.table.get(change.customer_id.encode())
            assert raw is not None, "a change was sent before its customer's state was written"
            assert change.model_dump_json() in CustomerState.from_bytes(raw).outbox
            self.checked += 1
        await super().changes(changes)


def drive(table: dict, outputs: Any, write_behind: bool, commit_every: int) -> Any:
    proc = processor(table, outputs, write_behind)
    msgs = inbox()
    for n, start in enumerate(range(0, len(msgs), 50)):
        asyncio.run(proc.handle_batch(msgs[start:start + 50]))
        if (n + 1) % commit_every == 0:
            asyncio.run(proc.write_out())
    asyncio.run(proc.write_out())
    return proc


def test_a_customer_is_written_once_per_commit_however_many_batches_touched_it() -> None:
    through, behind = CountingTable(), CountingTable()
    drive(through, BrokerOutputs(), write_behind=False, commit_every=10)
    drive(behind, OutboxCheckingOutputs(behind), write_behind=True, commit_every=10)
    assert behind == through  # the same states in the end, byte for byte
    assert sum(behind.writes.values()) < sum(through.writes.values()) / 2
    # Without changes, a customer costs at most one write per commit; each batch with changes
    # adds the write of its outbox, made at once.
    commits = -(-len(inbox()) // 500) + 1
    outputs = BrokerOutputs()
    drive(CountingTable(), outputs, write_behind=False, commit_every=10)
    changed_batches = len(outputs.published)
    assert sum(behind.writes.values()) <= commits * len(behind) + changed_batches


def test_a_change_is_sent_only_once_its_state_is_in_the_table_with_it_in_the_outbox() -> None:
    table = CountingTable()
    outputs = OutboxCheckingOutputs(table)
    proc = drive(table, outputs, write_behind=True, commit_every=4)
    assert outputs.checked == len(outputs.published) > 30
    assert all(not CustomerState.from_bytes(raw).outbox for raw in table.values())  # emptied by later writes
    assert len(proc.store) == 0


def test_reads_see_the_states_waiting_to_be_written() -> None:
    table: dict[bytes, bytes] = {}
    proc = processor(table, BrokerOutputs(), write_behind=True)
    msgs = inbox()
    asyncio.run(proc.handle_batch(msgs[:200]))
    assert table == {} and len(proc.store) > 10  # nothing written yet: no commit came
    key = msgs[0].key
    assert key is not None
    waiting = proc.store.get(key)
    assert waiting is not None and CustomerState.from_bytes(waiting).customer_id == key.decode()
    asyncio.run(proc.handle_batch(msgs[200:400]))  # the next batch reads its customers from the store
    asyncio.run(proc.write_out())
    applied = sum(CustomerState.from_bytes(raw).purchase_count + CustomerState.from_bytes(raw).engagement_count
                  for raw in table.values())
    purchases_and_engagements = sum(1 for m in msgs[:400] if b'"purchase"' in (m.value or b"")
                                    or b'"engagement"' in (m.value or b""))
    assert applied == purchases_and_engagements


def test_states_of_revoked_partitions_are_dropped_never_written() -> None:
    table: dict[bytes, bytes] = {}
    store = StateStore(table, deferred=True)
    store.save(b"a", b"1", partition=0)
    store.save(b"b", b"2", partition=1)
    store.save(b"c", None, partition=1)
    assert store.forget([1]) == 2
    assert store.write_out() == 1 and table == {b"a": b"1"}
