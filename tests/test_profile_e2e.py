"""Profile events end to end on the real broker (the style of tests/test_worker_e2e.py): a
synthetic population with profiles, produced on the profile topic next to the other inputs,
reaches ``GET /customers/{id}`` trait for trait; a late, older update does not overwrite a newer
one; an invalid profile lands in the dead-letter topic naming its field (and its value in no log
line); an erasure takes the traits with it."""

from __future__ import annotations

from datetime import datetime, timedelta

import orjson
import pytest

from models.synthetic import generate_population
from models.traits import TRAIT_NAMES
from schemas.dead_letter import DeadLetter
from tests.kafka_helpers import WorkerProcess, consume, produce, run, wait_until
from tests.test_worker_e2e import to_messages, worker_env

pytestmark = pytest.mark.kafka

CUSTOMERS = 40
MOVER = "mover-0001"
#: Distinctive trait values: none of them may ever be in the worker's log.
NEVER_LOGGED = ("AT-QQ7", "Mars/Olympus_Mons", "Zyxwvut-Stadt", "Qwertz-Dorf", "jane.doe@example.com",
                "zz-unique-interest")


def at(start: datetime, days: float) -> str:
    return (start + timedelta(days=days)).isoformat()


def mover_events(start: datetime) -> list[dict]:
    """A customer who bought once, moved to Austria (day 20) and withdrew email consent: that
    update is produced *before* the older one (day 10) the CRM sends late."""
    base = {"customer_id": MOVER}
    return [
        {**base, "type": "purchase", "event_id": "mover-o1", "timestamp": at(start, 1), "amount": 30.0},
        {**base, "type": "profile", "event_id": "mover-new", "timestamp": at(start, 20), "country": "AT",
         "region": "AT-9", "city": "Zyxwvut-Stadt", "time_zone": "Europe/Vienna",
         "consent": {"email": False, "sms": True}},
        {**base, "type": "profile", "event_id": "mover-old", "timestamp": at(start, 10), "country": "DE",
         "region": "DE-BY", "city": "Qwertz-Dorf", "time_zone": "Europe/Berlin", "birth_year": 1980,
         "interests": ["zz-unique-interest", "books"], "consent": {"email": True},
         "acquisition_channel": "referral", "acquisition_cost": 12.5},
    ]


def bad_profiles(prefix: str, start: datetime) -> list[tuple[tuple[str, bytes, bytes], str]]:
    """Invalid profile events on the profile topic, each with the field its dead letter must name."""
    def doc(eid: str, **traits: object) -> bytes:
        return orjson.dumps({"type": "profile", "event_id": eid, "customer_id": MOVER, "timestamp": at(start, 5),
                             **traits})
    topic, key = f"{prefix}profile", MOVER.encode()
    return [
        ((topic, key, doc("bad-1", country="de")), "country"),
        ((topic, key, doc("bad-2", region="AT-QQ7")), "region"),
        ((topic, key, doc("bad-3", time_zone="Mars/Olympus_Mons")), "time_zone"),
        ((topic, key, doc("bad-4", consent={"email": "yes"})), "consent.email"),
        ((topic, key, doc("bad-5", consent={"jane.doe@example.com": True})), "consent.jane.doe@example.com"),
        ((topic, key, doc("bad-6", birth_year=1800)), "birth_year"),
    ]


@pytest.fixture(scope="module")
def processed(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    tmp = tmp_path_factory.mktemp("profile-e2e")
    prefix = f"prof{datetime.now().strftime('%H%M%S%f')}."
    pop = generate_population(CUSTOMERS, seed=8, activity=0.3, profiles=True)
    start = datetime.fromisoformat(pop.events[0]["timestamp"])
    worker = WorkerProcess(worker_env(kafka_bootstrap, prefix, tmp / "data"), tmp / "worker.log")
    try:
        worker.wait_ready()
        good = to_messages(prefix, pop.events) + to_messages(prefix, mover_events(start))  # newer, then older
        bad = bad_profiles(prefix, start)
        half = len(good) // 2
        run(produce(kafka_bootstrap, good[:half] + [m for m, _ in bad] + good[half:]))

        def consumed() -> float:
            return sum(worker.metric("segstream_events_total", outcome=o) for o in ("applied", "duplicate"))
        wait_until(lambda: consumed() >= len(good), 180, "every valid event applied or recognised as a resend")
        yield {"worker": worker, "prefix": prefix, "population": pop, "good": good, "bad": bad, "start": start,
               "bootstrap": kafka_bootstrap}
    finally:
        assert worker.stop() == 0, worker.log_tail()


def expected_document(traits: dict, as_of: str) -> dict:
    expected = {name: traits.get(name) for name in TRAIT_NAMES}
    year = datetime.fromisoformat(as_of).year
    expected["age"] = year - traits["birth_year"] if "birth_year" in traits else None
    expected["reachable"] = any(traits.get(f"consent_{c}") is True for c in ("email", "sms", "push"))
    return expected


def test_generated_traits_reach_the_customer_document(processed: dict) -> None:
    worker, pop = processed["worker"], processed["population"]
    wrong = {}
    for cid, traits in pop.traits.items():
        doc = worker.get(f"/customers/{cid}")
        expected = expected_document(traits, doc["as_of"])  # type: ignore[index]
        shown = {name: doc[name] for name in expected}  # type: ignore[index]
        if shown != expected:
            wrong[cid] = (shown, expected)
    assert not wrong, wrong
    # Every profile event counted under its own label: the resends recognised, not applied twice.
    profiles = [e for e in pop.events if e["type"] == "profile"]
    unique = {e["event_id"] for e in profiles}
    assert 0 < len(profiles) - len(unique)  # the population has resends
    assert worker.metric("segstream_events_total", event_type="profile", outcome="applied") == len(unique) + 2
    assert worker.metric("segstream_events_total", event_type="profile", outcome="duplicate") == \
        len(profiles) - len(unique)
    assert worker.metric("segstream_events_total", event_type="profile", outcome="invalid") == len(processed["bad"])


def test_a_late_older_update_does_not_overwrite_a_newer_one(processed: dict) -> None:
    doc = processed["worker"].get(f"/customers/{MOVER}")
    # The newer update's traits stand; what only the older one carried is kept.
    assert (doc["country"], doc["region"], doc["city"], doc["time_zone"]) == (  # type: ignore[index]
        "AT", "AT-9", "Zyxwvut-Stadt", "Europe/Vienna")
    assert (doc["consent_email"], doc["consent_sms"], doc["consent_push"], doc["reachable"]) == (  # type: ignore[index]
        False, True, None, True)
    assert doc["birth_year"] == 1980  # type: ignore[index]
    assert doc["age"] == datetime.fromisoformat(doc["as_of"]).year - 1980  # type: ignore[index]
    assert doc["interests"] == ["books", "zz-unique-interest"]  # type: ignore[index]
    assert (doc["acquisition_channel"], doc["acquisition_cost"]) == ("referral", 12.5)  # type: ignore[index]
    # A profile update is not activity: the customer was last active at their purchase.
    assert doc["last_active_at"] == at(processed["start"], 1)  # type: ignore[index]


def test_an_invalid_profile_is_dead_lettered_naming_the_field_and_no_trait_is_logged(processed: dict) -> None:
    bad, prefix = processed["bad"], processed["prefix"]
    letters = run(consume(processed["bootstrap"], f"{prefix}dead-letter", len(bad)))
    parsed = [DeadLetter.model_validate_json(r.value) for r in letters]
    assert len(parsed) == len(bad)
    assert {d.source.topic for d in parsed} == {f"{prefix}profile"}
    assert sorted(p.field for d in parsed for p in d.problems) == sorted(field for _, field in bad)
    assert all(d.error for d in parsed)
    log = processed["worker"].log_path.read_text(errors="replace")
    assert "country: <code_list>" in log  # the first one (later ones may be throttled)
    assert [v for v in NEVER_LOGGED if v in log] == []


def test_an_erasure_removes_the_traits(processed: dict) -> None:
    worker, start = processed["worker"], processed["start"]
    status, doc = worker.request(f"/customers/{MOVER}", method="DELETE")
    assert status == 202, doc
    wait_until(lambda: worker.request(f"/customers/{MOVER}")[0] == 404, 30, "the state to be deleted")
    applied = worker.metric("segstream_events_total", outcome="applied")
    duplicates = worker.metric("segstream_events_total", outcome="duplicate")
    old = next(e for e in mover_events(start) if e["event_id"] == "mover-old")
    after = [{"type": "purchase", "event_id": "mover-o2", "customer_id": MOVER, "timestamp": at(start, 40),
              "amount": 12.0}, old]  # a new life, and the erased profile sent again: still a repeat
    run(produce(processed["bootstrap"], to_messages(processed["prefix"], after)))
    wait_until(lambda: worker.metric("segstream_events_total", outcome="applied") == applied + 1
               and worker.metric("segstream_events_total", outcome="duplicate") == duplicates + 1,
               60, "the purchase applied and the old profile recognised")
    doc = worker.get(f"/customers/{MOVER}")
    assert doc["purchase_count"] == 1  # type: ignore[index]
    assert {name: doc[name] for name in (*TRAIT_NAMES, "age")} == dict.fromkeys((*TRAIT_NAMES, "age"))  # type: ignore[index]
    assert doc["reachable"] is False  # type: ignore[index]
