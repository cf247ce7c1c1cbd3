"""``segstream tail``: the one-line view of each change, and the consumer on a real broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas.segment_change import SegmentChange
from streams.kafka_admin import ensure_topics
from streams.settings import Settings, TopicSettings
from streams.tail import format_change, parse_change, tail_changes
from streams.topics import topic_specs
from tests.kafka_helpers import produce, run

VALUE = {"purchase_count": 7, "total_spend": 94.72, "frequency": 6, "recency_days": 12.5,
         "monetary_value": 13.92, "p_alive": 0.58, "clv": 197.43, "nps": 9}
DRIVERS = [
    {"feature": "frequency", "value": 12.0, "z": 1.2, "segment_centroid_z": 1.1},
    {"feature": "clv", "value": 310.5, "z": 0.8, "segment_centroid_z": 0.9},
    {"feature": "nps", "value": 9.0, "z": 0.4, "segment_centroid_z": 0.3},
    {"feature": "engagement", "value": 0.1, "z": -0.1, "segment_centroid_z": 0.0},
]
C2 = {"id": "c2", "label": "mid value · occasional"}
C3 = {"id": "c3", "label": "high value · frequent"}
VIP = {"id": "vip_at_risk", "label": "VIP at risk"}


def change(seq: int = 1, customer: str = "cdnow-0042", **fields: Any) -> dict[str, Any]:
    doc = {
        "change_id": SegmentChange.make_id(customer, seq), "customer_id": customer, "kind": "cluster",
        "previous_segment": C2, "segment": C3, "changed_at": "2026-06-01T10:20:30Z", "model_version": 3,
        "definition_version": None,
        "reason": {"code": "better_fit", "details": {"distance_to_new": 0.8, "drivers": DRIVERS}},
        "value": VALUE,
    }
    return {**doc, **fields}


def formatted(doc: dict[str, Any]) -> str:
    return format_change(SegmentChange.model_validate(doc)).plain


def test_move_shows_both_segments_reason_version_and_top_three_drivers() -> None:
    line = formatted(change())
    assert line.startswith("2026-06-01 10:20:30Z  cdnow-0042  cluster")
    assert "move  c2 'mid value · occasional' -> c3 'high value · frequent'" in line
    assert "better_fit" in line and "model v3" in line
    assert "drivers: frequency=12 (z +1.20), clv=310.5 (z +0.80), nps=9 (z +0.40)" in line
    assert "engagement" not in line  # only the top three
    assert "\n" not in line


def test_entry_has_no_previous_segment() -> None:
    line = formatted(change(previous_segment=None, reason={"code": "first_assignment", "details": {}}))
    assert "enter -> c3 'high value · frequent'" in line
    assert "first_assignment" in line and "drivers" not in line


def test_rule_entry_and_exit_show_the_definition_version() -> None:
    rule = {"kind": "rule", "definition_version": "836a70cdb4fd",
            "reason": {"code": "rule_entered", "details": {"turned": ["clv > p80 (221.67)"]}}}
    entered = formatted(change(previous_segment=None, segment=VIP, **rule))
    assert "  rule  " in entered and "enter -> vip_at_risk 'VIP at risk'" in entered
    assert "rule_entered" in entered and "rules 836a70cdb4fd" in entered

    left = formatted(change(previous_segment=VIP, segment=None,
                            **{**rule, "reason": {"code": "rule_left", "details": {}}}))
    assert "exit  vip_at_risk 'VIP at risk' ->" in left and "rule_left" in left


def test_erasure_is_an_exit_without_value() -> None:
    line = formatted(change(previous_segment=C3, segment=None, value=None,
                            reason={"code": "erased", "details": {}}))
    assert "exit  c3 'high value · frequent' ->" in line and "erased" in line


@pytest.mark.parametrize("raw", [b"not json", b'{"change_id": "x"}', orjson.dumps([1, 2]), None,
                                 orjson.dumps(change(kind="neither"))])
def test_unparsable_message_gives_a_reason_not_an_exception(raw: bytes | None) -> None:
    result = parse_change(raw)
    assert isinstance(result, str) and result and "\n" not in result


@pytest.mark.parametrize(("shown", "invalid", "said"), [
    (1, 1, "1 change shown, 1 invalid message skipped"),
    (0, 2, "0 changes shown, 2 invalid messages skipped"),
    (1234, 0, "1,234 changes shown, 0 invalid messages skipped"),
])
def test_the_tail_summary_says_one_change_in_the_singular(shown: int, invalid: int, said: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Its last line counts what it showed ('1 changes shown' read wrong); no broker needed."""
    from typer.testing import CliRunner

    from streams import tail
    from streams.cli import cli

    async def counted(*args: Any, **kwargs: Any) -> tail.TailStats:
        return tail.TailStats(shown=shown, invalid=invalid)

    monkeypatch.setattr(tail, "run_tail", counted)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9")  # never reached
    result = CliRunner().invoke(cli, ["tail"])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[-1] == said


@pytest.mark.kafka
def test_tail_reads_changes_in_order_and_skips_garbage(kafka_bootstrap: str, unique_prefix: str) -> None:
    settings = Settings(topics=TopicSettings(prefix=unique_prefix))
    run(ensure_topics(kafka_bootstrap, topic_specs(settings)))
    topic = settings.topics.name("segment_changes")
    docs = [change(1, previous_segment=None), change(2), change(3, previous_segment=C3, segment=C2)]
    key = b"cdnow-0042"  # one key -> one partition -> a total order the tail must keep
    messages = [(topic, key, orjson.dumps(docs[0])), (topic, key, b"{garbage"),
                (topic, key, orjson.dumps(docs[1])), (topic, key, orjson.dumps(docs[2]))]
    run(produce(kafka_bootstrap, messages))

    seen: list[SegmentChange] = []
    warnings: list[str] = []
    stats = run(asyncio.wait_for(tail_changes(
        kafka_bootstrap, topic, lambda c, _raw: seen.append(c), warnings.append,
        from_beginning=True, max_changes=3,
    ), timeout=60))

    assert [c.change_id for c in seen] == [d["change_id"] for d in docs]
    assert stats.shown == 3 and stats.invalid == 1
    assert len(warnings) == 1 and "offset 1" in warnings[0]


@pytest.mark.kafka
def test_a_tail_whose_broker_went_away_stops_cleanly_when_asked(tmp_path: Path) -> None:
    """A new user's Ctrl-C after the demo's broker had stopped ended the tail with a traceback and
    exit 1 (aiokafka's stop on a node that is not ready). A stop request ends it with its counts."""
    from streams.local_kafka import LocalKafka

    kafka = LocalKafka.from_settings(Settings().local_kafka, run_dir=tmp_path / "kafka")
    kafka.start()
    settings = Settings(topics=TopicSettings(prefix="gone."))
    run(ensure_topics(kafka.bootstrap_servers, topic_specs(settings)))
    topic = settings.topics.name("segment_changes")
    run(produce(kafka.bootstrap_servers, [(topic, b"c1", orjson.dumps(change(1, previous_segment=None)))]))

    async def scenario() -> Any:
        stop = asyncio.Event()
        seen: list[SegmentChange] = []
        tail = asyncio.ensure_future(tail_changes(kafka.bootstrap_servers, topic, lambda c, _r: seen.append(c),
                                                  lambda _w: None, from_beginning=True, stop=stop))
        for _ in range(100):  # the change already there is shown...
            if seen:
                break
            await asyncio.sleep(0.2)
        await asyncio.to_thread(kafka.stop)  # ...then the broker goes away
        await asyncio.sleep(6)
        stop.set()  # Ctrl-C
        return await asyncio.wait_for(tail, 30)

    try:
        stats = run(scenario())
    finally:
        kafka.stop()
    assert stats.shown == 1 and stats.stopped_by is None  # returned its counts, no exception
