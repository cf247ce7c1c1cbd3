"""Forwarding sampled customers to the group's trainer.

Each worker sees only its own partitions' customers, so it offers the feature bases of customers
in the trainer's bottom-k sample (their id hash at or below the threshold the latest model
carries) and sends them in batches, newest basis per customer. Traffic to the trainer is about
``sample_size / customers`` of the event rate, not the event rate.
"""

from __future__ import annotations

from models.clustering import in_sample
from models.features import FeatureBasis
from schemas.internal import TrainerSamples, parse_trainer_samples

#: Customers per trainer message: keeps a message far below Kafka's 1 MB default.
CHUNK = 2000


class SampleForwarder:
    def __init__(self) -> None:
        self.threshold: int | None = None  # None: the trainer's sample is not full, send everyone
        self._pending: dict[str, FeatureBasis] = {}
        self._forget: set[str] = set()
        self.sent = 0

    def offer(self, customer_id: str, basis: FeatureBasis) -> None:
        if in_sample(customer_id, self.threshold):
            self._pending[customer_id] = basis
            self._forget.discard(customer_id)

    def forget(self, customer_id: str) -> None:
        self._pending.pop(customer_id, None)
        self._forget.add(customer_id)

    def __len__(self) -> int:
        return len(self._pending) + len(self._forget)

    def drain(self, clock: float | None) -> list[bytes]:
        """The pending updates as trainer messages (and forget them here)."""
        items = list(self._pending.items())
        forget = sorted(self._forget)
        self._pending.clear()
        self._forget.clear()
        messages = []
        for start in range(0, max(len(items), 1), CHUNK):
            chunk = items[start:start + CHUNK]
            if not chunk and not forget:
                break
            messages.append(encode_samples(chunk, forget if start == 0 else [], clock))
        self.sent += len(items)
        return messages


def encode_samples(samples: list[tuple[str, FeatureBasis]], forget: list[str], clock: float | None) -> bytes:
    """The message on ``trainer-samples`` (its contract: :class:`schemas.internal.TrainerSamples`)."""
    return TrainerSamples(clock=clock, samples=[(cid, b.to_list()) for cid, b in samples], forget=forget).to_json()


def decode_samples(raw: bytes) -> tuple[list[tuple[str, FeatureBasis]], list[str], float | None]:
    """Raises :class:`schemas.events.EventValidationError` for a message that breaks the contract."""
    doc = parse_trainer_samples(raw)
    return [(cid, FeatureBasis.from_list(values)) for cid, values in doc.samples], list(doc.forget), doc.clock
