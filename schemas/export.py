"""Export the contracts as JSON Schema files in ``schemas/json/``.

The files are the contract other teams read; ``tests/test_schema_files.py`` fails when they
drift from the pydantic models. Regenerate with ``segstream schemas export``.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from schemas.dead_letter import DeadLetter
from schemas.erasure import ErasureRequest
from schemas.events import EngagementEvent, FeedbackEvent, ProfileEvent, PurchaseEvent, event_json_schema
from schemas.segment_change import SegmentChange

SCHEMA_DIR = Path(__file__).resolve().parent / "json"


def _with_id(name: str, schema: dict) -> dict:
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"segstream/{name}.schema.json", **schema}


def all_schemas() -> dict[str, dict]:
    """File stem -> JSON Schema document."""
    docs = {
        "purchase": PurchaseEvent.model_json_schema(),
        "engagement": EngagementEvent.model_json_schema(),
        "feedback": FeedbackEvent.model_json_schema(),
        "profile": ProfileEvent.model_json_schema(),
        "event": event_json_schema(),
        "segment_change": SegmentChange.model_json_schema(),
        "dead_letter": DeadLetter.model_json_schema(),
        "erasure": ErasureRequest.model_json_schema(),
    }
    return {name: _with_id(name, doc) for name, doc in docs.items()}


def render(schema: dict) -> bytes:
    return orjson.dumps(schema, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def export(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in all_schemas().items():
        path = directory / f"{name}.schema.json"
        path.write_bytes(render(schema))
        written.append(path)
    return written


if __name__ == "__main__":
    for p in export():
        print(p)
