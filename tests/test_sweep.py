"""The clock-driven sweep's passes."""

from __future__ import annotations

from streams.partitioning import home_partition
from streams.sweep import Sweeper

KEYS = [f"c{i}".encode() for i in range(10)]
ALL = {0, 1}


def _swept(batches: dict) -> int:
    return sum(len(b.customers) for b in batches.values())


def test_a_pass_covers_every_key_once_and_the_next_waits_for_the_period() -> None:
    sweeper = Sweeper(partitions=2, batch=4, period_s=600.0)
    assert _swept(sweeper.tick(KEYS, ALL, now=0.0)) == 4
    assert _swept(sweeper.tick(KEYS, ALL, now=1.0)) == 4
    last = sweeper.tick(KEYS, ALL, now=2.0)
    assert _swept(last) == 2 and all(b.end for b in last.values() if b.customers)
    assert sweeper.tick(KEYS, ALL, now=3.0) == {}  # the period has not passed
    assert _swept(sweeper.tick(KEYS, ALL, now=601.0)) == 4 and sweeper.passes == 2


def test_start_pass_now_starts_the_next_pass_at_the_next_tick() -> None:
    """The first model arrived: customers seen before it are assigned now, not a period later."""
    sweeper = Sweeper(partitions=2, batch=100, period_s=600.0)
    sweeper.tick(KEYS, ALL, now=0.0)
    assert sweeper.tick(KEYS, ALL, now=5.0) == {}
    sweeper.start_pass_now()
    batches = sweeper.tick(KEYS, ALL, now=6.0)
    assert _swept(batches) == len(KEYS) and sweeper.passes == 2
    assert {p: sorted(b.customers) for p, b in batches.items()} == {
        p: sorted(k.decode() for k in KEYS if home_partition(k, 2) == p) for p in ALL}


def test_every_active_partition_gets_one_end_after_all_its_customers_and_others_are_skipped() -> None:
    """The populations a partition publishes are complete at its ``end`` batch: it must come once
    per pass, after the partition's last customer, even when that tick has none of them left."""
    from schemas.internal import parse_reevaluation

    keys = [f"c{i}".encode() for i in range(40)]
    active = {0, 2}  # partition 1 is another worker's (or a standby's keys in the table)
    sweeper = Sweeper(partitions=3, batch=7, period_s=600.0)
    seen: dict[int, list[str]] = {0: [], 2: []}
    ends: dict[int, int] = {0: 0, 2: 0}
    for tick in range(6):
        for p, batch in sweeper.tick(keys, active, now=float(tick)).items():
            assert p in active and ends[p] == 0  # nothing after the partition's end
            seen[p].extend(batch.customers)
            ends[p] += batch.end
            assert parse_reevaluation(batch.to_json()).end == batch.end  # an empty end batch is valid too
    assert ends == {0: 1, 2: 1} and sweeper.passes == 1
    for p in active:
        assert sorted(seen[p]) == sorted(k.decode() for k in keys if home_partition(k, 3) == p)
