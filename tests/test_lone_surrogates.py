"""A ``\\uXXXX`` escape of a lone UTF-16 surrogate is rejected saying so, wherever JSON is read:
the contracts' parser (``segstream replay``, the worker's dead letters) and ``segstream produce``.
The parsers' own words ("unexpected end of hex escape") sent a new user looking for a cut-off
escape. Other JSON errors keep their words; a surrogate pair is one character and parses."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from schemas.dead_letter import Source, dead_letter_for
from schemas.events import EventValidationError, FieldProblem, parse_event
from schemas.json_escapes import lone_surrogate
from streams.processor import InMessage
from streams.producer import route_line
from tests.test_field_cases import TOPICS, Worker

ROOT = Path(__file__).resolve().parent.parent
PREFIX = '{"type":"purchase","event_id":"e1","customer_id":"c'  # the customer id's escapes start at column 52
SUFFIX = '","timestamp":"2026-01-01T00:00:00Z","amount":1}'
WHY = "a lone UTF-16 surrogate is not a character"

# customer id written (after "c") -> the lone escape named: what orjson and pydantic word otherwise
LONE = {
    r"\ud800": r"\ud800",  # a high half then the string's end ("unexpected end of hex escape")
    r"\udc00": r"\udc00",  # a low half first ("lone leading surrogate", "invalid high surrogate")
    r"\ud800\u0041": r"\ud800",  # a high half then another escape ("invalid low surrogate")
    r"\ud800\ud800": r"\ud800",
    r"\ud800\n": r"\ud800",
    r"\ud800x": r"\ud800",
    r"\uDC00\uD800": r"\uDC00",  # as written, in capitals
}


def purchase(customer_text: str) -> bytes:
    return (PREFIX + customer_text + SUFFIX).encode()


def feedback(text: str) -> bytes:
    return ('{"type":"feedback","event_id":"f1","customer_id":"c1","timestamp":"2026-01-01T00:00:00Z",'
            '"kind":"review","score":5,"text":"' + text + '"}').encode()


@pytest.mark.parametrize(("text", "found"), [
    (r'"\ud800"', (r"\ud800", 1, 2)),
    (r'"\ud83d\ude00 \udc00"', (r"\udc00", 1, 15)),  # a pair, then a lone low half
    ('{"a":"x",\n"b":"\\ud83d"}', (r"\ud83d", 2, 6)),  # column on its own line
    (r'"\ud83d\ude00"', None),
    (r'"\uD83D\uDE00"', None),
    (r'"C:\\ud800"', None),  # an escaped backslash, then text
    (r'"\ud800 \udc00"', (r"\ud800", 1, 2)),  # the halves of a pair are written together
])
def test_a_lone_surrogate_escape_is_found_with_where_it_starts(text: str, found: tuple | None) -> None:
    assert lone_surrogate(text) == found
    assert lone_surrogate(text.encode()) == found


@pytest.mark.parametrize("written", LONE)
def test_the_contract_parser_names_the_lone_surrogate_not_a_cut_off_escape(written: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(purchase(written))
    assert caught.value.problems == [FieldProblem(
        field="", error="json_invalid",
        message=f"Invalid JSON: invalid {LONE[written]} escape at line 1 column 52: {WHY}")]


@pytest.mark.parametrize(("raw", "message"), [
    (purchase(r"\ud800\u12"), "Invalid JSON: invalid escape at line 1 column 62"),  # the \u12 is the error
    (purchase(r"\ud8"), "Invalid JSON: invalid escape at line 1 column 56"),
    (PREFIX.encode() + rb"\ud8", "Invalid JSON: EOF while parsing a string at line 1 column 55"),
])
def test_other_json_errors_keep_their_words(raw: bytes, message: str) -> None:
    with pytest.raises(EventValidationError) as caught:
        parse_event(raw)
    assert [p.message for p in caught.value.problems] == [message]


def test_a_surrogate_pair_is_one_character() -> None:
    event = parse_event(feedback(r"great \ud83d\ude00"))
    assert event.text == "great \U0001f600"  # type: ignore[union-attr]
    assert isinstance(route_line(feedback(r"great \ud83d\ude00"), {"feedback": "fb"}), tuple)


def test_the_worker_dead_letters_it_with_that_reason() -> None:
    worker = Worker()
    raw = purchase(r"\ud800")
    asyncio.run(worker.processor.handle_batch([InMessage(TOPICS.input_topics["purchase"], 0, 7, b"c", raw)]))
    problems = worker.outputs.problems[7]
    letter = dead_letter_for(raw, Source.of(TOPICS.input_topics["purchase"], 0, 7, b"c"), problems,
                             datetime.now(timezone.utc))
    assert letter.error == rf"<message>: Invalid JSON: invalid \ud800 escape at line 1 column 52: {WHY}"


def test_replay_rejects_the_line_with_that_reason(tmp_path: Path) -> None:
    events, rejects = tmp_path / "events.jsonl", tmp_path / "rejects.jsonl"
    events.write_bytes(b"\n".join([purchase(r"\ud800"), feedback(r"\ud83d\ude00"), purchase("1")]) + b"\n")
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(events), "--as-of", "2026-02-01T00:00:00Z",
         "--profiles-out", str(tmp_path / "p.jsonl"), "--rejects-out", str(rejects)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    said = rf"<message>: Invalid JSON: invalid \ud800 escape at line 1 column 52: {WHY}"
    assert proc.returncode == 0, proc.stderr
    assert [orjson.loads(line) for line in rejects.read_bytes().splitlines()] == [{"line": 1, "error": said}]
    assert f"line 1: {said}" in proc.stderr.splitlines()


@pytest.mark.parametrize("written", LONE)
def test_produce_skips_the_line_saying_why(written: str) -> None:
    assert route_line(purchase(written), {"purchase": "p"}) == \
        f"not JSON: invalid {LONE[written]} escape at column 52: {WHY}"


def test_produce_sends_a_surrogate_pair() -> None:
    routed = route_line(purchase(r"\ud83d\ude00"), {"purchase": "p"})
    assert not isinstance(routed, str) and routed[1] == "c\U0001f600".encode()
