"""Profile events and the traits a customer's state keeps (models/traits.py, models/state.py),
the profile fields made from them (models/profile.py), and recent spend and retention."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import ValueConfig
from models.profile import build_profile, decision_values
from models.state import CustomerState, EngineRejection
from models.valuation import pinned_valuation
from schemas.events import EventValidationError, parse_event

CFG = ValueConfig(currency_rates={"EUR": 1.25})
DAY = 86_400


def ts(day: int) -> str:
    return datetime.fromtimestamp(1_767_225_600 + day * DAY, timezone.utc).isoformat()  # day 0: 2026-01-01


def profile(eid: str, day: int, **traits: object) -> dict:
    return {"type": "profile", "event_id": eid, "customer_id": "c", "timestamp": ts(day), **traits}


def purchase(eid: str, day: int, amount: float) -> dict:
    return {"type": "purchase", "event_id": eid, "customer_id": "c", "timestamp": ts(day), "amount": amount}


def state_of(events: list[dict], config: ValueConfig = CFG) -> CustomerState:
    state = CustomerState("c")
    for e in events:
        state.apply(parse_event(orjson.dumps(e)), config)
    return state


def values(state: CustomerState, day: float, *fields: str) -> dict:
    return decision_values(state, 1_767_225_600 + day * DAY, pinned_valuation(CFG), CFG, fields)


# ---- the contract ---------------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, blamed", [
    ("country", "XX", "country"), ("country", "de", "country"), ("region", "DE-XX", "region"),
    ("time_zone", "Mars/Olympus", "time_zone"), ("birth_year", 1800, "birth_year"),
    ("household_size", 0, "household_size"), ("income_band", "rich", "income_band"),
    ("interests", ["Outdoor Sports"], "interests.0"), ("interests", [f"t{i}" for i in range(21)], "interests"),
    ("acquisition_cost", -1.0, "acquisition_cost"), ("consent", {"email": "yes"}, "consent.email"),
    ("consent", {"fax": True}, "consent.fax"), ("company_size", "huge", "company_size"),
])
def test_a_bad_trait_is_rejected_naming_its_field(field: str, value: object, blamed: str) -> None:
    with pytest.raises(EventValidationError) as err:
        parse_event(orjson.dumps(profile("p", 0, **{field: value})), expected_type="profile")
    assert [p.field for p in err.value.problems] == [blamed]


def test_a_profile_on_another_topic_is_a_wrong_topic() -> None:
    with pytest.raises(EventValidationError) as err:
        parse_event(orjson.dumps(profile("p", 0, country="DE")), expected_type="purchase")
    assert err.value.problems[0].error == "wrong_topic"


def test_a_consent_key_written_twice_is_rejected() -> None:
    raw = b'{"type":"profile","event_id":"p","customer_id":"c","timestamp":"2026-01-01T00:00:00Z",' \
          b'"consent":{"email":true,"email":false}}'
    with pytest.raises(EventValidationError, match='consent.email: duplicate key "email"'):
        parse_event(raw)


# ---- latest timestamp wins, whatever the order ----------------------------------------------------

TRAIT_VALUES = {
    "country": st.sampled_from(["DE", "AT", "CH", None]),
    "city": st.sampled_from(["Berlin", "Wien", None]),
    "interests": st.one_of(st.none(), st.lists(st.sampled_from(["outdoor", "books", "tech"]), max_size=3)),
    "consent": st.one_of(st.none(), st.fixed_dictionaries({}, optional={"email": st.sampled_from([True, False, None]),
                                                                        "sms": st.booleans()})),
    "acquisition_cost": st.one_of(st.none(), st.sampled_from([0.0, 12.5, 40.0])),
}


@st.composite
def profile_events(draw: st.DrawFn) -> list[dict]:
    events = []
    for i in range(draw(st.integers(1, 8))):
        names = draw(st.lists(st.sampled_from(sorted(TRAIT_VALUES)), unique=True, min_size=1))
        traits = {n: draw(TRAIT_VALUES[n]) for n in names}
        events.append(profile(f"p{i}", draw(st.integers(0, 3)), **traits))  # equal timestamps are common
    return events


@settings(max_examples=200, deadline=None)
@given(profile_events(), st.randoms(use_true_random=False))
def test_traits_are_the_same_in_any_arrival_order(events: list[dict], rnd) -> None:  # noqa: ANN001
    shuffled = list(events)
    rnd.shuffle(shuffled)
    a, b = state_of(events), state_of(shuffled)
    assert a.traits == b.traits
    # And each trait is what the latest event that carried it said (ties: the larger JSON).
    def held(name: str, value: object) -> object:  # tag lists are kept as sorted sets
        return sorted(set(value)) if name == "interests" and value is not None else value  # type: ignore[arg-type]

    for name in ("country", "city", "interests"):
        carried = [(e["timestamp"], orjson.dumps(held(name, e[name])), held(name, e[name]))
                   for e in events if name in e]
        if carried:
            expected = max(carried, key=lambda c: (datetime.fromisoformat(c[0]), c[1]))[2]
            assert a.traits[name][1] == expected


def test_null_clears_a_trait_and_an_older_value_arriving_later_stays_cleared() -> None:
    state = state_of([profile("p1", 1, city="Berlin"), profile("p2", 3, city=None), profile("p3", 2, city="Wien")])
    assert values(state, 10, "city")["city"] is None
    assert values(state_of([profile("p1", 1, city="Berlin"), profile("p2", 3, country="DE")]), 10, "city") == \
        {"city": "Berlin"}  # a trait left out is unchanged


def test_a_repeated_profile_event_is_applied_once() -> None:
    state = CustomerState("c")
    event = parse_event(orjson.dumps(profile("p1", 1, country="DE")))
    assert state.apply(event, CFG) and not state.apply(event, CFG)
    assert state.applied_events == 1


def test_acquisition_cost_is_valued_in_the_base_currency_or_rejected_naming_the_currency() -> None:
    state = state_of([profile("p1", 1, acquisition_cost=40.0, currency="EUR")])
    assert values(state, 2, "acquisition_cost") == {"acquisition_cost": 50.0}
    untouched = CustomerState("c")
    with pytest.raises(EngineRejection) as err:
        untouched.apply(parse_event(orjson.dumps(profile("p2", 1, acquisition_cost=1.0, currency="JPY"))), CFG)
    assert err.value.field == "currency" and untouched == CustomerState("c")


def test_a_profile_update_is_not_activity() -> None:
    state = state_of([purchase("o1", 1, 10.0), profile("p1", 30, country="DE")])
    doc = build_profile(state, 1_767_225_600 + 40 * DAY, pinned_valuation(CFG), CFG)
    assert doc["last_active_at"] == ts(1) and doc["country"] == "DE"


def test_erasure_drops_the_traits() -> None:
    state = state_of([profile("p1", 1, country="DE", consent={"email": True}), purchase("o1", 2, 5.0)])
    marker = CustomerState.erased("c", state, "r1", {})
    assert marker.traits == {} and marker.recent_spend == {}
    assert values(marker, 5, "country", "reachable") == {"country": None, "reachable": False}


# ---- profile fields -------------------------------------------------------------------------------

def test_age_is_the_age_reached_in_the_evaluations_calendar_year() -> None:
    state = state_of([profile("p1", 1, birth_year=1990)])
    assert values(state, 0, "age") == {"age": 36}      # 2026-01-01
    assert values(state, 364, "age") == {"age": 36}    # 2026-12-31
    assert values(state, 365, "age") == {"age": 37}    # 2027-01-01
    assert values(state_of([profile("p1", 1, birth_year=2090)]), 1, "age") == {"age": None}


def test_reachable_needs_a_consent_given_on_some_channel() -> None:
    assert values(state_of([profile("p1", 1, consent={"email": False, "sms": True})]), 2, "reachable")["reachable"]
    assert not values(state_of([profile("p1", 1, consent={"email": None})]), 2, "reachable")["reachable"]
    assert not values(state_of([profile("p1", 1, country="DE")]), 2, "reachable")["reachable"]


def test_recent_spend_and_retention_windows() -> None:
    config = ValueConfig(recent_spend_days=30)
    events = [purchase("o1", 0, 10.0), purchase("o2", 20, 5.0), purchase("o3", 40, 7.0), purchase("r1", 45, -2.0),
              purchase("o4", 60, 3.0)]
    for order in (events, events[::-1]):
        state = state_of(order, config)
        assert sorted(state.recent_spend) == [20454 + d for d in (40, 45, 60)]  # within 30 days of day 60
        got = decision_values(state, 1_767_225_600 + 60.5 * DAY, pinned_valuation(config), config,
                              ["recent_spend", "bought_in_period", "bought_in_previous_period"])
        assert got == {"recent_spend": 8.0, "bought_in_period": True, "bought_in_previous_period": True}
        later = decision_values(state, 1_767_225_600 + 95 * DAY, pinned_valuation(config), config,
                                ["recent_spend", "bought_in_period", "bought_in_previous_period"])
        assert later == {"recent_spend": 0.0, "bought_in_period": False, "bought_in_previous_period": True}


def test_a_full_profile_keeps_the_state_small() -> None:
    full = profile("p1", 1, country="DE", region="DE-BY", city="München", postal_code="80331",
                   time_zone="Europe/Berlin", birth_year=1984, household_size=3, income_band="upper_middle",
                   education="master", occupation="engineer", interests=["outdoor", "cycling", "tech"],
                   lifestyle=["urban"], industry="software", company_size="medium", acquisition_channel="paid_search",
                   acquisition_campaign="spring-26", acquisition_cost=35.0, consent={"email": True, "sms": False})
    with_profile, without = state_of([purchase("o1", 0, 10.0), full]), state_of([purchase("o1", 0, 10.0)])
    grown = len(with_profile.to_bytes()) - len(without.to_bytes())
    print(f"a full profile adds {grown} B to the state")
    assert 0 < grown < 400
    assert CustomerState.from_bytes(with_profile.to_bytes()) == with_profile
