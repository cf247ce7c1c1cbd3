"""Segmentation bases combined, and segment KPIs, on a generated population (issue #21).

A synthetic population with profile events (traits that go with the personas, later updates,
resends) is replayed through the engine. A rule segment combining geographic, demographic,
psychographic, consent and cluster clauses must hold exactly the customers the generator's ground
truth puts there; and every segment's KPIs must equal an independent pandas computation from the
raw events (recent revenue, retention, NPS) and the ground-truth traits (CAC, reach).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import pytest

from models.config import EngineConfig, SegmentationConfig
from models.profile import decision_values
from models.synthetic import generate_population
from streams.replay import Replay

END = 1_767_225_600.0  # 2026-01-01
DAY = 86_400
DACH = ("DE", "AT", "CH")

RULES = """
[[segment]]
id = "dach_email_adults"
label = "DACH, email consent, 30 or older"
all = [{ field = "country", op = "in", value = ["DE", "AT", "CH"] },
       { field = "consent_email", op = "==", value = true },
       { field = "age", op = ">=", value = 30 }]

[[segment]]
id = "readers_not_gamers"
label = "Readers who do not game"
all = [{ field = "interests", op = "contains", value = "books" },
       { field = "interests", op = "not contains", value = "gaming" }]

[[segment]]
id = "dach_email_in_cluster"
label = "Cluster c1, in DACH, consented to email"
all = [{ field = "cluster", op = "==", value = "c1" },
       { field = "country", op = "in", value = ["DE", "AT", "CH"] },
       { field = "consent_email", op = "==", value = true }]
"""


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    rules = tmp_path_factory.mktemp("kpis") / "rules.toml"
    rules.write_text(RULES)
    pop = generate_population(1500, seed=21, end=END, profiles=True)
    config = EngineConfig(segmentation=SegmentationConfig(rules_file=str(rules), train_every_events=20_000))
    replay = Replay(config, END)
    replay.feed_events(pop.events)
    replay.finish()
    return pop, replay


def expected_members(pop, replay) -> dict[str, set[str]]:  # noqa: ANN001
    """Each rule segment's members by the generator's ground truth (and the replay's clusters)."""
    year = datetime.fromtimestamp(END, timezone.utc).year
    out: dict[str, set[str]] = {"dach_email_adults": set(), "readers_not_gamers": set(), "dach_email_in_cluster": set()}
    for cid, traits in pop.traits.items():
        dach_email = traits.get("country") in DACH and traits.get("consent_email") is True
        if dach_email and "birth_year" in traits and year - traits["birth_year"] >= 30:
            out["dach_email_adults"].add(cid)
        interests = traits.get("interests")
        if interests is not None and "books" in interests and "gaming" not in interests:
            out["readers_not_gamers"].add(cid)
        if dach_email and replay.states[cid].cluster == "c1":
            out["dach_email_in_cluster"].add(cid)
    return out


def test_a_combined_basis_rule_segment_holds_exactly_the_right_customers(replayed: tuple) -> None:
    pop, replay = replayed
    expected = expected_members(pop, replay)
    got = {sid: {cid for cid, s in replay.states.items() if sid in s.rules} for sid in expected}
    sizes = {sid: len(members) for sid, members in expected.items()}
    print("members:", sizes)
    assert all(n >= 10 for n in sizes.values()), sizes  # each segment is a real test, not an empty set
    for sid in expected:
        assert got[sid] == expected[sid], (sid, sorted(got[sid] ^ expected[sid])[:10])


def independent_frame(pop, replay) -> pd.DataFrame:  # noqa: ANN001
    """One row per customer, computed from the raw events and the ground-truth traits, not from
    the state: recent spend, the retention periods, the latest NPS, CAC and reach. CLV and cost to
    serve are the engine's (BTYD and decay are tested on their own)."""
    events = pd.DataFrame(pop.events).drop_duplicates(subset=["customer_id", "type", "event_id"])
    events["ts"] = pd.to_datetime(events["timestamp"], utc=True, format="ISO8601").map(lambda t: t.timestamp())
    events = events[events["ts"] <= END]
    events["day"] = (events["ts"] // DAY).astype(int)
    today, window = int(END // DAY), replay.config.value.recent_spend_days
    purchases = events[events["type"] == "purchase"]
    recent = purchases[(purchases["day"] > today - window) & (purchases["day"] <= today)]
    bought = purchases[purchases["amount"] >= 0]
    this = set(bought[(bought["day"] > today - window) & (bought["day"] <= today)]["customer_id"])
    previous = set(bought[(bought["day"] > today - 2 * window) & (bought["day"] <= today - window)]["customer_id"])
    nps = events[(events["type"] == "feedback") & (events["kind"] == "nps")].sort_values(["ts", "score"])
    latest_nps = nps.groupby("customer_id")["score"].last()
    rows = []
    for cid, state in replay.states.items():
        traits = pop.traits.get(cid, {})
        profile = decision_values(state, END, replay.pipeline.values.valuation, replay.config.value,
                                  ["clv", "cost_to_serve"])  # exact, as the KPIs read them
        rows.append({
            "customer_id": cid, "cluster": state.cluster, "rules": list(state.rules),
            "recent_spend": float(recent.loc[recent["customer_id"] == cid, "amount"].sum()),
            "this_period": cid in this, "previous_period": cid in previous,
            "nps": latest_nps.get(cid), "clv": profile["clv"], "cost_to_serve": profile["cost_to_serve"],
            "cac": traits.get("acquisition_cost"),
            "reachable": any(traits.get(f"consent_{c}") is True for c in ("email", "sms", "push")),
        })
    return pd.DataFrame(rows)


def segment_figures(members: pd.DataFrame, population: int) -> dict:
    answered = members["nps"].dropna()
    prev = members[members["previous_period"]]
    with_cac = members.dropna(subset=["cac"])
    both = members.dropna(subset=["cac", "clv"])
    return {
        "size": len(members), "share": len(members) / population,
        "recent_revenue": members["recent_spend"].sum(),
        "clv_total": members["clv"].dropna().sum() if members["clv"].notna().any() else None,
        "clv_mean": members["clv"].dropna().mean(),
        "retention": prev["this_period"].mean() if len(prev) else None,
        "nps": 100 * ((answered >= 9).sum() - (answered <= 6).sum()) / len(answered) if len(answered) else None,
        "nps_answered_share": len(answered) / len(members),
        "cost_to_serve_mean": members["cost_to_serve"].mean(),
        "cac_mean": with_cac["cac"].mean() if len(with_cac) else None,
        "cac_known_share": len(with_cac) / len(members),
        "clv_to_cac": both["clv"].sum() / both["cac"].sum() if len(both) else None,
        "reachable_share": members["reachable"].mean(),
    }


def test_segment_kpis_match_an_independent_pandas_computation(replayed: tuple) -> None:
    pop, replay = replayed
    pipeline = replay.pipeline
    kpis = pipeline.new_kpis()
    states = [replay.states[cid] for cid in sorted(replay.states)]
    for memberships, values, z in pipeline.kpi_rows(states, [END] * len(states), pipeline.kpi_fields):
        kpis.add(memberships, values, z)
    frame = independent_frame(pop, replay)
    figures = {(f["kind"], f["segment_id"]): f for f in kpis.figures()}
    groups = {("cluster", c): frame[frame["cluster"] == c] for c in frame["cluster"].dropna().unique()}
    groups |= {("rule", r): frame[frame["rules"].map(lambda rs, r=r: r in rs)] for r in pipeline.rules.ids}
    groups = {key: members for key, members in groups.items() if len(members)}
    assert set(figures) == set(groups)
    assert kpis.population == len(frame)
    for key, members in groups.items():
        want = segment_figures(members, len(frame))
        for name, value in want.items():
            got = figures[key][name]
            if value is None or (isinstance(value, float) and pd.isna(value)):
                assert got is None, (key, name, got)
            else:
                # money and service load are summed in micro-units: up to half a micro-unit a member
                assert got == pytest.approx(float(value), rel=1e-9, abs=1e-6 * len(members)), (key, name, got, value)
        assert figures[key]["churn"] == (None if want["retention"] is None else pytest.approx(1 - want["retention"]))
    # The generated traits make these figures real: some members reachable, some CAC known, answers.
    assert any(f["cac_known_share"] and f["reachable_share"] for f in figures.values())
    assert any(f["retention"] not in (None, 0.0, 1.0) for f in figures.values())


def test_segments_report_offline_from_a_generated_file(tmp_path: Path) -> None:
    """`segstream segments --events` on a generated file: the Markdown names every segment,
    shows the composition by country, and says which segments fail which criterion."""
    import subprocess
    import sys

    from models.synthetic import iter_jsonl

    pop = generate_population(400, seed=5, end=END, profiles=True)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(iter_jsonl(pop.events)))
    out = tmp_path / "segments.md"
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-m", "streams.cli", "segments", "--events", str(events),
                           "--format", "markdown", "--out", str(out)], cwd=root, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "Composition" in text and "DE " in text
    assert "Failing:" in text and "| Segment |" in text
