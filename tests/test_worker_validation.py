"""The worker on a real broker: validates, logs, dead-letters bad input and keeps going."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from schemas.dead_letter import DeadLetter
from streams.local_kafka import free_port
from tests.kafka_helpers import WorkerProcess, consume, produce, run, wait_until
from tests.test_contracts import ENGAGEMENT, FEEDBACK, PURCHASE

pytestmark = pytest.mark.kafka


def test_worker_dead_letters_bad_messages_and_keeps_processing(
    kafka_bootstrap: str, unique_prefix: str, tmp_path: Path
) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "SEGSTREAM_TOPICS__PREFIX": unique_prefix,
        "SEGSTREAM_TOPICS__PARTITIONS": "2",
        "SEGSTREAM_WORKER__APP_ID": f"{unique_prefix}app",
        "SEGSTREAM_WORKER__WEB_PORT": str(free_port()),
        "SEGSTREAM_WORKER__DATA_DIR": str(tmp_path / "data"),
    }
    log = tmp_path / "worker.log"
    worker = WorkerProcess(env, log)
    try:
        worker.wait_ready()
        purchases, engagements = f"{unique_prefix}purchases", f"{unique_prefix}engagements"
        bad = [
            (purchases, b"c-1", b"{not json"),
            (purchases, b"c-1", orjson.dumps({**PURCHASE, "amount": "lots"})),
            (purchases, b"someone-else", orjson.dumps(PURCHASE)),             # key != customer_id
            (engagements, b"c-1", orjson.dumps(PURCHASE)),                   # purchase on the engagement topic
            (purchases, b"c-1", b"\xff\xfe\xfd"),                            # not UTF-8
        ]
        good = [
            (purchases, b"c-1", orjson.dumps(PURCHASE)),
            (engagements, b"c-1", orjson.dumps(ENGAGEMENT)),
            (f"{unique_prefix}feedback", b"c-1", orjson.dumps(FEEDBACK)),
        ]
        # Bad messages first: the good ones after them prove the worker kept going.
        run(produce(kafka_bootstrap, bad + good))

        letters = run(consume(kafka_bootstrap, f"{unique_prefix}dead-letter", len(bad)))
        assert len(letters) == len(bad)
        parsed = [DeadLetter.model_validate_json(r.value) for r in letters]
        by_offset = {(d.source.topic, d.source.offset): d for d in parsed}
        assert {d.source.topic for d in parsed} == {purchases, engagements}
        fields = sorted({p.field for d in parsed for p in d.problems})
        assert fields == ["", "action", "amount", "key", "type"], fields  # a purchase on the engagements topic lacks action
        binary = [d for d in parsed if d.payload_encoding == "base64"]
        assert len(binary) == 1 and binary[0].payload_size == 3
        assert all(d.error for d in by_offset.values())

        # The good messages behind the bad ones were applied: the worker kept going.
        wait_until(lambda: worker.metric("segstream_events_total", outcome="applied") >= len(good), 30,
                   "the good messages to be applied")
        assert "Traceback" not in log.read_text()
    finally:
        code = worker.stop()
    assert code == 0, log.read_text()[-3000:]

