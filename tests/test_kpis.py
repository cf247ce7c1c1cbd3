"""KPIs per segment (models/kpis.py) against an independent pandas computation on a random
population, and merges of per-partition accumulators against one accumulator over everyone."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from models.kpis import (
    AGE_BANDS,
    COMPOSITION_TRAITS,
    FEATURE_FIELDS,
    SegmentKPIs,
    cluster_defining_fields,
)
from schemas.errors import ConfigurationError, ContractError

N = 3000
DIM = 4
CLUSTERS = ["c1", "c2", "c3", "c10"]
RULES = ["vip", "lapsing", "de_email", "rare"]
RULE_FIELDS = {"vip": ("clv",), "lapsing": ("days_since_last_purchase", "clv"), "de_email": ("country", "consent_email")}
CLUSTER_FIELDS = ("clv", "nps_decayed")
COUNTRIES = [f"C{i:02d}" for i in range(14)]  # more than top_n: "other" is exercised


def maybe(rng: np.random.Generator, value: Any, p_none: float = 0.2) -> Any:
    return None if rng.random() < p_none else value


def population(seed: int = 7) -> tuple[list[dict[str, Any]], list[list[tuple[str, str]]], list[list[float] | None]]:
    """Random customers: values (None for about a fifth of each), memberships and feature vectors."""
    rng = np.random.default_rng(seed)
    values, memberships, features = [], [], []
    for _ in range(N):
        values.append({
            "clv": maybe(rng, float(rng.lognormal(5, 1.5))),
            "recent_spend": maybe(rng, float(rng.normal(80, 60))),  # refunds can make it negative
            "bought_in_period": maybe(rng, bool(rng.random() < 0.5)),
            "bought_in_previous_period": maybe(rng, bool(rng.random() < 0.6)),
            "nps": maybe(rng, int(rng.integers(0, 11)), 0.6),
            "cost_to_serve": maybe(rng, float(rng.exponential(0.7)), 0.05),
            "acquisition_cost": maybe(rng, float(rng.uniform(0, 120)), 0.5),
            "consent_email": maybe(rng, bool(rng.random() < 0.4), 0.5),
            "consent_sms": maybe(rng, bool(rng.random() < 0.2), 0.5),
            "consent_push": maybe(rng, bool(rng.random() < 0.3), 0.5),
            "country": maybe(rng, str(rng.choice(COUNTRIES, p=np.arange(1, 15) / 105))),
            "age": maybe(rng, int(rng.integers(12, 90))),
            "income_band": maybe(rng, str(rng.choice(["low", "lower_middle", "middle", "upper_middle", "high"]))),
            "company_size": maybe(rng, str(rng.choice(["micro", "small", "medium", "large", "enterprise"])), 0.7),
            "household_size": maybe(rng, int(rng.integers(1, 21))),
            "days_since_last_purchase": maybe(rng, float(rng.uniform(0, 400))),
            "nps_decayed": maybe(rng, float(rng.uniform(0, 10)), 0.5),
            "industry": maybe(rng, "retail"),
        })
        cluster = [("cluster", str(rng.choice(CLUSTERS)))] if rng.random() < 0.9 else []
        rules = [("rule", r) for r, p in zip(RULES, (0.3, 0.2, 0.1, 0.005)) if rng.random() < p]
        memberships.append(cluster + rules)
        features.append(rng.normal(size=DIM).tolist() if cluster else None)
    return values, memberships, features


def accumulate(customers: list[int], data: Any, top_n: int = 10) -> SegmentKPIs:
    values, memberships, features = data
    kpis = SegmentKPIs(90, {"cluster": CLUSTER_FIELDS, **{("rule", r): f for r, f in RULE_FIELDS.items()}},
                       top_n=top_n)
    for i in customers:
        kpis.add(memberships[i], values[i], features[i])
    return kpis


@pytest.fixture(scope="module")
def data() -> Any:
    return population()


@pytest.fixture(scope="module")
def figures(data: Any) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["kind"], f["segment_id"]): f for f in accumulate(list(range(N)), data).figures()}


def frames(data: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    values, memberships, features = data
    df = pd.DataFrame(values)
    z = pd.DataFrame([f if f is not None else [np.nan] * DIM for f in features], columns=[f"z{j}" for j in range(DIM)])
    df = pd.concat([df, z], axis=1)
    members = pd.DataFrame([(i, kind, sid) for i, ms in enumerate(memberships) for kind, sid in ms],
                           columns=["customer", "kind", "segment_id"])
    return df, members


def expected(df: pd.DataFrame, top_n: int = 10) -> dict[str, Any]:
    """The figures of the customers of ``df``, computed with pandas from the definitions."""
    true = lambda col: df[col].eq(True)  # noqa: E731  (None and False are not True)
    prev, both = true("bought_in_previous_period"), df["clv"].notna() & df["acquisition_cost"].notna()
    answered = df["nps"].dropna()
    consents = df[["consent_email", "consent_sms", "consent_push"]]
    nps = (100 * ((answered >= 9).sum() - (answered <= 6).sum()) / len(answered)) if len(answered) else None
    retention = (prev & true("bought_in_period")).sum() / prev.sum() if prev.sum() else None
    return {
        "size": len(df), "share": len(df) / N,
        "recent_revenue": df["recent_spend"].sum(), "clv_total": df["clv"].sum(), "clv_mean": df["clv"].mean(),
        "clv_known": df["clv"].notna().sum(),
        "retention": retention, "churn": None if retention is None else 1 - retention,
        "nps": nps, "nps_answered_share": len(answered) / len(df),
        "cost_to_serve_mean": df["cost_to_serve"].mean(),
        "cac_mean": df["acquisition_cost"].mean(), "cac_known_share": df["acquisition_cost"].notna().mean(),
        "clv_to_cac": df.loc[both, "clv"].mean() / df.loc[both, "acquisition_cost"].mean() if both.any() else None,
        "clv_to_cac_over": both.sum(),
        "reachable_share": consents.eq(True).any(axis=1).mean(),
        "consent_known_share": consents.notna().any(axis=1).mean(),
    }


def composition(series: pd.Series, top_n: int) -> dict[str, Any]:
    counts = series.dropna().astype(str).value_counts()
    ranked = sorted(counts.items(), key=lambda vn: (-vn[1], vn[0]))
    return {"values": dict(ranked[:top_n]), "other": sum(n for _, n in ranked[top_n:]),
            "other_values": len(ranked[top_n:]), "unknown": int(series.isna().sum())}


def close(got: Any, want: Any, n: int) -> bool:
    """Equal up to the micro-unit rounding of each of ``n`` summed values (and float rounding)."""
    if want is None or (isinstance(want, float) and math.isnan(want)):
        return got is None
    return got == pytest.approx(float(want), rel=1e-9, abs=0.5e-6 * n)


def test_the_figures_equal_an_independent_pandas_computation(data: Any, figures: dict) -> None:
    df, members = frames(data)
    assert set(figures) == set(members[["kind", "segment_id"]].itertuples(index=False, name=None))
    for (kind, sid), got in figures.items():
        rows = df.loc[members.loc[(members.kind == kind) & (members.segment_id == sid), "customer"]]
        want = expected(rows)
        wrong = {k: (got[k], v) for k, v in want.items() if not close(got[k], v, len(rows))}
        assert wrong == {}, (kind, sid)
        assert got["recent_revenue_days"] == 90


def test_composition_counts_each_trait_with_top_n_other_and_unknown(data: Any, figures: dict) -> None:
    df, members = frames(data)
    df["age_band"] = pd.cut(df["age"], [-np.inf, 18, 25, 35, 45, 55, 65, np.inf], right=False, labels=AGE_BANDS)
    df["household_size"] = df["household_size"].astype("Int64")  # not 3.0
    for (kind, sid), got in figures.items():
        rows = df.loc[members.loc[(members.kind == kind) & (members.segment_id == sid), "customer"]]
        for trait in COMPOSITION_TRAITS:
            assert got["composition"][trait] == composition(rows[trait], 10), (kind, sid, trait)
    big = figures["cluster", "c1"]["composition"]
    assert big["country"]["other_values"] == len(COUNTRIES) - 10 and big["country"]["other"] > 0
    assert list(big["age_band"]["values"]) == [b for b in AGE_BANDS if b in big["age_band"]["values"]]  # band order


def test_separation_sums_give_each_segments_mean_and_within_variance(data: Any, figures: dict) -> None:
    df, members = frames(data)
    zcols = [f"z{j}" for j in range(DIM)]
    for (kind, sid), got in figures.items():
        rows = df.loc[members.loc[(members.kind == kind) & (members.segment_id == sid), "customer"], zcols].dropna()
        if rows.empty:
            assert got["features"] is None
            continue
        assert got["features"]["n"] == len(rows)
        assert got["features"]["mean"] == pytest.approx(rows.mean().tolist(), abs=1e-12)
        assert got["features"]["within_variance"] == pytest.approx(rows.var(ddof=0).sum(), rel=1e-9)


def test_measurable_share_counts_members_with_every_defining_field_known(data: Any, figures: dict) -> None:
    df, members = frames(data)
    for (kind, sid), got in figures.items():
        rows = df.loc[members.loc[(members.kind == kind) & (members.segment_id == sid), "customer"]]
        fields = CLUSTER_FIELDS if kind == "cluster" else RULE_FIELDS.get(sid)
        if fields is None:
            assert got["measurable_share"] is None and got["defining_fields"] is None
        else:
            assert got["measurable_share"] == pytest.approx(rows[list(fields)].notna().all(axis=1).mean())


def test_population_figures_are_over_everyone_fed(data: Any) -> None:
    kpis = accumulate(list(range(N)), data)
    df, _ = frames(data)
    got, want = kpis.population_figures(), expected(df)
    assert kpis.population == N and got["share"] == 1.0
    assert {k: v for k, v in want.items() if not close(got[k], v, N)} == {}


@pytest.mark.parametrize("parts", [2, 5])
def test_merged_partitions_equal_one_accumulator_over_everyone(data: Any, parts: int) -> None:
    rng = np.random.default_rng(parts)
    partition = rng.integers(0, parts, N)
    pieces = [accumulate([i for i in range(N) if partition[i] == p], data) for p in range(parts)]
    merged = pieces[0]
    for piece in pieces[1:]:
        merged.merge(piece)
    whole = accumulate(list(range(N)), data)
    got, want = merged.figures(), whole.figures()
    for g, w in zip(got, want):
        gf, wf = g.pop("features"), w.pop("features")
        assert g == w  # exact: integer sums of micro-units, whatever the split
        assert gf["n"] == wf["n"] and gf["mean"] == pytest.approx(wf["mean"], abs=1e-12)
        assert gf["within_variance"] == pytest.approx(wf["within_variance"], rel=1e-12)
    assert len(got) == len(want) and merged.population == N


def test_an_accumulator_survives_json(data: Any) -> None:
    kpis = accumulate(list(range(500)), data)
    kpis.add([("rule", "vip")], {"clv": 1e16, "acquisition_cost": 1e15})  # past 64-bit micro-units
    again = SegmentKPIs.from_dict(json.loads(json.dumps(kpis.to_dict())))
    assert again.figures() == kpis.figures() and again.population_figures() == kpis.population_figures()
    again.add([("rule", "lapsing")], {"clv": 5.0})
    assert {f["segment_id"]: f["defining_fields"] for f in again.figures()}["lapsing"] == ["clv",
                                                                                           "days_since_last_purchase"]


def test_top_n_keeps_exactly_n_values_and_sums_the_rest() -> None:
    kpis = SegmentKPIs(30, top_n=2)
    for country, n in (("DE", 3), ("AT", 2), ("CH", 2), ("FR", 1)):
        for _ in range(n):
            kpis.add([("rule", "r")], {"country": country})
    country = kpis.figures()[0]["composition"]["country"]
    assert country == {"values": {"DE": 3, "AT": 2}, "other": 3, "other_values": 2, "unknown": 0}  # tie: by value


def test_unknowns_are_none_not_zero() -> None:
    kpis = SegmentKPIs(30)
    kpis.add([("cluster", "c1")], {"bought_in_period": True, "bought_in_previous_period": None})
    f = kpis.figures()[0]
    assert (f["clv_mean"], f["nps"], f["retention"], f["churn"], f["cac_mean"], f["clv_to_cac"]) == (None,) * 6
    assert f["clv_total"] is None  # no member's CLV is known: not a total of 0
    assert (f["nps_answered_share"], f["cac_known_share"], f["reachable_share"]) == (0.0, 0.0, 0.0)
    assert f["features"] is None and f["measurable_share"] is None


def test_clv_to_cac_is_over_the_members_with_both_known() -> None:
    kpis = SegmentKPIs(30)
    kpis.add([("rule", "r")], {"clv": 900.0, "acquisition_cost": 100.0})
    kpis.add([("rule", "r")], {"clv": 100.0})                             # no CAC: not in the ratio
    kpis.add([("rule", "r")], {"acquisition_cost": 500.0})                # no CLV: in cac_mean only
    f = kpis.figures()[0]
    assert (f["clv_to_cac"], f["clv_to_cac_over"], f["clv_mean"], f["cac_mean"]) == (9.0, 1, 500.0, 300.0)


def test_reachable_needs_a_channel_that_is_true() -> None:
    kpis = SegmentKPIs(30)
    kpis.add([("rule", "r")], {"consent_email": False, "consent_sms": None, "consent_push": True})
    kpis.add([("rule", "r")], {"consent_email": False, "consent_sms": False})
    kpis.add([("rule", "r")], {})
    f = kpis.figures()[0]
    assert (f["reachable_share"], f["consent_known_share"]) == (pytest.approx(1 / 3), pytest.approx(2 / 3))


def test_a_reused_feature_buffer_is_copied() -> None:
    kpis, buffer = SegmentKPIs(30), np.zeros(2)
    for x in (1.0, 3.0):
        buffer[:] = x
        kpis.add([("cluster", "c1")], {}, buffer)
    f = kpis.figures()[0]["features"]
    assert f["mean"] == [2.0, 2.0] and f["within_variance"] == pytest.approx(2.0)


def test_cluster_defining_fields_map_every_feature_to_a_profile_field() -> None:
    from models.features import FEATURES

    assert set(FEATURES) <= set(FEATURE_FIELDS)
    assert "nps_decayed" in cluster_defining_fields(FEATURES) and "clv" in cluster_defining_fields(FEATURES)


def test_bad_input_is_refused() -> None:
    kpis = SegmentKPIs(30)
    with pytest.raises(ContractError, match="0-10"):
        kpis.add([("rule", "r")], {"nps": 11})
    with pytest.raises(ContractError, match="kind"):
        kpis.add([("persona", "p")], {})
    kpis.add([("cluster", "c1")], {}, [0.0, 1.0])
    with pytest.raises(ContractError, match="features"):
        kpis.add([("cluster", "c1")], {}, [0.0])
    with pytest.raises(ConfigurationError):
        SegmentKPIs(0)
    with pytest.raises(ConfigurationError):
        kpis.merge(SegmentKPIs(31))


def test_a_merge_that_disagrees_on_defining_fields_changes_nothing() -> None:
    a, b = SegmentKPIs(30, {"rule": ("clv",)}), SegmentKPIs(30, {"rule": ("country",)})
    a.add([("rule", "r")], {"clv": 1.0})
    b.add([("rule", "x")], {"clv": 2.0})
    b.add([("rule", "r")], {"clv": 3.0})
    before = a.figures()
    with pytest.raises(ConfigurationError, match="different fields"):
        a.merge(b)
    assert a.figures() == before and a.population == 1


def test_a_pass_under_models_with_other_features_merges_without_their_moments() -> None:
    """A model with other trait features installed during a sweep pass: the partitions' feature
    vectors have other lengths and cannot be summed; the pass's KPIs still merge, separation unknown."""
    from streams.processor import PopulationTally

    tally = PopulationTally(lambda: {0, 1}, lambda: SegmentKPIs(90))
    tally.batch(0, 1).kpis.add([("cluster", "c1")], {"clv": 10.0}, [0.5] * 9)
    tally.batch(1, 1).kpis.add([("cluster", "c1")], {"clv": 30.0}, [0.5] * 10)
    tally.complete(0)
    tally.complete(1)
    [c1] = tally.kpis().figures()
    assert c1["size"] == 2 and c1["clv_mean"] == 20.0 and c1["features"] is None


def test_a_declared_segment_no_one_is_in_is_reported_empty_and_fails_substantial() -> None:
    from models.scorecard import score

    kpis = SegmentKPIs(90).declare([("rule", "typo"), ("cluster", "c1")])
    kpis.add([("cluster", "c1")], {"clv": 5.0}, None)
    figures = {f["segment_id"]: f for f in kpis.figures()}
    assert figures["typo"]["size"] == 0 and figures["typo"]["share"] == 0.0
    assert score(list(figures.values())).failing()[("rule", "typo")] == ["substantial"]
    with pytest.raises(ContractError):
        kpis.declare([("persona", "x")])
