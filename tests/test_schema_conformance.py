"""The runtime validators and the published JSON Schemas (schemas/json/*.schema.json) accept exactly
the same documents, and blame the same fields.

Documents are generated **from the exported schema files**: valid ones by walking the schema
(:func:`valid`), invalid ones by replacing, removing or adding one field of a valid document with
values chosen to sit on each constraint's edge (:func:`mutated`). Each is judged by
``jsonschema``'s Draft 2020-12 validator with format checking (``rfc3339-validator`` for
``date-time``) and by the runtime parser (``parse_event`` for the topic, ``parse_erasure``); both
verdicts must agree, and when rejected the top-level fields each one blames must be the same.

(``hypothesis-jsonschema`` was the first choice for generating; its latest release, 0.23.1, fails
on the Hypothesis this project runs: "'many' object has no attribute 'more'". The walker below
covers the keywords the exported schemas use, and fails loudly on any other.)

What a JSON Schema cannot see, and is therefore checked elsewhere: a key written twice (the
parsed document has one; tests/test_json_keys.py) and strings that are not Unicode (a lone
surrogate escape, ``"\\ud800"``: RFC 8259 section 8.2 leaves them to the parser, the runtime rejects them).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from schemas.dead_letter import DeadLetter
from schemas.erasure import parse_erasure
from schemas.events import EventValidationError, parse_event, parse_output
from schemas.segment_change import SegmentChange

OUTPUTS = {"segment_change": SegmentChange, "dead_letter": DeadLetter}
SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas/json"
SUPPORTED = {"$schema", "$id", "$defs", "$ref", "title", "description", "default", "type", "properties",
             "required", "additionalProperties", "enum", "const", "anyOf", "oneOf", "allOf", "if", "then",
             "pattern", "minLength", "maxLength", "minimum", "maximum", "maxItems", "maxProperties", "items",
             "format", "discriminator"}


def load(name: str) -> dict:
    return json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())


# ---- the runtime side ----------------------------------------------------------------------------

def runtime(name: str) -> Callable[[str], None]:
    if name in ("purchase", "engagement", "feedback", "profile"):
        return lambda raw: parse_event(raw, expected_type=name)  # the worker's check on that topic
    if name == "event":
        return lambda raw: parse_event(raw)  # the replay's check (one file, every type)
    if name == "erasure":
        return lambda raw: parse_erasure(raw)
    if name in OUTPUTS:
        return lambda raw: parse_output(OUTPUTS[name], raw)  # how segstream tail reads them
    raise ValueError(name)


def runtime_fields(name: str, raw: str) -> set[str] | None:
    """None when the runtime accepts the document, else the top-level fields it blames."""
    try:
        runtime(name)(raw)
    except EventValidationError as exc:
        return {p.field.split(".")[0] for p in exc.problems}
    return None


# ---- the JSON Schema side ------------------------------------------------------------------------

_NAMED = re.compile(r"'([^']*)'")


def schema_fields(validator: Draft202012Validator, doc: Any) -> set[str] | None:
    """None when the schema accepts the document, else the top-level fields its errors are about."""
    errors = list(validator.iter_errors(doc))
    if not errors:
        return None
    fields: set[str] = set()
    for error in errors:
        if error.absolute_path:
            fields.add(str(error.absolute_path[0]))
        elif error.validator in ("required", "additionalProperties"):
            # "'score' is a required property"; "Additional properties ... ('a', 'b' were unexpected)"
            fields.update(_NAMED.findall(error.message.split("(")[-1] if "(" in error.message else error.message))
        else:
            fields.add("")  # the document as a whole (not an object, no branch of a oneOf)
    return fields


# ---- valid documents, from the schema ------------------------------------------------------------

def _resolve(node: dict, root: dict) -> dict:
    while "$ref" in node:
        node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
    return node


def valid(node: dict, root: dict) -> st.SearchStrategy[Any]:
    """Documents the schema ``node`` accepts (walking the keywords our exported schemas use)."""
    assert set(node) <= SUPPORTED, set(node) - SUPPORTED
    node = _resolve(node, root)
    if "const" in node:
        return st.just(node["const"])
    if "enum" in node:
        return st.sampled_from(node["enum"])
    if "anyOf" in node or "oneOf" in node:
        return st.one_of([valid(branch, root) for branch in node.get("anyOf", node.get("oneOf"))])
    kind = node["type"]
    if kind == "object":
        return _valid_object(node, root)
    if kind == "array":
        return st.lists(valid(node["items"], root), max_size=min(node.get("maxItems", 3), 3))
    if kind == "string":
        if node.get("format") == "date-time":
            return timestamps()
        text = st.from_regex(node["pattern"]) if "pattern" in node else st.text(max_size=20)
        return text.filter(lambda s: node.get("minLength", 0) <= len(s) <= node.get("maxLength", 10**9))
    if kind == "integer":
        ints = st.integers(node.get("minimum"), node.get("maximum"))
        return ints | ints.filter(lambda i: abs(i) < 2**53).map(float)  # 2.0 is an integer too
    if kind == "number":
        lo, hi = node.get("minimum"), node.get("maximum")
        return st.floats(lo, hi, allow_nan=False, allow_infinity=False) | st.integers(
            None if lo is None else int(lo), None if hi is None else int(hi))
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    raise AssertionError(f"unsupported schema {node}")


def _valid_object(node: dict, root: dict) -> st.SearchStrategy[dict]:
    props, required = node.get("properties", {}), set(node.get("required", []))

    @st.composite
    def build(draw: st.DrawFn) -> dict:
        doc = {key: draw(valid(sub, root)) for key, sub in props.items() if key in required or draw(st.booleans())}
        extra = node.get("additionalProperties")
        if isinstance(extra, dict):
            keys = draw(st.lists(st.text(max_size=8), unique=True, max_size=min(node.get("maxProperties", 3), 3)))
            doc.update({k: draw(valid(extra, root)) for k in keys})
        for rule in node.get("allOf", []):  # if/then: the "then" part decides the fields it names
            if Draft202012Validator(rule["if"]).is_valid(doc):
                then = rule["then"]
                for key, sub in then.get("properties", {}).items():
                    if key in then.get("required", []) or key in doc:
                        doc[key] = draw(valid(sub, root))
        return doc

    return build()


def timestamps() -> st.SearchStrategy[str]:
    """RFC 3339 date-times in every accepted spelling: fractions of 0-9 digits, any offset, t/z case."""
    utc = st.datetimes(datetime(1990, 1, 2), datetime(2099, 12, 30), timezones=st.just(timezone.utc))
    offsets = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timedelta(minutes=m))

    def spell(at: datetime, offset: timedelta | None, digits: int, lower: bool) -> str:
        local = at if offset is None else at.astimezone(timezone(offset))
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
        if digits:
            text += "." + f"{local.microsecond:06d}{'123'}"[:digits]
        if offset is None:
            text += "Z"
        else:
            sign, minutes = ("-" if offset < timedelta(0) else "+"), abs(int(offset.total_seconds())) // 60
            text += f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
        return text.lower() if lower else text

    return st.builds(spell, utc, st.none() | offsets, st.integers(0, 9), st.booleans())


# ---- invalid documents: one field changed --------------------------------------------------------

EDGE_STRINGS = [
    "", " ", "c1\n", "c 1", "\u00e9", "x" * 129, "usd", "USD\n", "US", "USDX", "2", "1781085600",
    "2026-06-01T10:00:00+0530", "2026-06-02 10:00:00+05:30", "2026-06-02_10:00:00Z", "2026-06-07T10:00:00",
    "2026-06-08", "2026-06-09T10:00:00+24:00", "2026-06-10T24:00:00Z", "2026-06-30T23:59:60Z",
    "2026-02-30T10:00:00Z", "2026-06-01T10:00:00Z\n", "1989-12-31T23:59:59Z", "2100-01-01T00:00:00Z",
    "2026-06-01T10:00:00.Z", "purchase", "engagement", "feedback", "nps", "review", "complaint", "web",
    "page_view", "teleport",
]
EDGE_NUMBERS = [0, 0.0, -0.0, 1, 1.0, 1.5, 2.0, -1, 5, 6, 10, 10.0, 11, 1e9, 1e9 + 0.5, -1e9, -1e9 - 1,
                1_000_000, 1_000_001, 86_400, 86_400.5, 2**63, 1e300, -5e-324]
EDGE_OTHERS = [None, True, False, [], {}, [1], {"a": 1}]
edge_values = st.sampled_from(EDGE_STRINGS + EDGE_NUMBERS + EDGE_OTHERS) | st.text(max_size=5) | timestamps()


def mutated(schema: dict) -> st.SearchStrategy[Any]:
    base = valid(schema, schema)

    @st.composite
    def change(draw: st.DrawFn) -> Any:
        doc = draw(base)
        if not isinstance(doc, dict) or draw(st.integers(0, 20)) == 0:
            return draw(edge_values)  # the whole document
        fields = sorted(set(doc) | set(_resolve(schema, schema).get("properties", {})) | {"type", "coupon"})
        key = draw(st.sampled_from(fields))
        if key in doc and draw(st.integers(0, 5)) == 0:
            del doc[key]
        elif key == "cutoff":
            doc[key] = {draw(st.text(max_size=3)): [draw(edge_values)]}
        else:
            doc[key] = draw(edge_values)
        return doc

    return change()


# ---- the tests -----------------------------------------------------------------------------------

NAMES = ["purchase", "engagement", "feedback", "profile", "event", "erasure", "segment_change", "dead_letter"]
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.filter_too_much])


def judge(name: str, doc: Any) -> tuple[set[str] | None, set[str] | None]:
    schema = load(name)
    validator = Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)
    raw = json.dumps(doc, allow_nan=False)
    return schema_fields(validator, doc), runtime_fields(name, raw)


@pytest.mark.parametrize("name", NAMES)
def test_every_document_the_schema_generates_is_accepted_by_both(name: str) -> None:
    @SETTINGS
    @given(valid(load(name), load(name)))
    def check(doc: Any) -> None:
        by_schema, by_runtime = judge(name, doc)
        assert by_schema is None, f"the generator made an invalid document: {doc} ({by_schema})"
        assert by_runtime is None, f"runtime rejects {by_runtime} of a schema-valid document: {doc}"

    check()


@pytest.mark.parametrize("name", NAMES)
def test_a_document_with_one_field_changed_gets_the_same_verdict_on_the_same_fields(name: str) -> None:
    @SETTINGS
    @given(mutated(load(name)))
    def check(doc: Any) -> None:
        by_schema, by_runtime = judge(name, doc)
        assert (by_schema is None) == (by_runtime is None), (
            f"schema {'accepts' if by_schema is None else f'rejects {by_schema}'}, runtime "
            f"{'accepts' if by_runtime is None else f'rejects {by_runtime}'}: {json.dumps(doc)}")
        if by_schema is not None and name != "event" and "" not in by_schema:  # event: a oneOf, no field
            assert by_schema == by_runtime, f"schema blames {by_schema}, runtime {by_runtime}: {json.dumps(doc)}"

    check()


# ---- each disagreement found, fixed, and kept fixed ----------------------------------------------

P = {"type": "purchase", "event_id": "e1", "customer_id": "c1", "timestamp": "2026-05-01T10:00:00Z", "amount": 5}
F = {"type": "feedback", "event_id": "f1", "customer_id": "c1", "timestamp": "2026-05-01T10:00:00Z", "kind": "nps",
     "score": 9}
E = {"customer_id": "c1", "request_id": "r1", "requested_at": "2026-01-01T00:00:00Z"}
C = {"change_id": "x", "customer_id": "c1", "kind": "rule", "previous_segment": None,
     "segment": {"id": "s", "label": "s"}, "changed_at": "2026-06-01T10:00:00Z", "model_version": None,
     "definition_version": None, "reason": {"code": "rule_entered"},
     "value": {"purchase_count": 3, "total_spend": 30, "frequency": 2, "recency_days": 4.5, "monetary_value": 10.0,
               "p_alive": None, "clv": None, "nps": None}}
DROP = object()


def doc(base: dict, **changes: Any) -> dict:
    return {k: v for k, v in {**base, **changes}.items() if v is not DROP}


FOUND: list[tuple[str, dict, set[str] | None, str]] = [
    ("purchase", doc(P, type=DROP), {"type"}, "type was optional in the schema; every topic requires it"),
    ("event", doc(P, type=DROP), {""}, "a oneOf branch matched a document without type"),
    ("engagement", doc(P), {"type", "amount", "action"}, "a purchase on the engagements topic: was judged as a "
                                                         "purchase (blaming action), now as the topic's type"),
    ("purchase", {}, {"type", "event_id", "customer_id", "timestamp", "amount"}, "without type the runtime named "
                                                                                 "only type"),
    ("purchase", doc(P, quantity=2.0), None, "2.0 is a JSON Schema integer; the strict int refused it"),
    ("feedback", doc(F, score=9.0), None, "same, for score"),
    ("erasure", doc(E, cutoff={"t": [3.0]}), None, "same, for an offset"),
    ("feedback", doc(F, score=11), {"score"}, "score ranges per kind were not in the schema"),
    ("feedback", doc(F, kind="csat", score=0), {"score"}, "same"),
    ("feedback", doc(F, score=DROP), {"score"}, "nps needs a score: not in the schema"),
    ("feedback", doc(F, kind="complaint", score=3), {"score"}, "a complaint carries no score: not in the schema"),
    ("feedback", doc(F, kind="complaint", score=None), None, "an explicit null is no score"),
    ("purchase", doc(P, customer_id="c1\n"), {"customer_id"}, "Python's $ matches before a final newline"),
    ("purchase", doc(P, currency="USD\n"), {"currency"}, "same"),
    ("erasure", doc(E, request_id="r1\n"), {"request_id"}, "same"),
    ("purchase", doc(P, timestamp="2026-05-01T10:00:00Z\n"), {"timestamp"}, "same, date-time format"),
    ("purchase", doc(P, timestamp="1989-12-31T23:59:59Z"), {"timestamp"}, "the year range was not in the schema"),
    ("purchase", doc(P, timestamp="2026-06-30T23:59:60Z"), {"timestamp"}, "leap second: refused by both"),
    ("purchase", doc(P, timestamp="2026-06-01T10:00:00+0530"), {"timestamp"}, "case 07"),
    ("purchase", doc(P, timestamp=1781085600), {"timestamp"}, "case 07"),
    ("erasure", doc(E, requested_at="2026-01-01 00:00:00Z"), {"requested_at"}, "case 07, erasures"),
    ("segment_change", doc(C, model_version="3"), {"model_version"}, "read back laxly, \"3\" was 3"),
    ("segment_change", doc(C, kind=None), {"kind"}, "a guard: null is no kind"),
    ("segment_change", doc(C, model_version=3.0), None, "3.0 is an integer (outputs too)"),
    ("segment_change", doc(C, changed_at=1781085600), {"changed_at"}, "read back laxly, an epoch was a time"),
]


@pytest.mark.parametrize("name,document,fields,why", FOUND, ids=[f"{n}-{i}" for i, (n, *_) in enumerate(FOUND)])
def test_each_disagreement_found_is_fixed(name: str, document: dict, fields: set[str] | None, why: str) -> None:
    by_schema, by_runtime = judge(name, document)
    assert by_schema == fields, why
    if name == "event" and fields:
        assert by_runtime is not None, why
    else:
        assert by_runtime == fields, why
