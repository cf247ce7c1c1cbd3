"""Words that are true: labels backed by figures and stable per id, retired segments named, NPS
unknown as unknown, the worker's own entered/left counts, offline sizes, drivers that explain."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from models.cdnow import read_transactions
from models.config import EngineConfig, SegmentationConfig
from models.features import FEATURES, NEUTRAL_NPS, PURCHASE_FEATURES, FeatureBasis, matrix_at, raw_matrix
from models.figures import PopulationFigures, SegmentFigures
from models.labels import MATERIAL_FACTOR, MATERIAL_GAP, WORDS, backed, choose_words, stable_labels
from models.pipeline import Pipeline
from models.segmentation import Segmenter
from models.snapshot import ModelSnapshot
from models.synthetic import generate_population
from models.valuation import Valuation
from schemas.events import parse_event
from streams import documents
from streams.replay import Replay, run_replay
from streams.tail import format_drivers

F = {name: i for i, name in enumerate(FEATURES)}
#: A population the words' backing figures stand apart from (rule 3: models.labels.material).
POP = PopulationFigures(
    p25={"value": 20.0, "frequency": 1.0, "recency": 30.0, "p_alive": 0.4, "order_value": 20.0, "engagement": 0.2,
         "satisfaction": 6.0, "cost_to_serve": 0.0, "tenure": 150.0},
    median={"value": 60.0, "frequency": 3.0, "recency": 90.0, "p_alive": 0.6, "order_value": 40.0, "engagement": 1.0,
            "satisfaction": 7.0, "cost_to_serve": 0.2, "tenure": 300.0},
    p75={"value": 150.0, "frequency": 8.0, "recency": 200.0, "p_alive": 0.8, "order_value": 80.0, "engagement": 3.0,
         "satisfaction": 8.0, "cost_to_serve": 1.0, "tenure": 450.0})


def figures(**median: float) -> SegmentFigures:
    return SegmentFigures(members=100, buyers_share=1.0, nps_answered_share=1.0, median=median,
                          mean_clv=median.get("value"))


def z_toward(word: str, strength: float = 2.0) -> np.ndarray:
    w = next(w for w in WORDS if w.word == word)
    z = np.zeros(len(FEATURES))
    z[F[w.feature]] = w.direction * strength
    return z


# ---- 1. words backed by absolute figures ---------------------------------------------------------

@pytest.mark.parametrize("word, contradicting, backing", [
    ("new", {"tenure": 480.0}, {"tenure": 40.0}),
    ("recent", {"recency": 12_071.0}, {"recency": 12.0}),
    ("high value", {"value": 0.0}, {"value": 300.0}),
    ("lapsed", {"recency": 20.0}, {"recency": 400.0}),
    ("long-standing", {"tenure": 30.0}, {"tenure": 700.0}),
    ("frequent", {"frequency": 1.0}, {"frequency": 30.0}),
    ("churn risk", {"p_alive": 0.9}, {"p_alive": 0.1}),
    ("likely active", {"p_alive": 0.99, "frequency": 0.0, "recency": 20.0},
     {"p_alive": 0.99, "frequency": 4.0, "recency": 20.0}),
])
def test_a_word_the_figures_contradict_is_never_said(word, contradicting, backing) -> None:
    z = z_toward(word)  # the segment stands out on the word's feature, as far as z-scores go
    fig = figures(satisfaction=7.5, **contradicting)
    if "satisfaction" not in contradicting:
        fig = replace(fig, nps_answered_share=0.0)
    assert word not in choose_words(z, fig, POP)
    assert word in choose_words(z, replace(fig, median={**fig.median, **backing}, mean_clv=backing.get("value")), POP)


#: Per word: the segment's figures (backing the word's own rule), a population whose median is
#: close to them (the word's rule still holds on its quartiles, but the word would not set the
#: segment apart) and one whose median is far from them: (segment medians, close, far), each
#: population given as (p25, median, p75) of the word's feature.
APART = {
    "high value": ({"value": 300.0}, (100.0, 290.0, 290.0), (20.0, 100.0, 200.0)),
    "low value": ({"value": 5.0}, (5.5, 5.5, 30.0), (10.0, 50.0, 100.0)),
    "frequent": ({"frequency": 10.0}, (1.0, 9.0, 9.0), (1.0, 3.0, 6.0)),
    "infrequent": ({"frequency": 0.0}, (0.0, 0.0, 1.0), (2.0, 5.0, 9.0)),
    "recent": ({"recency": 10.0}, (5.0, 12.0, 40.0), (30.0, 90.0, 200.0)),
    "lapsed": ({"recency": 480.0}, (218.0, 474.0, 507.0), (50.0, 200.0, 300.0)),
    "likely active": ({"p_alive": 0.95, "frequency": 4.0, "recency": 20.0}, (0.8, 0.9, 0.97), (0.3, 0.5, 0.7)),
    "churn risk": ({"p_alive": 0.2}, (0.1, 0.3, 0.5), (0.5, 0.8, 0.9)),
    "big baskets": ({"order_value": 80.0}, (50.0, 75.0, 75.0), (20.0, 40.0, 60.0)),
    "small baskets": ({"order_value": 15.0}, (16.0, 16.0, 30.0), (20.0, 40.0, 60.0)),
    "engaged": ({"engagement": 5.0}, (1.0, 4.8, 4.8), (0.2, 1.0, 2.0)),
    "disengaged": ({"engagement": 0.0}, (0.1, 0.1, 1.0), (0.5, 2.0, 4.0)),
    "promoter": ({"satisfaction": 9.5}, (8.0, 9.0, 10.0), (6.0, 7.0, 8.0)),
    "detractor": ({"satisfaction": 5.0}, (3.0, 5.5, 7.0), (6.0, 7.5, 9.0)),
    "costly to serve": ({"cost_to_serve": 2.0}, (0.5, 1.8, 1.8), (0.0, 0.0, 0.5)),
    "long-standing": ({"tenure": 700.0}, (500.0, 650.0, 800.0), (100.0, 300.0, 450.0)),
    "new": ({"tenure": 30.0}, (20.0, 35.0, 60.0), (150.0, 300.0, 450.0)),
}


def population_of(feature: str, quartiles: tuple[float, float, float]) -> PopulationFigures:
    p25, median, p75 = quartiles
    return PopulationFigures(p25={**POP.p25, feature: p25}, median={**POP.median, feature: median},
                             p75={**POP.p75, feature: p75})


def test_every_word_has_a_case_where_it_sets_the_segment_apart_and_one_where_it_does_not() -> None:
    assert set(APART) == {w.word for w in WORDS}


@pytest.mark.parametrize("word", sorted(APART))
def test_a_word_whose_figure_is_the_populations_is_never_said(word) -> None:
    """"lapsed (480 days; population median 474)": true of the segment, but of the population too,
    so it does not say what sets the segment apart (models.labels rule 3)."""
    w = next(w for w in WORDS if w.word == word)
    medians, close, far = APART[word]
    fig = figures(**medians)
    assert word not in choose_words(z_toward(word), fig, population_of(w.feature, close))
    assert not backed(word, fig, population_of(w.feature, close))
    assert word in choose_words(z_toward(word), fig, population_of(w.feature, far))


def test_a_kept_word_has_hysteresis_on_its_distance_from_the_population() -> None:
    """A word already in the id's label stays while its figure is at least half the material
    distance from the population's; a fresh label needs the whole distance."""
    fig = figures(recency=600.0)  # lapsed; the population's median 474 days: 1.27 times it
    pop = population_of("recency", (218.0, 474.0, 507.0))
    assert "lapsed" not in choose_words(z_toward("lapsed"), fig, pop)
    assert stable_labels(["c1"], [[]], [fig], pop, {"c1": ("lapsed", ["lapsed"])}) == (["lapsed"], [["lapsed"]])
    nearer = figures(recency=520.0)  # 1.10 times: the segment changed, the word goes
    assert stable_labels(["c1"], [[]], [nearer], pop, {"c1": ("lapsed", ["lapsed"])}) == (["typical"], [[]])


def test_purchase_words_need_buyers_and_nps_words_need_answers() -> None:
    # Medians are over buyers / answerers; a segment mostly without them gets no such word.
    few_buyers = replace(figures(recency=5.0, satisfaction=10.0), buyers_share=0.2, nps_answered_share=0.2)
    words = choose_words(z_toward("recent") + z_toward("promoter"), few_buyers, POP)
    assert "recent" not in words and "promoter" not in words and words[0] == "no purchase yet"


@pytest.fixture(scope="module")
def trained() -> tuple[Segmenter, ModelSnapshot, np.ndarray, list]:
    """A segmenter trained on a persona population (1 training), with its sample's features; a
    third of the customers never answer an NPS survey."""
    pop = generate_population(800, seed=3)
    r = Replay(EngineConfig(segmentation=SegmentationConfig(train_every_events=10**9)), pop.end)
    silent = {c for i, c in enumerate(sorted(pop.personas)) if i % 3 == 0}
    for i, e in enumerate(pop.events):
        if not (e.get("kind") == "nps" and e["customer_id"] in silent):
            r.feed(i, orjson.dumps(e))
    r.finish()
    seg = r.pipeline.segmenter
    bases = seg.sample.values()
    matrix = matrix_at(bases, pop.end, r.engine.valuation, r.config.value)
    return seg, seg.snapshot, matrix, bases


def test_every_word_of_a_trained_label_holds_on_the_members_own_figures(trained) -> None:
    """Recomputed here from the members' raw features, independently of models.figures."""
    seg, snap, matrix, bases = trained
    raw = raw_matrix(matrix)
    nearest = snap.assign_many(matrix)
    bought = np.array([b.first_day is not None for b in bases])
    answered = np.array([b.answered_nps for b in bases])

    def having(feature: str) -> np.ndarray:  # the customers with a figure of the feature
        return bought if feature in PURCHASE_FEATURES else answered if feature == "satisfaction" else np.ones_like(bought)

    said = Counter()
    for i, sid in enumerate(snap.segment_ids):
        inside = nearest == i
        buyers = inside & bought

        def med(feature: str) -> float:
            return float(np.median(raw[inside & having(feature), F[feature]]))

        for word in snap.stats[sid]["words"]:
            said[word] += 1
            w = next((w for w in WORDS if w.word == word), None)
            if w is not None:  # rule 3: the word's figure differs materially from the population's
                pop_median = float(np.median(raw[having(w.feature), F[w.feature]]))
                v = raw[buyers, F["value"]].mean() if word == "high value" else med(w.feature)
                assert w.direction * (v - pop_median) >= MATERIAL_GAP[w.feature], (word, v, pop_median)
                if w.feature not in ("p_alive", "satisfaction"):
                    assert (v >= MATERIAL_FACTOR * pop_median if w.direction > 0
                            else v * MATERIAL_FACTOR <= pop_median), (word, v, pop_median)
            if word == "new":
                assert med("tenure") <= 90
            elif word == "long-standing":
                assert med("tenure") >= 365
            elif word == "recent":
                assert med("recency") <= 30
            elif word == "lapsed":
                assert med("recency") >= 180
            elif word == "high value":
                all_clv = raw[bought, F["value"]]
                assert raw[buyers, F["value"]].mean() > max(np.quantile(all_clv, 0.75), 0)
            elif word == "no purchase yet":
                assert bought[inside].mean() < 0.5
        assert snap.label(sid).startswith(" · ".join(snap.stats[sid]["words"]) or "typical")
    assert sum(said.values()) >= len(snap.segment_ids)  # the personas are told apart by words


def test_figures_and_labels_are_over_the_members_not_the_nearest_centre(trained) -> None:
    """With margin and dwell a segment's members are not the customers nearest to its centre: a
    make-run replay had segments with 0 members described by 325 nearest customers, and a
    "recent" segment holding customers 200 days lapsed. The bases carry each customer's segment,
    and every figure of a segment with members in the sample is over those members."""
    seg, snap, matrix, bases = trained
    nearest = snap.assign_many(matrix)
    emptied, holder = snap.segment_ids[0], snap.segment_ids[1]
    # Customers nearest to `emptied` are still held by `holder` (dwell not over): `emptied` has no
    # member, `holder` has its own customers plus those.
    held = [holder if snap.segment_ids[j] == emptied else snap.segment_ids[j] for j in nearest]
    with_members = [replace(b, segment=s) for b, s in zip(bases, held)]
    trainer = Segmenter(seg.config, seg.rules)  # a trainer: it sees the sample, it assigns nobody
    trainer.resume(snap)
    for cid, basis in zip(seg.sample.ids(), with_members):
        trainer.observe(cid, basis)
    again = adopted_training(trainer, snap, with_members)
    assert {emptied, holder} <= set(again.segment_ids)

    raw = raw_matrix(matrix_at(with_members, again.created_at, Valuation.from_dict(again.valuation),
                               EngineConfig().value))
    bought = np.array([b.first_day is not None for b in bases])
    answered = np.array([b.answered_nps for b in bases])
    mine = np.array([s == holder for s in held])
    stats = again.stats[holder]
    assert stats["figures_over"].startswith("members")
    assert stats["figures"]["members"] == int(mine.sum())
    assert stats["member_share"] == round(mine.mean(), 4)
    for feature in FEATURES:  # each median recomputed here over the members who have the figure
        having = bought if feature in PURCHASE_FEATURES else answered if feature == "satisfaction" else mine | True
        values = raw[mine & having, F[feature]]
        expected = round(float(np.median(values)), 3) if len(values) else None
        assert stats["figures"]["median"][feature] == pytest.approx(expected, abs=1e-3), feature
    assert stats["mean_clv"] == pytest.approx(np.expm1(np.log1p(raw[mine & bought, F["value"]])).mean(), abs=0.01)

    # The segment nobody is in yet: no member, size 0; its figures say they are of the nearest.
    empty = again.stats[emptied]
    assert empty["member_share"] == 0.0 and empty["size"] == 0
    assert stats["size"] == round(mine.mean() * trainer.sample.population_estimate())
    assert empty["figures_over"].startswith("the sampled customers nearest")
    assert empty["sample_share"] > 0  # the model still places customers there


# ---- 2. stable labels; retired ids keep theirs --------------------------------------------------

def test_an_id_keeps_its_label_while_the_figures_back_it(trained) -> None:
    seg, snap, matrix, bases = trained
    sid = next(s for s in snap.segment_ids if len(snap.stats[s]["words"]) >= 2)
    words = snap.stats[sid]["words"]
    kept_words = words[::-1]  # other wording, every word still backed
    i = snap.index(sid)
    other = next(s for s in snap.segment_ids
                 if s != sid and (snap.stats[s]["figures"]["median"]["tenure"] or 0) > 90)
    j = snap.index(other)
    labels = list(snap.labels)
    labels[i], labels[j] = " · ".join(kept_words), "new"  # "new" is false for `other`
    stats = {**snap.stats, sid: {**snap.stats[sid], "words": kept_words},
             other: {**snap.stats[other], "words": ["new"]}}
    seg.install(replace(snap, labels=tuple(labels), stats=stats))
    again = adopted_training(seg, snap, bases)
    assert again.label(sid) == " · ".join(kept_words)  # kept: still true
    assert again.label(other) != "new" and "new" not in again.stats[other]["words"]  # replaced: false
    # The replaced label is on record: since which version, what it was, and as a lifecycle event
    # (a campaign keyed on the id learns its segment is described otherwise; the worker logs it).
    assert again.stats[other]["label_since_version"] == again.version
    assert again.stats[other]["previous_label"] == "new"
    assert {"kind": "relabelled", "segment_id": other, "version": again.version, "at": again.created_at,
            "from": "new", "to": again.label(other)} in again.lifecycle
    assert sid not in {e["segment_id"] for e in again.lifecycle if e["kind"] == "relabelled"}
    assert again.stats[sid]["label_since_version"] <= snap.version  # kept: its date is the old one


def adopted_training(seg: Segmenter, snap: ModelSnapshot, bases: list) -> ModelSnapshot:
    """A training whose model is adopted whatever its gain: retraining on unchanged data publishes
    nothing (the adoption rule, docs/segmentation.md 6b), and naming happens at an adoption."""
    kept = seg.config
    seg.config = kept.model_copy(update={"adopt_min_gain": -1.0, "adopt_max_moved_share": 1.0})
    try:
        new = seg.train(snap.created_at, Valuation.from_dict(snap.valuation), EngineConfig().value, bases=bases)
    finally:
        seg.config = kept
    assert new is not None
    return new


def test_stable_labels_rule() -> None:
    fig = figures(recency=12.0, tenure=500.0)
    fresh = [["long-standing"]]
    assert stable_labels(["c1"], fresh, [fig], POP, {"c1": ("recent", ["recent"])})[0] == ["recent"]
    assert stable_labels(["c1"], fresh, [fig], POP, {"c1": ("new", ["new"])})[0] == ["long-standing"]
    assert stable_labels(["c1"], fresh, [fig], POP, {"c1": ("old wording", None)})[0] == ["long-standing"]


def test_a_change_leaving_a_retired_segment_names_it_by_its_last_label(trained) -> None:
    seg, snap, matrix, bases = trained
    gone = "c999"
    far = np.full((1, len(FEATURES)), 50.0)
    snap = seg.snapshot  # the latest version (other tests train too)
    seg.install(replace(snap, segment_ids=snap.segment_ids + (gone,), labels=snap.labels + ("lapsed big spenders",),
                        descriptions=snap.descriptions + ("",), centroids=np.vstack([snap.centroids, far])))
    new = adopted_training(seg, snap, bases)
    assert gone not in new.segment_ids and new.label(gone) == "lapsed big spenders"
    loaded = ModelSnapshot.from_bytes(new.to_bytes())
    assert loaded.retired_labels[gone] == "lapsed big spenders"

    worker = Pipeline(EngineConfig(), train_locally=False)
    worker.install(loaded)
    (e,) = [e for e in generate_population(5, seed=1, end=loaded.created_at).events if e["type"] == "purchase"][:1]
    state = worker.new_state(e["customer_id"])
    worker.apply(state, parse_event(orjson.dumps(e)), now=loaded.created_at)
    state.cluster, state.cluster_since = gone, 0.0
    (change,) = [c for c in worker.evaluate(state, loaded.created_at) if c.kind.value == "cluster"]
    assert change.reason.code.value == "segment_retired"
    assert change.previous_segment.id == gone and change.previous_segment.label == "lapsed big spenders"


def test_a_snapshot_from_before_words_and_retired_labels_still_loads(trained) -> None:
    _, snap, _, _ = trained
    doc = snap.to_dict()
    del doc["retired_labels"], doc["population"]
    old = ModelSnapshot.from_dict(doc)
    assert old.retired_labels == {} and old.label("c999") == "c999" and old.segment_ids == snap.segment_ids


# ---- 3. unknown NPS is unknown ---------------------------------------------------------------------

def test_nps_mix_counts_customers_without_an_answer_as_unknown(trained) -> None:
    seg, snap, matrix, bases = trained
    nearest = snap.assign_many(matrix)
    answered = np.array([b.answered_nps for b in bases])
    assert answered.any() and not answered.all()
    for i, sid in enumerate(snap.segment_ids):
        inside = nearest == i
        mix = snap.stats[sid]["nps_mix"]
        assert mix["unknown"] == pytest.approx(1 - answered[inside].mean(), abs=1e-3)
        if answered[inside].any():
            nps = matrix[inside & answered, F["satisfaction"]]
            assert mix["passive"] == pytest.approx(((nps >= 7) & (nps < 9)).mean(), abs=1e-3)
            assert mix["promoter"] + mix["passive"] + mix["detractor"] == pytest.approx(1, abs=2e-3)


def test_cdnow_has_no_nps_so_its_mix_is_all_unknown(cdnow_run) -> None:
    replay, snap = cdnow_run
    for sid, st in snap.stats.items():
        if st["figures"]["members"]:  # a segment with no member in the sample has no mix at all
            assert st["nps_mix"]["unknown"] == 1.0 and st["nps_mix"]["passive"] is None
        else:
            assert st["nps_mix"]["unknown"] is None and snap.label(sid) == "no members in the training sample"


def test_a_passive_answer_is_an_answer() -> None:
    from datetime import datetime, timezone

    from models.features import basis_of
    state = Pipeline(EngineConfig()).new_state("c")
    event = parse_event(orjson.dumps({"type": "feedback", "event_id": "f1", "customer_id": "c", "kind": "nps",
                                      "score": 7, "timestamp": "2026-01-01T00:00:00+00:00"}))
    Pipeline(EngineConfig()).apply(state, event, now=datetime(2026, 1, 2, tzinfo=timezone.utc).timestamp())
    basis = basis_of(state, EngineConfig().value)
    assert basis.satisfaction == NEUTRAL_NPS and basis.answered_nps


def test_rule_percentiles_see_no_nps_for_a_customer_who_never_answered() -> None:
    from models.features import profiles_at
    never, passive = FeatureBasis(nps_known=False), FeatureBasis(nps_known=True)
    rows = profiles_at([never, passive], np.zeros((2, len(FEATURES))))
    assert [r["nps_decayed"] for r in rows] == [None, NEUTRAL_NPS]


def test_a_basis_from_an_older_worker_says_whether_nps_was_answered() -> None:
    before = FeatureBasis.__slots__.index("nps_known")  # the fields an older worker sends
    old_wire = FeatureBasis(satisfaction=NEUTRAL_NPS, nps_known=True).to_list()[:before]
    assert not FeatureBasis.from_list(old_wire).answered_nps
    assert FeatureBasis.from_list(FeatureBasis(satisfaction=9.0, nps_known=False).to_list()[:before]).answered_nps
    assert FeatureBasis.from_list(FeatureBasis(segment="c3").to_list()[:before]).segment is None


# ---- 4. the worker's entered/left counts; offline sizes ---------------------------------------------

def test_the_workers_segments_document_counts_the_changes_it_emitted(trained) -> None:
    _, snap, _, _ = trained
    worker = Pipeline(EngineConfig(), train_locally=False)  # assigns only, as in a worker
    worker.install(snap)
    states: dict = {}
    emitted = Counter()
    left = Counter()
    for e in generate_population(120, seed=9, end=snap.created_at).events:
        state = states.setdefault(e["customer_id"], worker.new_state(e["customer_id"]))
        out = worker.process(state, parse_event(orjson.dumps(e)), now=snap.created_at)
        for c in out.changes:
            if c.kind.value == "cluster":
                emitted[c.segment.id] += 1
                if c.previous_segment:
                    left[c.previous_segment.id] += 1
    assert sum(emitted.values()) > 0
    # The sweep's tally of memberships (what PopulationTally hands the metrics at the end of a pass)
    tally = Counter(("cluster", st.cluster) for st in states.values() if st.cluster)
    rt = SimpleNamespace(pipeline=worker, started_at=0.0,
                         metrics=SimpleNamespace(population_counts=dict(tally), kpis=None))
    doc = documents.segments_document(rt)
    counted = {s["id"]: (s["entered_since_worker_start"], s["left_since_worker_start"]) for s in doc["segments"]}
    assert counted == {sid: (emitted[sid], left[sid]) for sid in snap.segment_ids}
    assert doc["changes_counted"]["since"].startswith("1970-01-01")
    # members: the customers in each segment (margin and dwell applied), 0 for an empty one
    assert {s["id"]: s["members"] for s in doc["segments"]} == {sid: tally[("cluster", sid)] for sid in snap.segment_ids}
    assert sum(s["members"] for s in doc["segments"]) == sum(1 for st in states.values() if st.cluster)
    rt.metrics.population_counts = None
    assert all(s["members"] is None for s in documents.segments_document(rt)["segments"])
    assert documents.segments_document(rt)["members_counted"].startswith("not counted yet")


@pytest.fixture(scope="module")
def cdnow_run(tmp_path_factory) -> tuple[Replay, ModelSnapshot]:
    """CDNOW through the replay with a training every 1,000 events, as in the demo."""
    tmp = tmp_path_factory.mktemp("cdnow")
    events = tmp / "cdnow.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in read_transactions()))
    config = EngineConfig(segmentation=SegmentationConfig(train_every_events=1000))
    as_of = 899_251_200.0  # 1998-07-01
    run_replay(events, as_of, config, tmp / "profiles.jsonl", snapshot_out=tmp / "snap.json")
    profiles = [orjson.loads(line) for line in (tmp / "profiles.jsonl").read_bytes().splitlines()]
    return profiles, ModelSnapshot.from_bytes((tmp / "snap.json").read_bytes())


def test_offline_snapshot_sizes_are_the_segments_members(cdnow_run) -> None:
    profiles, snap = cdnow_run
    members = Counter(p["segment"]["id"] for p in profiles if "segment" in p)
    assert sum(members.values()) == len(profiles) == 2357
    assert {sid: st["size"] for sid, st in snap.stats.items()} == {sid: members[sid] for sid in snap.segment_ids}


# ---- 5. drivers that explain -----------------------------------------------------------------------

def driver_snapshot() -> ModelSnapshot:
    d = len(FEATURES)
    old, new = np.zeros(d), np.zeros(d)
    new[F["value"]], new[F["recency"]], new[F["engagement"]], new[F["p_alive"]] = 2.0, -1.5, 1.0, 0.6
    new[F["order_value"]] = 0.3  # hardly apart on order value
    median = {f: 1.0 for f in FEATURES}
    pop = PopulationFigures(p25=median, median={**median, "value": 95.0}, p75=median)
    stats = {"c1": {"figures": {"median": {**median, "value": 60.0, "engagement": 0.5}}},
             "c2": {"figures": {"median": {**median, "value": 640.0, "engagement": 2.0}}}}
    return ModelSnapshot(version=1, created_at=0.0, algorithm="kmeans", features=FEATURES, mean=np.zeros(d),
                         std=np.ones(d), centroids=np.vstack([old, new]), segment_ids=("c1", "c2"),
                         labels=("a", "b"), descriptions=("", ""), stats=stats, population=pop.to_dict())


def test_drivers_leave_out_average_and_non_separating_features() -> None:
    snap = driver_snapshot()
    seg = Segmenter(SegmentationConfig())
    z = np.zeros(len(FEATURES))
    z[F["value"]] = math.log1p(812.0)  # std 1, mean 0: z is the feature itself (log CLV ≈ 6.7)
    z[F["recency"]] = -0.1  # segments differ on recency, but the customer is average: explains nothing
    z[F["p_alive"]] = 0.4  # average too, although closer to the new segment's 0.6 than the old 0
    z[F["order_value"]] = 3.0  # the customer stands out, but the segments hardly differ on it
    z[F["engagement"]] = 0.9  # stands out and the segments differ (1.5 actions; 2.0 vs 0.5, population 1.0)
    z[F["satisfaction"]] = 2.0
    drivers = seg._drivers(snap, list(z), "c1", "c2", frozenset(FEATURES))
    names = [d["feature"] for d in drivers]
    assert names[0] == "value" and "engagement" in names
    assert not {"recency", "p_alive", "order_value", "satisfaction"} & set(names)
    value = drivers[0]
    assert value["text"] == "CLV 812 USD, segment typical 640 USD (previous segment 60 USD), population median 95 USD"
    assert format_drivers({"drivers": drivers}).startswith("CLV 812 USD, segment typical 640 USD")


def test_a_feature_the_customer_has_no_figure_for_is_never_a_driver() -> None:
    snap = driver_snapshot()
    z = np.zeros(len(FEATURES))
    z[F["value"]] = 3.0
    z[F["engagement"]] = 2.0
    seg = Segmenter(SegmentationConfig())
    assert [d["feature"] for d in seg._drivers(snap, list(z), "c1", "c2", frozenset({"engagement"}))] == ["engagement"]
    assert seg._drivers(snap, [0.0] * len(FEATURES), None, "c2", frozenset(FEATURES)) == []  # average everywhere


def one_feature_snapshot(feature: str, centroid: float, new_typical: float, previous_typical: float,
                         population_median: float) -> ModelSnapshot:
    """Two segments c1 (previous) and c2 (new) apart on ``feature`` only, the new one ``centroid``
    standard deviations from the population (mean 0, std 1: z is the feature itself), with the
    raw medians (typicals) given."""
    d = len(FEATURES)
    old, new = np.zeros(d), np.zeros(d)
    new[F[feature]] = centroid
    median = {f: 1.0 for f in FEATURES}
    pop = PopulationFigures(p25=median, median={**median, feature: population_median}, p75=median)
    stats = {"c1": {"figures": {"median": {**median, feature: previous_typical}}},
             "c2": {"figures": {"median": {**median, feature: new_typical}}}}
    return ModelSnapshot(version=1, created_at=0.0, algorithm="kmeans", features=FEATURES, mean=np.zeros(d),
                         std=np.ones(d), centroids=np.vstack([old, new]), segment_ids=("c1", "c2"),
                         labels=("a", "b"), descriptions=("", ""), stats=stats, population=pop.to_dict())


def drivers_of(snap: ModelSnapshot, feature: str, customer: float, previous: str | None) -> list[dict]:
    """The drivers of a move into c2 (from ``previous``) of a customer whose raw figure is
    ``customer`` and who is average on every other feature."""
    vector = np.zeros(len(FEATURES))
    vector[F[feature]] = customer if feature in ("p_alive", "satisfaction") else math.log1p(customer)
    return Segmenter(SegmentationConfig())._drivers(snap, list(vector), previous, "c2", frozenset(FEATURES))


@pytest.mark.parametrize("feature, centroid, customer, new_typical, previous, previous_typical, pop_median, said", [
    # "days since last purchase 30, segment typical 30, population median 30": the customer is the
    # population's median, the segment's typical too; the centroids differ, the medians don't
    ("recency", 3.0, 30.0, 30.0, None, 999.0, 30.0, False),
    ("recency", 3.0, 30.0, 31.0, None, 999.0, 30.0, False),  # the customer is not apart from the population
    ("recency", 3.0, 120.0, 100.0, None, 999.0, 30.0, True),  # more days than the population, like the segment
    # the customer spends more than the population while the move is to the segment that spends less
    ("value", 2.0, 800.0, 60.0, "c1", 640.0, 95.0, False),
    ("value", 2.0, 800.0, 640.0, "c1", 60.0, 95.0, True),
    # spends more than the population, the way the move goes, but is nearer the previous segment's typical
    ("value", 2.0, 300.0, 640.0, "c1", 60.0, 95.0, False),
    ("value", 2.0, 400.0, 640.0, "c1", 60.0, 95.0, True),
    # the same side of the population as the move, but on the previous segment's side of it
    ("p_alive", 1.0, 0.55, 0.5, "c1", 0.2, 0.6, False),
    ("p_alive", 1.0, 0.9, 0.8, "c1", 0.2, 0.6, True),
    ("p_alive", 1.0, 0.996, 0.997, None, 0.2, 0.998, False),  # all "1.00" as quoted
])
def test_a_driver_is_literally_true_in_the_figures_it_quotes(feature, centroid, customer, new_typical, previous,
                                                             previous_typical, pop_median, said) -> None:
    """The customer's figure stands apart from the population median on the side the new segment's
    typical stands from the previous segment's (the population median's, on a first assignment),
    and is closer to the new typical than to that reference; else no driver, even though the
    standardised centroids and the customer's z-score say otherwise."""
    snap = one_feature_snapshot(feature, centroid, new_typical, previous_typical, pop_median)
    drivers = drivers_of(snap, feature, customer, previous)
    assert [d["feature"] for d in drivers] == ([feature] if said else []), [d["text"] for d in drivers]


def test_a_description_compares_a_figure_with_the_population_figure_of_the_same_kind() -> None:
    """'high value' is a mean CLV judged against the population's 75th percentile: the description
    quoted the population *median* beside it (the new user's report: 'mean CLV 48; population
    median 6' read as a comparison the rule never made)."""
    from models.figures import PopulationFigures, SegmentFigures
    from models.labels import describe_words

    pop = PopulationFigures(p25={"value": 2.0, "recency": 20.0}, median={"value": 6.0, "recency": 60.0},
                            p75={"value": 30.0, "recency": 200.0})
    seg = SegmentFigures(members=40, buyers_share=1.0, nps_answered_share=0.0,
                         median={"value": 40.0, "recency": 12.0}, mean_clv=48.0)
    text = describe_words(["high value", "recent"], seg, pop)
    assert text == ("high value (mean CLV 48 USD; population 75th percentile 30 USD); "
                    "recent (median days since last purchase 12; population median 60)")
