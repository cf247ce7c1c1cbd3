"""Contracts of the worker's internal topics: written and read only by segstream workers, but a
message there can still be damaged, be left by an older version or be written by hand, so each is
a typed model like the input contracts (a bad one is dead-lettered naming the field).

* ``reevaluate``: :class:`ReevaluationBatch`, one batch of the clock-driven sweep for one
  partition (:mod:`streams.sweep`);
* ``trainer-samples``: :class:`TrainerSamples`, sampled customers' feature bases for the trainer
  and the customers to forget (:mod:`streams.sampling`).

>>> batch = ReevaluationBatch(customers=["c1", "c2"], sweep_pass=3, end=True, sweeper="9f3c")
>>> batch.to_json()
b'{"customers":["c1","c2"],"pass":3,"end":true,"sweeper":"9f3c"}'
>>> parse_reevaluation(batch.to_json()).sweep_pass
3
>>> parse_reevaluation(b'{"customers": "c1"}')
Traceback (most recent call last):
...
schemas.events.EventValidationError: customers: Input should be a valid array
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import EventValidationError, FieldProblem, Identifier

__all__ = ["ReevaluationBatch", "TrainerSamples", "parse_reevaluation", "parse_trainer_samples"]


class ReevaluationBatch(BaseModel):
    """Customers of one partition to re-evaluate as of the worker's clock (topic ``reevaluate``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    customers: list[Identifier] = Field(description="Customer ids (the table's keys) of the partition.")
    sweep_pass: int = Field(0, alias="pass", ge=0, description="The sweep pass the batch belongs to.")
    end: bool = Field(False, description="The partition's last batch of this pass: its segment populations are "
                                         "complete.")
    sweeper: str | None = Field(None, max_length=64, description="The sending worker's sweeper (random per "
                                "process): a worker counts populations from its own passes only.")

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()


class TrainerSamples(BaseModel):
    """Sampled customers' feature bases and customers to forget (topic ``trainer-samples``).

    ``samples``: ``[customer_id, basis]`` pairs, ``basis`` being
    :meth:`models.features.FeatureBasis.to_list`; ``clock``: the sending worker's clock (epoch
    seconds; None before it has seen an event)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    clock: float | None = None
    samples: list[tuple[Identifier, list]] = Field(default_factory=list)
    forget: list[Identifier] = Field(default_factory=list)

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def parse_reevaluation(raw: bytes) -> ReevaluationBatch:
    """Raises :class:`~schemas.events.EventValidationError` naming each bad field."""
    return _parse(ReevaluationBatch, raw)


def parse_trainer_samples(raw: bytes) -> TrainerSamples:
    """Raises :class:`~schemas.events.EventValidationError` naming each bad field."""
    return _parse(TrainerSamples, raw)


def _parse(model: type[BaseModel], raw: bytes):  # noqa: ANN202
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        problems = EventValidationError.from_pydantic(exc).problems
        raise EventValidationError(problems or [FieldProblem(field="", error="invalid", message=str(exc))]) from None
