"""The committed JSON Schema files are the public contract: they must match the models."""

from __future__ import annotations

import orjson
import pytest

from schemas.export import SCHEMA_DIR, all_schemas, render


@pytest.mark.parametrize("name", sorted(all_schemas()))
def test_committed_schema_matches_the_model(name: str) -> None:
    path = SCHEMA_DIR / f"{name}.schema.json"
    assert path.exists(), f"{path} missing: run 'segstream schemas export'"
    assert path.read_bytes() == render(all_schemas()[name]), (
        f"{path.name} drifted from the pydantic model: run 'segstream schemas export' and review the diff"
    )


def test_no_stray_schema_files() -> None:
    on_disk = {p.name.removesuffix(".schema.json") for p in SCHEMA_DIR.glob("*.schema.json")}
    assert on_disk == set(all_schemas())


def test_input_schemas_keep_the_public_field_names() -> None:
    schemas = all_schemas()
    assert set(schemas["purchase"]["properties"]) == {
        "type", "event_id", "customer_id", "timestamp", "amount", "currency", "quantity", "channel", "order_id"}
    assert set(schemas["engagement"]["properties"]) == {
        "type", "event_id", "customer_id", "timestamp", "action", "channel", "duration_s"}
    assert set(schemas["feedback"]["properties"]) == {
        "type", "event_id", "customer_id", "timestamp", "kind", "score", "text"}
    assert set(schemas["profile"]["properties"]) == {
        "type", "event_id", "customer_id", "timestamp", "country", "region", "city", "postal_code", "time_zone",
        "birth_year", "household_size", "income_band", "education", "occupation", "interests", "lifestyle",
        "industry", "company_size", "acquisition_channel", "acquisition_campaign", "acquisition_cost", "currency",
        "consent"}
    change = schemas["segment_change"]["properties"]
    for field in ("change_id", "customer_id", "previous_segment", "segment", "changed_at",
                  "model_version", "definition_version", "reason", "value"):
        assert field in change


def test_schema_files_are_valid_json() -> None:
    for path in SCHEMA_DIR.glob("*.schema.json"):
        assert orjson.loads(path.read_bytes())["$id"].endswith(path.name)
