"""Output contract: a message that could not be applied, with where it came from and why.

Nothing is dropped silently: every rejected input lands here, keyed like its source message.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import FieldProblem, Whole
from schemas.timestamps import Timestamp


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    topic: str
    partition: Whole | None = None
    offset: Whole | None = None
    key: str | None = Field(None, description="The message key, decoded as UTF-8 with replacement "
                            "(cut at 1 KiB: real keys are customer ids of at most 128 characters).")
    key_size: Whole | None = Field(None, description="Bytes of the original key.")

    MAX_KEY: ClassVar[int] = 1024

    @classmethod
    def of(cls, topic: str, partition: int | None, offset: int | None, key: bytes | None) -> "Source":
        return cls(topic=topic, partition=partition, offset=offset,
                   key=key[: cls.MAX_KEY].decode("utf-8", "replace") if key is not None else None,
                   key_size=len(key) if key is not None else None)


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    payload: str = Field(description="The raw message: text if it was valid UTF-8, else base64.")
    payload_encoding: str = Field(description="'utf-8' or 'base64'.")
    payload_size: Whole = Field(description="Bytes of the original message (payload may be truncated).")
    source: Source
    error: str = Field(description="One line saying why, naming the offending fields.")
    problems: list[FieldProblem]
    dead_lettered_at: Timestamp

    #: Larger payloads are cut, so one hostile message cannot blow the dead-letter topic's limits.
    MAX_PAYLOAD: ClassVar[int] = 64 * 1024

    @classmethod
    def encode_payload(cls, raw: bytes) -> tuple[str, str]:
        raw = raw[: cls.MAX_PAYLOAD]
        try:
            return raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            return base64.b64encode(raw).decode("ascii"), "base64"


def dead_letter_for(
    raw: bytes | None, source: Source, problems: list[FieldProblem], at: datetime
) -> DeadLetter:
    """Build the dead-letter record for a rejected message."""
    raw = raw or b""
    payload, encoding = DeadLetter.encode_payload(raw)
    return DeadLetter(
        payload=payload,
        payload_encoding=encoding,
        payload_size=len(raw),
        source=source,
        error="; ".join(f"{p.field or '<message>'}: {p.message}" for p in problems),
        problems=problems,
        dead_lettered_at=at,
    )
