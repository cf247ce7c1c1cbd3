"""Drift monitoring: river's detectors wired to features, distances and snapshots."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.drift import DriftMonitor, DriftSignal, SnapshotDrift, total_variation_distance

NAMES = ("value", "frequency", "recency", "p_alive", "order_value", "engagement", "satisfaction",
         "cost_to_serve", "tenure")
SHIFT_AT = 10_000  # samples before the injected change


def feed(monitor: DriftMonitor, rows: np.ndarray) -> list[DriftSignal]:
    signals: list[DriftSignal] = []
    for row in rows:
        signals += monitor.observe_features(row)
    return signals


# -- feature detectors ---------------------------------------------------------------------------

@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stationary_features_raise_at_most_one_alarm_per_feature(detector: str, seed: int) -> None:
    rows = np.random.default_rng(seed).standard_normal((20_000, len(NAMES)))
    monitor = DriftMonitor(NAMES, feature_detector=detector)
    signals = feed(monitor, rows)
    assert all(monitor.detections[name] <= 1 for name in NAMES), monitor.detections
    assert len(signals) == sum(monitor.detections[name] for name in NAMES)
    assert monitor.samples_seen == 20_000


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
@pytest.mark.parametrize("seed", [10, 11, 12])
def test_mean_shift_is_detected_on_that_feature_only(detector: str, seed: int) -> None:
    rows = np.random.default_rng(seed).standard_normal((20_000, len(NAMES)))
    rows[SHIFT_AT:, NAMES.index("recency")] += 1.5
    signals = feed(DriftMonitor(NAMES, feature_detector=detector), rows)

    on_target = [s for s in signals if s.feature == "recency"]
    assert [s.sample_index for s in on_target if s.sample_index <= SHIFT_AT] == []
    first = on_target[0].sample_index
    assert SHIFT_AT < first <= SHIFT_AT + 1_000
    assert on_target[0].kind == "feature" and "recency" in on_target[0].detail
    assert len([s for s in signals if s.feature != "recency"]) <= 1  # false alarms elsewhere


def test_adwin_signal_reports_the_new_level() -> None:
    rows = np.random.default_rng(3).standard_normal((12_000, 2))
    rows[SHIFT_AT:, 0] += 3.0
    signal = feed(DriftMonitor(("a", "b")), rows)[0]
    assert signal.value > 1.0  # recent-window mean: mostly post-change samples


def test_page_hinkley_features_are_calibrated_to_their_scale() -> None:
    # Not standardised (std 50 around 1000): the warm-up scale keeps the thresholds meaningful.
    rng = np.random.default_rng(4)
    rows = 1000.0 + 50.0 * rng.standard_normal((20_000, 3))
    rows[SHIFT_AT:, 1] += 75.0  # 1.5 std
    monitor = DriftMonitor(("a", "b", "c"), feature_detector="page_hinkley")
    signals = feed(monitor, rows)
    assert monitor.detections["b"] >= 1
    assert monitor.detections["a"] + monitor.detections["c"] <= 1
    assert SHIFT_AT < [s for s in signals if s.feature == "b"][0].sample_index <= SHIFT_AT + 1_000


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley"])
def test_no_signal_during_the_grace_period(detector: str) -> None:
    rows = np.random.default_rng(5).standard_normal((3_000, 2))
    rows[100:, 0] += 3.0  # a change inside the warm-up
    signals = feed(DriftMonitor(("a", "b"), feature_detector=detector, grace_samples=500), rows)
    assert all(s.sample_index > 500 for s in signals)


def test_observe_features_accepts_lists_and_rejects_bad_vectors() -> None:
    monitor = DriftMonitor(("a", "b"))
    assert monitor.observe_features([0.0, 1]) == []
    assert monitor.observe_features(np.array([0.0, 1.0], dtype=np.float32)) == []
    with pytest.raises(ValueError, match="expected 2 features"):
        monitor.observe_features([0.0])
    with pytest.raises(ValueError, match="1-D"):
        monitor.observe_features(np.zeros((2, 1)))
    with pytest.raises(ValueError, match=r"non-finite.*'b'"):
        monitor.observe_features([0.0, math.nan])
    assert monitor.samples_seen == 2  # rejected vectors are not counted
    huge = [1e308, 1e308]  # the sum overflows but each value is finite
    assert monitor.observe_features(huge) == []


# -- distances -----------------------------------------------------------------------------------

def distances(seed: int, n: int = 20_000) -> np.ndarray:
    return np.sqrt(np.random.default_rng(seed).chisquare(len(NAMES), n))  # ~ distance to a centroid


@pytest.mark.parametrize("seed", [20, 21, 22])
def test_distance_jump_is_detected(seed: int) -> None:
    d = distances(seed)
    d[SHIFT_AT:] *= 1.3
    monitor = DriftMonitor(NAMES)
    signals = [s for x in d for s in monitor.observe_distance(x)]
    assert signals and signals[0].kind == "distance" and signals[0].feature is None
    assert SHIFT_AT < signals[0].sample_index <= SHIFT_AT + 1_000
    assert signals[0].value > monitor.ph_threshold
    assert monitor.detections["distance"] == len(signals)
    assert monitor.distances_seen == len(d)


def test_stationary_distances_do_not_alarm_and_a_drop_only_alarms_two_sided() -> None:
    d = distances(23)
    assert not [s for x in d for s in DriftMonitor(NAMES).observe_distance(x)]
    d[SHIFT_AT:] *= 0.7  # a better fit, e.g. right after a re-train
    assert not [s for x in d for s in DriftMonitor(NAMES).observe_distance(x)]
    both = DriftMonitor(NAMES, distance_mode="both")
    assert [s for x in d for s in both.observe_distance(x)]


def test_distance_detection_does_not_depend_on_the_unit() -> None:
    d = distances(24)
    d[SHIFT_AT:] *= 1.3
    first = []
    for scale in (1.0, 1000.0):
        monitor = DriftMonitor(NAMES)
        first.append([s.sample_index for x in d * scale for s in monitor.observe_distance(x)][0])
    assert first[0] == first[1]


def test_reset_distance_restarts_the_warm_up_and_keeps_counters() -> None:
    monitor = DriftMonitor(NAMES, grace_samples=100)
    d = distances(25, 3_000)
    d[1_000:] *= 2.0
    for x in d:
        monitor.observe_distance(x)
    detected = monitor.detections["distance"]
    assert detected >= 1
    monitor.reset_distance()  # new snapshot published: distances to the new centroids
    for x in distances(26, 2_000) * 2.0:
        monitor.observe_distance(x)
    assert monitor.detections["distance"] == detected
    assert monitor.distances_seen == 5_000


def test_bad_distances_are_rejected() -> None:
    monitor = DriftMonitor(NAMES)
    for bad in (-1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="distance"):
            monitor.observe_distance(bad)
    assert monitor.distances_seen == 0


# -- snapshots -----------------------------------------------------------------------------------

def c(*xs: float) -> np.ndarray:
    return np.array(xs, dtype=float)


def test_compare_snapshots_numbers_below_thresholds_raise_nothing() -> None:
    monitor = DriftMonitor(("x", "y"))
    prev = {"s0": c(0, 0), "s1": c(1, 1)}
    new = {"s0": c(0.3, 0.4), "s1": c(1, 1.2)}
    result = monitor.compare_snapshots(prev, new, {"s0": 0.6, "s1": 0.4}, {"s0": 0.55, "s1": 0.45})
    assert isinstance(result, SnapshotDrift)
    assert result.centroid_shift == pytest.approx({"s0": 0.5, "s1": 0.2})
    assert result.max_centroid_shift == pytest.approx(0.5)
    assert result.share_tvd == pytest.approx(0.05)
    assert result.signals == () and result.born == () and result.retired == ()
    assert monitor.detections["centroid_shift"] == monitor.detections["population_share"] == 0


def test_compare_snapshots_signals_above_thresholds() -> None:
    monitor = DriftMonitor(("x", "y"))
    for _ in range(7):
        monitor.observe_features([0.0, 0.0])
    prev = {"s0": c(0, 0), "s1": c(1, 1), "s2": c(-1, 2)}
    new = {"s0": c(3, 4), "s1": c(1, 1.6), "s2": c(-1, 2)}
    result = monitor.compare_snapshots(prev, new, {"s0": 0.5, "s1": 0.3, "s2": 0.2},
                                       {"s0": 0.2, "s1": 0.5, "s2": 0.3})
    assert result.centroid_shift == pytest.approx({"s0": 5.0, "s1": 0.6, "s2": 0.0})
    assert result.share_tvd == pytest.approx(0.3)
    shift, share = result.signals
    assert (shift.kind, shift.feature, shift.value, shift.sample_index) == ("centroid_shift", "s0", 5.0, 7)
    assert "s0 5.00" in shift.detail and "s1 0.60" in shift.detail and "s2" not in shift.detail
    assert (share.kind, share.feature, share.value) == ("population_share", None, pytest.approx(0.3))
    assert monitor.detections["centroid_shift"] == monitor.detections["population_share"] == 1


def test_thresholds_are_strict_and_configurable() -> None:
    monitor = DriftMonitor(("x",), centroid_shift_threshold=1.0, share_shift_threshold=0.25)
    at = monitor.compare_snapshots({"a": c(0), "b": c(5)}, {"a": c(1), "b": c(5)},
                                   {"a": 0.5, "b": 0.5}, {"a": 0.75, "b": 0.25})
    assert (at.max_centroid_shift, at.share_tvd, at.signals) == (1.0, 0.25, ())
    above = monitor.compare_snapshots({"a": c(0), "b": c(5)}, {"a": c(1.01), "b": c(5)},
                                      {"a": 0.5, "b": 0.5}, {"a": 0.76, "b": 0.24})
    assert [s.kind for s in above.signals] == ["centroid_shift", "population_share"]


def test_born_and_retired_segments_count_in_the_share_tvd() -> None:
    monitor = DriftMonitor(("x", "y"))
    prev = {"a": c(0, 0), "b": c(2, 2)}
    new = {"a": c(0, 0.1), "c": c(-2, 2)}  # b retired, c born
    result = monitor.compare_snapshots(prev, new, {"a": 0.8, "b": 0.2}, {"a": 0.7, "c": 0.3})
    assert result.centroid_shift == pytest.approx({"a": 0.1})
    assert (result.born, result.retired) == (("c",), ("b",))
    assert result.share_tvd == pytest.approx(0.3)  # |0.8-0.7| + |0.2-0| + |0-0.3|, halved
    assert [s.kind for s in result.signals] == ["population_share"]


def test_explicit_matching_renames_and_keeps_reused_ids_apart() -> None:
    monitor = DriftMonitor(("x",))
    prev = {"1": c(0.0), "2": c(5.0)}
    new = {"7": c(0.2), "2": c(-5.0)}  # 1 became 7; old 2 retired and a new, unrelated 2 is born
    result = monitor.compare_snapshots(prev, new, {"1": 0.5, "2": 0.5}, {"7": 0.5, "2": 0.5},
                                       matched={"1": "7"})
    assert result.centroid_shift == pytest.approx({"7": 0.2})
    assert (result.born, result.retired) == (("2",), ("2",))
    assert result.share_tvd == pytest.approx(0.5)  # not 0: the two "2"s are different segments


def test_nothing_matched_gives_nan_shift_and_full_tvd() -> None:
    monitor = DriftMonitor(("x",))
    result = monitor.compare_snapshots({"a": c(0)}, {"b": c(9)}, {"a": 1.0}, {"b": 1.0})
    assert math.isnan(result.max_centroid_shift) and result.centroid_shift == {}
    assert result.share_tvd == 1.0
    assert [s.kind for s in result.signals] == ["population_share"]


def test_shares_are_normalised_and_may_omit_empty_segments() -> None:
    monitor = DriftMonitor(("x",))
    cents = {"a": c(0), "b": c(1)}
    result = monitor.compare_snapshots(cents, cents, {"a": 30.0, "b": 10.0}, {"a": 0.75})
    assert result.share_tvd == pytest.approx(0.25)  # b: 0.25 -> 0 (absent), a: 0.75 -> 1


@pytest.mark.parametrize("kwargs, message", [
    ({"matched": {"zz": "a"}}, "unknown previous"),
    ({"matched": {"a": "zz"}}, "unknown new"),
    ({"matched": {"a": "a", "b": "a"}}, "one-to-one"),
    ({"new_shares": {"a": -0.1, "b": 1.1}}, r"new_shares\['a'\]"),
    ({"previous_shares": {"a": 0.0}}, "positive total"),
    ({"new_centroids": {"a": c(0, 0), "b": c(1)}}, r"shape \(1,\)"),
    ({"previous_centroids": {"a": c(math.nan), "b": c(1)}}, "finite"),
])
def test_compare_snapshots_rejects_inconsistent_inputs(kwargs: dict, message: str) -> None:
    args = {"previous_centroids": {"a": c(0), "b": c(1)}, "new_centroids": {"a": c(0), "b": c(1)},
            "previous_shares": {"a": 0.5, "b": 0.5}, "new_shares": {"a": 0.5, "b": 0.5}}
    with pytest.raises(ValueError, match=message):
        DriftMonitor(("x",)).compare_snapshots(**{**args, **kwargs})


share_maps = st.dictionaries(st.sampled_from("abcdef"), st.floats(0, 10), min_size=1).filter(
    lambda m: sum(m.values()) > 0)


@settings(deadline=None, max_examples=200)
@given(share_maps, share_maps)
def test_tvd_is_a_bounded_symmetric_distance(p: dict, q: dict) -> None:
    tvd = total_variation_distance(p, q)
    assert 0.0 <= tvd <= 1.0
    assert tvd == pytest.approx(total_variation_distance(q, p))
    assert total_variation_distance(p, {k: 3 * v for k, v in p.items()}) == pytest.approx(0.0, abs=1e-9)


@settings(deadline=None, max_examples=100)
@given(st.lists(st.lists(st.floats(-5, 5), min_size=3, max_size=3), min_size=1, max_size=6))
def test_identical_snapshots_show_no_drift(centroids: list[list[float]]) -> None:
    cents = {str(i): np.array(v) for i, v in enumerate(centroids)}
    shares = {k: 1.0 for k in cents}
    result = DriftMonitor(("x", "y", "z")).compare_snapshots(cents, cents, shares, shares)
    assert result.max_centroid_shift == 0.0 and result.share_tvd == 0.0 and result.signals == ()


# -- bookkeeping ---------------------------------------------------------------------------------

def test_counters_are_prepopulated_and_reset_clears_everything() -> None:
    monitor = DriftMonitor(("a", "b"), grace_samples=10)
    assert monitor.detections == {"a": 0, "b": 0, "distance": 0, "centroid_shift": 0,
                                  "population_share": 0}
    rows = np.random.default_rng(6).standard_normal((4_000, 2))
    rows[2_000:, 0] += 3.0
    feed(monitor, rows)
    monitor.observe_distance(1.0)
    assert monitor.detections["a"] >= 1 and monitor.samples_seen == 4_000
    monitor.reset()
    assert set(monitor.detections.values()) == {0}
    assert (monitor.samples_seen, monitor.distances_seen) == (0, 0)
    assert feed(monitor, rows[:1_900]) == []  # fresh detectors: no memory of the old mean


def test_signal_is_frozen() -> None:
    signal = DriftSignal("feature", "a", 1.0, "x", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        signal.value = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("kwargs, message", [
    ({"feature_names": ()}, "empty"),
    ({"feature_names": ("a", "a")}, "unique"),
    ({"feature_names": ("a", "distance")}, "reserved"),
    ({"feature_detector": "kswin"}, "feature_detector"),
    ({"distance_mode": "down"}, "distance_mode"),
    ({"adwin_delta": 0.0}, "adwin_delta"),
    ({"ph_alpha": 1.5}, "ph_alpha"),
    ({"share_shift_threshold": 2.0}, "share_shift_threshold"),
])
def test_bad_configuration_is_rejected(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DriftMonitor(**{"feature_names": ("a",), **kwargs})
