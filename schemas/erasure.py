"""Erase request: delete everything segstream keeps about one customer (right to erasure).

Sent to the ``erasures`` topic keyed by ``customer_id`` (or made with ``DELETE /customers/{id}``
on any worker). The worker owning the customer deletes its state, drops it from the model's
training sample and emits one segment exit with reason ``erased`` per segment it was in.

>>> req = parse_erasure(b'{"customer_id": "c1", "request_id": "r1", "requested_at": "2026-01-01T00:00:00Z"}')
>>> req.customer_id, req.requested_at.year
('c1', 2026)
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import WHOLE, EventValidationError, Identifier, duplicate_key_problem
from schemas.timestamps import Timestamp


class ErasureRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    customer_id: Identifier = Field(description="Also the Kafka message key.")
    request_id: Identifier = Field(description="The requester's reference, echoed in logs and details.")
    requested_at: Timestamp
    cutoff: dict[str, Annotated[list[Annotated[int, Field(ge=0), WHOLE]], Field(max_length=10_000)]] | None = Field(
        None, max_length=64,
        description="When the request was accepted: each input topic's end offsets, one per partition (and "
                    "the repartition topic's, to read forwarded events again). Every event of the customer "
                    "before them is erased, whenever it is consumed; none after them. "
                    "Set by DELETE /customers/{id}; without it, the worker takes the end offsets when it "
                    "reaches the request.")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def parse_erasure(raw: bytes | str) -> ErasureRequest:
    # Erasures are rare: the full duplicate-key check every time (the cutoff nests objects).
    repeated = duplicate_key_problem(raw)
    try:
        request = ErasureRequest.model_validate_json(raw)
    except ValidationError as exc:
        error = EventValidationError.from_pydantic(exc)
        raise (EventValidationError([repeated, *error.problems]) if repeated else error) from None
    if repeated is not None:
        raise EventValidationError([repeated])
    return request


def erasure_now(customer_id: str, request_id: str, cutoff: dict[str, list[int]] | None = None) -> ErasureRequest:
    from datetime import timezone

    return ErasureRequest(customer_id=customer_id, request_id=request_id,
                          requested_at=datetime.now(timezone.utc), cutoff=cutoff)
