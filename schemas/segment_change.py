"""Output contract: a customer entered, left or moved between segments, and why.

Published on the segment-changes topic, keyed by ``customer_id``. ``change_id`` is deterministic
(derived from the customer and the per-customer change sequence number), so a change re-emitted
after a worker restart carries the same id and consumers can drop it by ``change_id``.
"""

from __future__ import annotations

import uuid
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from schemas.events import Whole
from schemas.timestamps import Timestamp

_CHANGE_NS = uuid.UUID("6f1c1a52-8f0b-4c55-9d1e-2b7e4a0d9c11")


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SegmentKind(str, Enum):
    cluster = "cluster"  # exactly one per customer, from the online clustering model
    rule = "rule"  # zero or more per customer, from declarative rule definitions


class ReasonCode(str, Enum):
    first_assignment = "first_assignment"
    better_fit = "better_fit"  # another cluster is closer by more than the hysteresis margin
    dwell_elapsed = "dwell_elapsed"  # closer for longer than the dwell period
    segment_retired = "segment_retired"  # the customer's segment left the model
    rule_entered = "rule_entered"
    rule_left = "rule_left"
    erased = "erased"  # the customer's data was erased on request


class SegmentRef(_Output):
    id: str = Field(description="Stable segment id, e.g. 'c3' for a cluster or 'vip_at_risk' for a rule.")
    label: str = Field(description="Human-readable label, e.g. 'high value · frequent · recent': each word backed "
                       "by the segment's figures (docs/segmentation.md); a segment retired from the model keeps its "
                       "last label.")


class Reason(_Output):
    code: ReasonCode
    details: dict[str, Any] = Field(
        default_factory=dict,
        description="For clusters: distances and the drivers (features on which the customer stands out and the "
        "segments differ, each with its figure, the segments' typical values and the population median); "
        "for rules: the clauses that turned true or false.",
    )


class ValueSummary(_Output):
    """A compact view of the customer's value at the time of the change."""

    purchase_count: Whole
    total_spend: float
    frequency: Whole = Field(description="BTYD repeat purchase days.")
    recency_days: float | None = Field(description="Days since the last purchase, as of changed_at.")
    monetary_value: float
    p_alive: float | None
    clv: float | None
    nps: Whole | None


class SegmentChange(_Output):
    change_id: str = Field(description="Unique and deterministic: consumers deduplicate on it.")
    customer_id: str
    kind: SegmentKind
    previous_segment: SegmentRef | None = Field(description="None on first assignment / rule entry.")
    segment: SegmentRef | None = Field(description="None when the customer left (rule exit, erasure).")
    changed_at: Timestamp
    model_version: Whole | None = Field(description="Version of the cluster model snapshot used.")
    definition_version: str | None = Field(description="Version (hash) of the rule definitions used.")
    reason: Reason
    value: ValueSummary | None = Field(description="Absent only for erasures.")

    @staticmethod
    def make_id(customer_id: str, sequence: int, incarnation: int = 0) -> str:
        """Same customer, incarnation and per-customer sequence number -> same id, across restarts.

        The incarnation tells apart the lives of a customer id: after an erasure the sequence
        starts again, and without it a returning customer's changes would reuse old ids (and be
        dropped by consumers that deduplicate).
        """
        return str(uuid.uuid5(_CHANGE_NS, f"{customer_id}\x1f{incarnation:x}\x1f{sequence}"))

