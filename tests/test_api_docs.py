"""Every field of the worker's HTTP documents is said in docs/integration.md, in its endpoint's row."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from types import SimpleNamespace

from models.config import EngineConfig
from models.pipeline import Pipeline
from streams.documents import readiness_document
from streams.training import TrainerHost

ROOT = Path(__file__).resolve().parent.parent


def endpoint_row(endpoint: str) -> str:
    """The table row of ``endpoint`` in docs/integration.md."""
    [row] = [line for line in (ROOT / "docs/integration.md").read_text().splitlines()
             if line.startswith(f"| `{endpoint}` |")]
    return row


def keys(doc: dict) -> set[str]:
    """Every key of ``doc``, nested objects' keys included."""
    found = set(doc)
    for value in doc.values():
        if isinstance(value, dict):
            found |= keys(value)
    return found


def test_every_field_of_the_readiness_document_is_documented() -> None:
    """On the trainer, with its status: ``pending_updates`` was in no document."""
    trainer = TrainerHost(EngineConfig(), "wall", train_interval_s=60, refill_wait_s=30,
                          listener=SimpleNamespace(started=asyncio.Event(), latest=None))  # type: ignore[arg-type]
    trainer._ensure()  # the role, as the first trainer-samples message gives it
    done = asyncio.Event()
    done.set()
    rt = SimpleNamespace(
        app=SimpleNamespace(tables=SimpleNamespace(recovery=SimpleNamespace(completed=done, active_remaining_total=lambda: 0)),
                             consumer=object()),
        listener=SimpleNamespace(started=done), active_partitions=lambda: {0, 1},
        pipeline=Pipeline(EngineConfig()), is_trainer=lambda: True, trainer=trainer,
        clock=SimpleNamespace(now=lambda: 1_767_225_600.0, input_watermark=float("inf")),
    )
    doc = readiness_document(rt)  # type: ignore[arg-type]
    assert doc["trainer_status"] is not None and "pending_updates" in doc["trainer_status"]
    documented = set(re.findall(r"`([a-z_]+)`", endpoint_row("GET /ready")))
    assert keys(doc) - documented == set()


def test_every_profile_trait_field_of_the_customer_document_is_documented() -> None:
    """The traits and the fields made from them (issue #21), in docs/integration.md's customer lookups."""
    import orjson

    from models.state import CustomerState
    from models.traits import TRAIT_NAMES
    from schemas.events import parse_event

    pipeline = Pipeline(EngineConfig())
    state = CustomerState("c1")
    state.apply(parse_event(orjson.dumps({"type": "profile", "event_id": "p1", "customer_id": "c1",
                                          "timestamp": "2026-01-01T00:00:00Z", "country": "DE"})),
                EngineConfig().value)
    doc = pipeline.profile(state, 1_767_225_600.0)
    fields = {*TRAIT_NAMES, "age", "reachable", "cluster", "recent_spend", "recent_spend_days", "bought_in_period",
              "bought_in_previous_period"}
    assert fields <= set(doc)
    text = (ROOT / "docs/integration.md").read_text()
    section = text[text.index("## Customer lookups"):]
    assert {f for f in fields if f"`{f}`" not in section} == set()
