"""The synthetic population's profile events (models/synthetic.py, ``segstream generate``): valid
contract events whose traits go with the personas, deterministic per seed, with the ground truth
(``Population.traits``) the engine arrives at in any arrival order; and without profiles, exactly
the events the generator wrote before profiles existed."""

from __future__ import annotations

import hashlib
import random
import re
import subprocess
import sys
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from statistics import mean

import orjson
import pytest

from models.config import ValueConfig
from models.profile import decision_values
from models.state import CustomerState
from models.synthetic import ACQUISITION_COST_USD, INCOME_BANDS, STABLE_YEAR, Population, generate_population
from models.traits import TRAIT_NAMES
from models.valuation import pinned_valuation
from schemas.events import parse_event

ROOT = Path(__file__).resolve().parent.parent
CFG = ValueConfig()


@pytest.fixture(scope="module")
def population() -> Population:
    return generate_population(1500, seed=11, profiles=True)


def digest(events: list[dict]) -> str:
    return hashlib.sha256(b"".join(orjson.dumps(e) + b"\n" for e in events)).hexdigest()


def test_without_profiles_the_events_are_those_written_before_profiles_existed() -> None:
    # Digests of the events of commit 38f44da's generator (before profiles): benchmarks and tests
    # rely on these exact events. (A numpy release that changed its random streams would move
    # them too: then every seeded figure in docs/benchmarks.md moved with it.)
    assert digest(generate_population(80, seed=1).events) == \
        "9aab4aea000bc5a887f4b69c84245005f1063ed42ea6ade4c35a4584a0c759b5"
    assert digest(generate_population(40, seed=9, activity=0.3, personas=STABLE_YEAR, end=1_700_000_000.0).events) \
        == "dadff0a1a3d989532b79ee0f542a84603fe2b12a22a09d84953ab298c1fd12ea"
    assert generate_population(80, seed=1).traits == {}


def test_profiles_add_events_and_change_none_of_the_others(population: Population) -> None:
    without = generate_population(1500, seed=11)
    assert [e for e in population.events if e["type"] != "profile"] == without.events
    assert population.personas == without.personas
    timestamps = [e["timestamp"] for e in population.events]
    assert timestamps == sorted(timestamps)


def test_the_same_seed_gives_the_same_profiles_and_another_seed_others() -> None:
    a, b = generate_population(200, seed=5, profiles=True), generate_population(200, seed=5, profiles=True)
    assert a.events == b.events and a.traits == b.traits
    c = generate_population(200, seed=6, profiles=True)
    assert c.traits != a.traits


def test_every_customer_has_a_valid_initial_profile_near_their_first_activity(population: Population) -> None:
    first_activity: dict[str, str] = {}
    profiles: dict[str, list[dict]] = defaultdict(list)
    for e in population.events:
        if e["type"] == "profile":
            parse_event(orjson.dumps(e), expected_type="profile")  # valid on the profile topic
            profiles[e["customer_id"]].append(e)
        else:
            first_activity.setdefault(e["customer_id"], e["timestamp"])
    assert set(profiles) == set(population.personas)
    for cid, events in profiles.items():
        initial = events[0]
        assert initial["event_id"] == f"{cid}-profile0"
        gap = datetime.fromisoformat(first_activity[cid]) - datetime.fromisoformat(initial["timestamp"])
        assert 0 <= gap.total_seconds() <= 2 * 86_400 + 1, cid
        assert {"country", "acquisition_channel", "acquisition_cost"} <= set(initial)
        assert all(datetime.fromisoformat(e["timestamp"]).timestamp() <= population.end for e in events)


def test_some_customers_update_and_some_events_are_sent_twice(population: Population) -> None:
    profiles = [e for e in population.events if e["type"] == "profile"]
    updates = [e for e in profiles if not e["event_id"].endswith("-profile0")]
    moves = [e for e in updates if "city" in e]
    withdrawals = [e for e in updates if e.get("consent") == {"email": False}]
    cleared = [e for e in moves if e["postal_code"] is None]
    assert len(moves) > 50 and len(withdrawals) > 30 and cleared
    seen: dict[str, dict] = {}
    resent = 0
    for e in profiles:
        if e["event_id"] in seen:
            assert seen[e["event_id"]] == e  # a resend is the same event, not a new one under an old id
            resent += 1
        seen[e["event_id"]] = e
    assert 0.01 * len(seen) < resent < 0.1 * len(seen)


def state_of(events: list[dict]) -> dict[str, CustomerState]:
    states: dict[str, CustomerState] = {}
    for raw in events:
        event = parse_event(orjson.dumps(raw))
        states.setdefault(event.customer_id, CustomerState(event.customer_id)).apply(event, CFG)
    return states


def test_the_ground_truth_is_what_the_engine_holds_in_any_arrival_order(population: Population) -> None:
    shuffled = list(population.events)
    random.Random(3).shuffle(shuffled)  # late, older updates arrive after newer ones
    states = state_of(shuffled)
    as_of = population.end
    fields = [*TRAIT_NAMES, "age", "reachable"]
    wrong = []
    for cid, truth in population.traits.items():
        got = decision_values(states[cid], as_of, pinned_valuation(CFG), CFG, fields)
        expected = {name: truth.get(name) for name in TRAIT_NAMES}
        expected["age"] = 2026 - truth["birth_year"] if "birth_year" in truth else None
        expected["reachable"] = any(truth.get(f"consent_{c}") is True for c in ("email", "sms", "push"))
        if got != expected:
            wrong.append((cid, got, expected))
    assert not wrong, wrong[:3]
    # And the updates are in the truth: a moved customer's city is the one they moved to.
    moves: dict[str, list[str]] = defaultdict(list)
    for e in population.events:
        if e["type"] == "profile" and "city" in e and not e["event_id"].endswith("-profile0"):
            moves[e["customer_id"]].append(e["city"])
    assert moves and all(population.traits[cid]["city"] == cities[-1] for cid, cities in moves.items())


def by_persona(population: Population) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for cid, persona in population.personas.items():
        out[persona].append(population.traits[cid])
    return out


def test_traits_go_with_the_personas(population: Population) -> None:
    groups = by_persona(population)

    def age(p: str) -> float:
        return mean(2026 - t["birth_year"] for t in groups[p] if "birth_year" in t)

    def income(p: str) -> float:
        return mean(INCOME_BANDS.index(t["income_band"]) for t in groups[p] if "income_band" in t)

    def share(p: str, has) -> float:  # noqa: ANN001
        return mean(1.0 if has(t) else 0.0 for t in groups[p])

    email = lambda t: t.get("consent_email") is True  # noqa: E731
    business = lambda t: "industry" in t and "company_size" in t  # noqa: E731
    assert age("champion") > age("loyal") > age("new") > age("bargain") > age("browser")
    assert age("champion") - age("bargain") > 15
    assert income("champion") > income("loyal") > income("bargain")
    assert income("champion") - income("bargain") > 1.5  # bands
    assert share("champion", email) > share("loyal", email) > share("bargain", email) > share("browser", email)
    assert share("champion", email) > 2 * share("bargain", email)
    assert share("champion", business) > 2 * share("bargain", business) > 0
    assert all("industry" not in t or t.get("company_size") for g in groups.values() for t in g)
    assert mean(t["acquisition_cost"] for t in groups["new"]) > mean(t["acquisition_cost"] for t in groups["champion"])


def test_acquisition_cost_depends_on_the_channel(population: Population) -> None:
    costs: dict[str, list[float]] = defaultdict(list)
    for traits in population.traits.values():
        costs[traits["acquisition_channel"]].append(traits["acquisition_cost"])
    assert set(costs) == set(ACQUISITION_COST_USD)
    means = {channel: mean(c) for channel, c in costs.items()}
    assert sorted(means, key=means.get) == sorted(ACQUISITION_COST_USD, key=ACQUISITION_COST_USD.get)  # type: ignore[arg-type]
    for channel, expected in ACQUISITION_COST_USD.items():
        assert abs(means[channel] - expected) < 0.15 * expected, (channel, means[channel])
    campaigns = {t.get("acquisition_campaign") for t in population.traits.values()
                 if t["acquisition_channel"] == "paid_search"}
    assert campaigns and all(c and c.startswith("paid_search-20") for c in campaigns)


def generate(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "generate", "--customers", "30", "--seed", "4",
                           "--out", str(tmp_path / "events.jsonl"), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_segstream_generate_emits_profiles_unless_told_not_to(tmp_path: Path) -> None:
    done = generate(tmp_path, "--traits-out", str(tmp_path / "traits.json"))
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    expected = generate_population(30, seed=4, profiles=True)
    assert lines == expected.events and any(e["type"] == "profile" for e in lines)
    assert orjson.loads((tmp_path / "traits.json").read_bytes()) == expected.traits

    done = generate(tmp_path, "--no-profiles")
    assert done.returncode == 0, done.stderr
    lines = [orjson.loads(line) for line in (tmp_path / "events.jsonl").read_bytes().splitlines()]
    assert lines == generate_population(30, seed=4).events
    assert generate(tmp_path, "--no-profiles", "--traits-out", str(tmp_path / "t.json")).returncode == 2


def test_the_offline_replay_of_a_file_with_profiles_shows_the_ground_truth(tmp_path: Path) -> None:
    """``segstream replay`` on profile lines mixed with the others, in any line order."""
    pop = generate_population(120, seed=2, activity=0.3, profiles=True)
    lines = [orjson.dumps(e) for e in pop.events]
    random.Random(1).shuffle(lines)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "profiles.jsonl"
    done = subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(events), "--as-of", "2026-01-01T00:00:00Z",
                           "--profiles-out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    resent = sum(1 for e in pop.events if e["type"] == "profile") - len(
        {e["event_id"] for e in pop.events if e["type"] == "profile"})
    assert re.search(rf"\b{resent} duplicates, 0 after as-of, 0 invalid", done.stderr), done.stderr
    profiles = {p["customer_id"]: p for p in map(orjson.loads, out.read_bytes().splitlines())}
    assert set(profiles) == set(pop.traits)
    for cid, traits in pop.traits.items():
        assert {name: profiles[cid][name] for name in TRAIT_NAMES} == {name: traits.get(name) for name in TRAIT_NAMES}
