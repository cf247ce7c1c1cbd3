"""Optional trait features of the clustering (issue #21 item 2: SegmentationConfig.trait_features).

Off by default (tests/test_batch_engine.py, tests/test_replay.py and the field cases check that
today's segments do not move); here: the encodings, the wire, that a trait separates customers who
differ only in it while customers with the trait unknown are pulled toward neither group, and that
the batch path and the one-by-one path agree with trait features on.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timezone
from typing import Any, Sequence

import numpy as np
import orjson
import pytest

from models.clustering import Scaler
from models.config import EngineConfig, SegmentationConfig, ValueConfig
from models.features import FEATURES, FeatureBasis, basis_of, matrix_at, raw_matrix, vector_at
from models.pipeline import Pipeline, cluster_defining_fields
from models.segmentation import Segmenter
from models.state import CustomerState
from models.synthetic import generate_population
from models.valuation import pinned_valuation
from schemas.errors import ConfigurationError
from schemas.segment_change import SegmentChange
from streams.demo import RULES as EXAMPLE_RULES
from streams.replay import Replay

END = 1_767_225_600.0  # 2026-01-01
DAY = 86_400.0
VALUE = ValueConfig()
VALUATION = pinned_valuation(VALUE)


def test_off_by_default_and_the_basis_on_the_wire_is_as_before() -> None:
    assert SegmentationConfig().trait_features == ()
    assert Segmenter(SegmentationConfig()).features == FEATURES
    basis = basis_of(CustomerState("c"), VALUE)
    assert basis.traits is None and len(basis.to_list()) == 15  # the fields a worker always sent
    old = FeatureBasis.from_list(basis.to_list()[:13])  # a basis from a worker before nps_known and segment
    assert old.traits is None
    row = matrix_at([old], END, VALUATION, VALUE, ("age", "income_band"))[0]
    assert row.shape == (len(FEATURES) + 2,) and np.isnan(row[len(FEATURES):]).all()  # missing, not 0
    assert matrix_at([old], END, VALUATION, VALUE).shape == (1, len(FEATURES))


def test_only_offered_traits_can_be_features() -> None:
    assert SegmentationConfig(trait_features=["age", "company_size"]).trait_features == ("age", "company_size")
    with pytest.raises((ConfigurationError, ValueError), match="country"):
        SegmentationConfig(trait_features=["country"])
    with pytest.raises((ConfigurationError, ValueError), match="twice"):
        SegmentationConfig(trait_features=["age", "age"])


def _state(customer: str, **traits: Any) -> CustomerState:
    state = CustomerState(customer)
    for name, value in traits.items():
        state.traits[name] = (0.0, value)
    return state


def test_encodings_age_as_of_the_evaluation_time_and_ordinal_ranks() -> None:
    state = _state("c", birth_year=1990, household_size=3, income_band="upper_middle", education="doctorate",
                   company_size=None)
    basis = basis_of(state, VALUE, traits=True)
    names = ("age", "household_size", "income_band", "education", "company_size")
    in_2026 = vector_at(basis, END, VALUATION, VALUE, names)[len(FEATURES):]
    assert in_2026[:4] == [36.0, 3.0, 3.0, 5.0] and math.isnan(in_2026[4])  # cleared = unknown
    a_year_on = datetime(2027, 6, 1, tzinfo=timezone.utc).timestamp()
    assert vector_at(basis, a_year_on, VALUATION, VALUE, ("age",))[-1] == 37.0
    # Through the wire (a worker ships the basis to the trainer) and in a batch: the same figures.
    shipped = FeatureBasis.from_list(orjson.loads(orjson.dumps(basis.to_list())))
    batch = matrix_at([shipped, basis], np.array([END, a_year_on]), VALUATION, VALUE, names)
    np.testing.assert_array_equal(batch[0], np.array(vector_at(basis, END, VALUATION, VALUE, names)))
    assert batch[1, len(FEATURES)] == 37.0
    raw = raw_matrix(batch)
    np.testing.assert_array_equal(raw[:, len(FEATURES):], batch[:, len(FEATURES):])  # trait figures as is
    # A value outside the contract (a damaged message) is unknown, never a rank.
    assert math.isnan(vector_at(FeatureBasis(traits=(None, None, "rich", None, None)), END, VALUATION, VALUE,
                                ("income_band",))[-1])


def test_the_scaler_ignores_missing_values() -> None:
    m = np.array([[1.0, 0.0], [3.0, 4.0], [5.0, np.nan], [7.0, np.nan]])
    s = Scaler.fit(m)
    assert s.mean.tolist() == [4.0, 2.0] and s.std[1] == 2.0  # over the two known values
    assert s.transform(m)[2:, 1].tolist() == [0.0, 0.0]
    within = Scaler.fit(m, np.array([0, 0, 1, 1]))
    assert within.mean[1] == 2.0 and np.isfinite(within.std).all()
    # Without missing values the arithmetic is the one it always was.
    full = m[:2]
    assert Scaler.fit(full).std.tolist() == full.std(axis=0).tolist()


def _bases(income: str | None, n: int) -> list[FeatureBasis]:
    """``n`` customers of one behaviour (the same for every group), differing only in income."""
    first = int(END // DAY) - 400
    return [FeatureBasis(x=4, t_x=300, first_day=first, last_purchase_ts=END - 30 * DAY, monetary=50.0,
                         order_value=50.0, engagement=5.0, engagement_ref=END, satisfaction=8.0, purchase_count=5,
                         total_spend=250.0, nps_known=True, traits=(None, None, income, None, None))
            for _ in range(n)]


@pytest.mark.parametrize("standardise", ["within_segments", "population"])
def test_a_trait_separates_customers_identical_in_behaviour_and_unknowns_are_pulled_nowhere(standardise) -> None:
    low, high, unknown = _bases("low", 200), _bases("high", 200), _bases(None, 100)
    bases = low + high + unknown
    config = SegmentationConfig(n_segments=2, trait_features=["income_band"], min_customers_to_train=100,
                                standardise=standardise)
    snap = Segmenter(config).train(END, VALUATION, VALUE, bases)
    assert snap is not None
    assert snap.features == FEATURES + ("income_band",)
    matrix = matrix_at(bases, END, VALUATION, VALUE, snap.features[len(FEATURES):])
    assert np.isnan(matrix[400:, len(FEATURES)]).all()
    assigned = snap.assign_many(matrix)
    assert len(set(assigned[:200])) == 1 and len(set(assigned[200:400])) == 1
    assert assigned[0] != assigned[200]  # the two income bands are two segments
    column = len(FEATURES)
    assert snap.mean[column] == pytest.approx(2.0)  # ranks 0 and 4: the unknowns did not enter the mean
    z = snap.standardise(matrix)
    assert np.isfinite(z).all() and (z[400:, column] == 0.0).all()  # unknown: at the population mean
    # So an unknown customer is exactly as far from the one group as from the other: pulled toward neither.
    assert z[400, column] - z[0, column] == pytest.approx(z[200, column] - z[400, column])
    assert np.abs(z[:400, column]).min() > 0.5  # while the known ones stand apart
    # The labels describe behaviour (the same in both): no word is made of the trait.
    assert all("income" not in label for label in snap.labels)


def test_changing_the_trait_features_starts_a_new_model_with_new_ids() -> None:
    bases = _bases("low", 150) + _bases("high", 150)
    before = Segmenter(SegmentationConfig(n_segments=2, min_customers_to_train=100))
    old = before.train(END, VALUATION, VALUE, bases)
    assert old is not None and old.features == FEATURES
    after = Segmenter(SegmentationConfig(n_segments=2, min_customers_to_train=100, trait_features=["income_band"]))
    after.resume(old)
    new = after.train(END + DAY, VALUATION, VALUE, bases)
    assert new is not None and new.version == old.version + 1 and len(new.features) == len(FEATURES) + 1
    assert not set(new.segment_ids) & set(old.segment_ids)
    assert new.adoption["rule"] == "first_model"


def test_measurability_reads_the_trait_features_by_their_trait_names() -> None:
    pipeline = Pipeline(EngineConfig(segmentation=SegmentationConfig(trait_features=["age", "income_band"])))
    assert pipeline.cluster_defining_fields[-2:] == ("age", "income_band")
    assert cluster_defining_fields(["age", "income_band"]) == ("age", "income_band")
    assert Pipeline(EngineConfig()).cluster_defining_fields == cluster_defining_fields(
        f for f in FEATURES if f != "satisfaction")


# ---- the batch path and the one-by-one path agree (tests/test_batch_engine.py's reference) ----

class ReferencePipeline(Pipeline):
    """The per-customer path: a batch is evaluated one customer after the other."""

    def evaluate_many(self, states: Sequence[CustomerState], nows: Sequence[float]) -> list[list[SegmentChange]]:
        return [self.evaluate(state, now) for state, now in zip(states, nows)]


def events_with_traits() -> list[dict[str, Any]]:
    """The personas, each with a profile update (some traits unknown, some set twice)."""
    events = generate_population(300, seed=5, end=END).events
    rng = random.Random(11)
    customers = sorted({e["customer_id"] for e in events})
    bands = ["low", "lower_middle", "middle", "upper_middle", "high"]
    for i, cid in enumerate(customers):
        first = min(e["timestamp"] for e in events if e["customer_id"] == cid)
        traits: dict[str, Any] = {}
        if i % 5:
            traits["income_band"] = bands[(i * 7) % 5]
        if i % 3:
            traits["birth_year"] = 1950 + rng.randint(0, 50)
        if i % 4:
            traits["household_size"] = rng.randint(1, 6)
        events.append({"type": "profile", "event_id": f"{cid}-profile", "customer_id": cid, "timestamp": first,
                       **traits})
    return events


def replayed(pipeline_class: type[Pipeline], events: list[dict[str, Any]]) -> tuple[list[bytes], list[bytes], Any]:
    changes: list[bytes] = []
    cfg = EngineConfig(segmentation=SegmentationConfig(
        train_every_events=2000, rules_file=str(EXAMPLE_RULES), trait_features=["age", "income_band", "household_size"]))
    replay = Replay(cfg, END, on_change=lambda c: changes.append(c.model_dump_json().encode()),
                    sweep_every_s=7 * DAY, pipeline=pipeline_class(cfg, auto_refit=False))
    for i, event in enumerate(sorted(events, key=lambda e: e["timestamp"])):
        replay.feed(i, orjson.dumps(event))
    replay.finish()
    return changes, [orjson.dumps(p) for p in replay.profiles()], replay.pipeline.snapshot


def test_with_trait_features_the_batch_engine_emits_what_one_by_one_does() -> None:
    data = events_with_traits()
    batch_changes, batch_profiles, snap = replayed(Pipeline, data)
    reference_changes, reference_profiles, _ = replayed(ReferencePipeline, data)
    assert snap is not None and snap.features == FEATURES + ("age", "income_band", "household_size")
    assert np.isfinite(snap.mean).all() and np.isfinite(snap.centroids).all()
    assert len(batch_changes) > 100
    assert {orjson.loads(c)["kind"] for c in batch_changes} == {"cluster", "rule"}
    assert batch_changes == reference_changes
    assert batch_profiles == reference_profiles
