"""Agents: the thin adapter between Kafka messages and the pure engine.

Each input topic has one agent (concurrency 1: faust-streaming #606 loses messages otherwise).
A message that breaks the contract goes to the dead-letter topic with the reason; the agent
never raises on input, so one bad message cannot stop a partition.
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timezone

import faust

from schemas.dead_letter import Source, dead_letter_for
from schemas.events import AnyEvent, EventValidationError, FieldProblem, parse_event
from streams.settings import Settings
from streams.topics import Topics

log = logging.getLogger("segstream.worker")


def check_key(key: bytes | None, event: AnyEvent) -> None:
    """The message key must be the customer id, or tables and topics stop being co-partitioned."""
    if key is None or key != event.customer_id.encode():
        raise EventValidationError(
            [FieldProblem(field="key", error="key_mismatch",
                          message="message key must equal customer_id")]
        )


class InputValidator:
    """Validates raw messages of one event type and dead-letters the rejects."""

    def __init__(self, event_type: str, topics: Topics):
        self.event_type = event_type
        self.topics = topics
        self.counts: Counter[str] = Counter()

    async def validate(self, event: faust.EventT) -> AnyEvent | None:
        raw: bytes = event.value
        msg = event.message
        self.counts["consumed"] += 1
        try:
            parsed = parse_event(raw, expected_type=self.event_type)
            check_key(event.key, parsed)
        except EventValidationError as exc:
            await self._dead_letter(event, exc.problems)
            return None
        self.counts["valid"] += 1
        return parsed

    async def _dead_letter(self, event: faust.EventT, problems: list[FieldProblem]) -> None:
        msg = event.message
        key = event.key.decode("utf-8", "replace") if isinstance(event.key, bytes) else None
        source = Source(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=key)
        letter = dead_letter_for(event.value if isinstance(event.value, bytes) else None, source,
                                 problems, datetime.now(timezone.utc))
        await self.topics.dead_letter.send(key=event.key, value=letter.model_dump_json().encode())
        self.counts["invalid"] += 1
        # No payload or customer id in the log: the dead-letter topic has them, logs are for ops.
        log.warning("dead-lettered %s[%d]@%d: %s", msg.topic, msg.partition, msg.offset, letter.error[:300])


def register_agents(app: faust.App, settings: Settings, topics: Topics) -> dict[str, InputValidator]:
    validators = {}
    for event_type, topic in topics.inputs.items():
        validator = InputValidator(event_type, topics)
        validators[event_type] = validator

        async def consume(stream: faust.StreamT, validator: InputValidator = validator) -> None:
            async for event in stream.events():
                parsed = await validator.validate(event)
                if parsed is not None:
                    log.info("valid %s event %s at %s", parsed.type, parsed.event_id,
                             parsed.timestamp.isoformat())

        # faust names agents after the function: give each its own name or they collide.
        consume.__name__ = consume.__qualname__ = f"validate_{event_type}"
        app.agent(topic, name=f"segstream.{event_type}", concurrency=1)(consume)
    return validators
