"""Offline replay through the same engine: CDNOW against the published BTYD results, and bookkeeping."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from models.cdnow import read_transactions
from models.config import EngineConfig
from streams.replay import Replay, run_replay

ROOT = Path(__file__).resolve().parent.parent
CALIBRATION_END = datetime(1997, 9, 30, 23, 59, 59, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def cdnow_replay() -> Replay:
    replay = Replay(EngineConfig(), as_of=CALIBRATION_END)
    for number, event in enumerate(read_transactions(), 1):
        replay.feed(number, orjson.dumps(event))
    replay.finish()
    return replay


def test_cdnow_per_customer_statistics_match_the_published_summary(cdnow_replay: Replay) -> None:
    """lifetimes' cdnow_customers_summary.csv (weeks, 2 decimals) from our daily state."""
    published = {row["ID"]: row for row in csv.DictReader(open(ROOT / "data/cdnow/cdnow_customers_summary.csv"))}
    profiles = {p["customer_id"]: p for p in cdnow_replay.profiles()}
    assert len(profiles) == len(published) == 2357
    for cid, row in published.items():
        p = profiles[f"cdnow-{int(cid):04d}"]
        assert p["frequency"] == int(row["frequency"]), cid
        assert p["recency"] / 7 == pytest.approx(float(row["recency"]), abs=0.006), cid
        assert p["T"] / 7 == pytest.approx(float(row["T"]), abs=0.006), cid


def test_cdnow_fit_recovers_the_published_parameters(cdnow_replay: Replay) -> None:
    """Fader, Hardie & Lee (2005): r=0.243, alpha=4.414 (weeks), a=0.793, b=2.426;
    Gamma-Gamma p=6.25, q=3.74, gamma=15.44."""
    bg = cdnow_replay.engine.valuation.beta_geo
    gg = cdnow_replay.engine.valuation.gamma_gamma
    assert (round(bg.r, 2), round(bg.alpha / 7, 2), round(bg.a, 2), round(bg.b, 2)) == (0.24, 4.41, 0.79, 2.43)
    assert abs(bg.r - 0.243) < 0.001 and abs(bg.alpha / 7 - 4.414) < 0.002
    assert abs(bg.a - 0.793) < 0.001 and abs(bg.b - 2.426) < 0.002
    assert (round(gg.p, 2), round(gg.q, 2), round(gg.v, 2)) == (6.25, 3.74, 15.44)


def test_cdnow_profiles_carry_lifetime_value(cdnow_replay: Replay) -> None:
    profiles = list(cdnow_replay.profiles())
    assert all(0.0 <= p["p_alive"] <= 1.0 for p in profiles)
    assert sum(p["p_alive"] < 0.5 for p in profiles) > 100  # lapsed repeat buyers exist
    assert all(p["expected_purchases"] >= 0 and p["clv"] >= 0 for p in profiles)
    one_timers = [p for p in profiles if p["frequency"] == 0]
    assert all(p["p_alive"] == 1.0 for p in one_timers)  # BG/NBD: no repeat, no chance to drop out yet
    assert cdnow_replay.report.after_as_of == 6919 - 4960 and cdnow_replay.report.reconciles()


def test_replay_cli_reports_invalid_lines_and_skips_later_events(tmp_path: Path) -> None:
    lines = [
        {"type": "purchase", "event_id": "a", "customer_id": "c1", "timestamp": "2026-01-01T00:00:00Z", "amount": 10},
        "this is not json",
        {"type": "purchase", "event_id": "b", "customer_id": "c1", "timestamp": "2026-02-01T00:00:00Z", "amount": 20},
        {"type": "purchase", "event_id": "a", "customer_id": "c1", "timestamp": "2026-01-01T00:00:00Z", "amount": 10},
        {"type": "purchase", "event_id": "z", "customer_id": "c2", "timestamp": "2026-01-05T00:00:00Z", "amount": "7"},
        {"type": "feedback", "event_id": "f", "customer_id": "c2", "timestamp": "2026-01-03T00:00:00Z", "kind": "nps", "score": 6},
        {"type": "purchase", "event_id": "late", "customer_id": "c1", "timestamp": "2026-06-01T00:00:00Z", "amount": 99},
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(l.encode() if isinstance(l, str) else orjson.dumps(l) for l in lines) + b"\n")
    out, rejects = tmp_path / "profiles.jsonl", tmp_path / "rejects.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(events), "--as-of", "2026-03-01T00:00:00+00:00",
         "--profiles-out", str(out), "--rejects-out", str(rejects)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "line 2" in proc.stderr and "line 5" in proc.stderr and "amount" in proc.stderr
    assert "3 applied, 1 duplicate, 1 after as-of, 2 invalid" in proc.stderr.replace("\n", " ")
    assert [orjson.loads(l)["line"] for l in rejects.read_bytes().splitlines()] == [2, 5]
    profiles = {p["customer_id"]: p for p in map(orjson.loads, out.read_bytes().splitlines())}
    c1 = profiles["c1"]
    assert (c1["purchase_count"], c1["total_spend"], c1["frequency"], c1["recency"], c1["T"]) == (2, 30.0, 1, 31, 59)
    assert c1["last_purchase_at"] == "2026-02-01T00:00:00+00:00" and c1["segment"] is None
    assert profiles["c2"]["nps"] == 6 and profiles["c2"]["purchase_count"] == 0


def replay_cli(events: Path, *options: str, as_of: str = "2026-03-01T00:00:00Z",
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", "replay", str(events), "--as-of", as_of, *options],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)


def purchase_line(event_id: str, day: int) -> bytes:
    return orjson.dumps({"type": "purchase", "event_id": event_id, "customer_id": "c1",
                         "timestamp": f"2026-01-{day:02d}T00:00:00Z", "amount": 10})


def test_a_byte_order_mark_inside_the_file_is_an_invalid_line_that_says_so(tmp_path: Path) -> None:
    """Two files concatenated: the second one's UTF-8 BOM starts line 3. That line is rejected,
    named with its line number and the mark; the others are applied; it is no crash."""
    bom = "\ufeff".encode()
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([purchase_line("a", 1), purchase_line("b", 2), bom + purchase_line("c", 3),
                                   purchase_line("d", 4)]) + b"\n")
    out, rejects = tmp_path / "profiles.jsonl", tmp_path / "rejects.jsonl"
    proc = replay_cli(events, "--profiles-out", str(out), "--rejects-out", str(rejects))
    assert proc.returncode == 0, proc.stderr
    [reject] = [orjson.loads(line) for line in rejects.read_bytes().splitlines()]
    assert reject["line"] == 3
    assert reject["error"].startswith("the line starts with a UTF-8 byte-order mark (U+FEFF)"), reject
    assert f"line 3: {reject['error']}" in proc.stderr.splitlines()
    assert "3 applied, 0 duplicates, 0 after as-of, 1 invalid" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_byte_order_mark_at_the_start_of_the_file_is_dropped(tmp_path: Path) -> None:
    """What Windows editors write (utf-8-sig): the first line is an ordinary valid event."""
    events = tmp_path / "events.jsonl"
    events.write_bytes("\ufeff".encode() + purchase_line("a", 1) + b"\n" + purchase_line("b", 2) + b"\n")
    report = run_replay(events, datetime(2026, 3, 1, tzinfo=timezone.utc).timestamp(), EngineConfig(),
                        tmp_path / "p.jsonl")
    assert (report.applied, report.invalid) == (2, 0) and report.reconciles()


def test_replay_output_is_not_wrapped_when_piped(tmp_path: Path) -> None:
    """Not a terminal (a pipe, a file): each line whole, however long (rich wrapped at 80 columns)."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(purchase_line("a", 1) + b"\n" + b'{"type": "purchase", "amount": "x"}\n')
    out = tmp_path / ("a-folder-name-long-enough-to-take-the-summary-line-past-eighty-columns" * 2) / "p.jsonl"
    out.parent.mkdir()
    proc = replay_cli(events, "--profiles-out", str(out), env={k: v for k, v in os.environ.items() if k != "COLUMNS"})  # rich's 80
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert f"1 customer -> {out}" in lines[-3], lines
    assert lines[-3].startswith("2 events in ")
    assert lines[0] == ("line 2: event_id: Field required; customer_id: Field required; timestamp: Field required; "
                        "amount: Input should be a valid number"), lines


def test_a_count_of_one_is_said_in_the_singular(tmp_path: Path) -> None:
    """'1 customers', '1 duplicates', '1 more invalid lines' (a new user's trial): one of a thing
    is singular, two plural, in every count of the summary."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([purchase_line("a", 1), purchase_line("a", 1), b"{", b"{"]) + b"\n")
    proc = replay_cli(events, "--profiles-out", str(tmp_path / "p.jsonl"), "--show-rejects", "1")
    lines = proc.stderr.splitlines()
    assert "... and 1 more invalid line (use --rejects-out to list them all)" in lines, lines
    assert any(line.startswith("4 events in ") and line.endswith(f"1 applied, 1 duplicate, 0 after as-of, "
                                                                  f"2 invalid; 1 customer -> {tmp_path / 'p.jsonl'}")
               for line in lines), lines
    assert any(line.startswith("0 segment changes (") for line in lines), lines


def test_run_replay_reconciles_every_line(tmp_path: Path) -> None:
    events = tmp_path / "e.jsonl"
    events.write_bytes(b'{"type":"purchase"}\n\n{"bad\n')
    report = run_replay(events, CALIBRATION_END, EngineConfig(), tmp_path / "p.jsonl")
    assert report.lines == 2 and report.invalid == 2 and report.reconciles()


def test_replay_takes_the_clustering_configuration_from_the_environment(tmp_path: Path) -> None:
    from models.synthetic import generate_population, iter_jsonl

    pop = generate_population(250, seed=3, activity=0.3)
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(iter_jsonl(pop.events)))
    out, changes, snap = tmp_path / "p.jsonl", tmp_path / "c.jsonl", tmp_path / "s.json"
    env = {**__import__("os").environ, "SEGSTREAM_ENGINE__SEGMENTATION__N_SEGMENTS": "3",
           "SEGSTREAM_ENGINE__SEGMENTATION__MIN_CUSTOMERS_TO_TRAIN": "50",
           "SEGSTREAM_ENGINE__SEGMENTATION__RULES_FILE": str(ROOT / "examples/segments.toml")}
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(events), "--as-of", pop.end_iso,
         "--profiles-out", str(out), "--changes-out", str(changes), "--snapshot-out", str(snap)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    model = orjson.loads(snap.read_bytes())
    assert len(model["segments"]) == 3 and model["definition_version"]
    profiles = [orjson.loads(l) for l in out.read_bytes().splitlines()]
    assert all(p["segment"]["id"] in {s["id"] for s in model["segments"]} for p in profiles)
    kinds = {orjson.loads(l)["kind"] for l in changes.read_bytes().splitlines()}
    assert kinds == {"cluster", "rule"}


def test_a_customer_known_only_from_rejected_events_gets_no_profile(tmp_path: Path) -> None:
    replay = Replay(EngineConfig(), as_of=CALIBRATION_END)
    replay.feed(1, orjson.dumps({"type": "purchase", "event_id": "x", "customer_id": "eur-only",
                                 "timestamp": "1997-01-01T00:00:00Z", "amount": 5, "currency": "EUR"}))
    assert replay.report.invalid == 1 and "currency" in replay.report.rejected[0].error
    assert "eur-only" not in replay.states and replay.report.reconciles()


def test_event_identity_is_the_workers_customer_type_and_event_id() -> None:
    """cases/09: two shops numbering their orders alike are two customers' events; one id on a
    purchase and an engagement is two events; the same event twice is one. The replay recognises
    repeats with the worker's own state (models.state), so both give the same answer."""
    replay = Replay(EngineConfig(), as_of=datetime(2026, 4, 1, tzinfo=timezone.utc).timestamp())
    for number, line in enumerate((ROOT / "tests/data/09-event-id-scope.jsonl").read_bytes().splitlines(), 1):
        replay.feed(number, line)
    replay.finish()
    states = replay.states
    assert (states["anna"].purchase_count, states["anna"].total_spend) == (2, 60.0)
    assert (states["ben"].purchase_count, states["ben"].total_spend) == (2, 90.0)
    assert (states["carla"].purchase_count, states["carla"].engagement_count) == (1, 1)
    assert (states["dora"].purchase_count, states["dora"].total_spend) == (1, 20.0)
    assert replay.report.duplicates == 1


# ---- replay = worker: one order, one clock, the sweep in event time ------------------------------

CASES = ROOT / "tests/data"
LAPSE_RULES = CASES / "12-lapse-without-events.toml"
APRIL_END = datetime(2026, 5, 1, tzinfo=timezone.utc).timestamp()
DAY = 86_400.0


def rules_config(**replay: float) -> EngineConfig:
    return EngineConfig.model_validate({"segmentation": {"rules_file": str(LAPSE_RULES)}, "replay": replay})


def changes_of(path: Path, config: EngineConfig, as_of: float = APRIL_END) -> list[dict]:
    changes: list = []
    replay = Replay(config, as_of, on_change=changes.append)
    replay.feed_all(enumerate(path.read_bytes().splitlines(), 1))
    replay.finish()
    return [orjson.loads(c.model_dump_json()) for c in changes]


def rule_moves(changes: list[dict], customer: str) -> list[tuple[str, str, str]]:
    return [(c["changed_at"], c["reason"]["code"], (c["segment"] or c["previous_segment"])["id"])
            for c in changes if c["customer_id"] == customer and c["kind"] == "rule"]


def test_a_customer_lapses_between_their_own_events_at_the_sweep_tick_after_the_crossing() -> None:
    """cases/12b: returner-i buys on January 10+i and April 10+i (10:00 UTC). Sixty days after the
    first purchase they lapse, with no event of their own: the replay's daily sweep (UTC midnights)
    shows it at the first tick after the crossing, and the April purchase brings them back."""
    changes = changes_of(CASES / "12b-lapse-and-return.jsonl", rules_config())
    for i in range(4):
        bought = datetime(2026, 1, 10 + i, 10, tzinfo=timezone.utc).timestamp()
        lapsed = bought + 60 * DAY
        tick = (lapsed // DAY + 1) * DAY  # the first midnight after the crossing
        back = datetime(2026, 4, 10 + i, 10, tzinfo=timezone.utc).timestamp()
        iso = lambda ts: datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")  # noqa: E731
        assert ("rule_entered", "lapsed_60") in [m[1:] for m in rule_moves(changes, f"returner-{i}")]
        assert (iso(tick), "rule_entered", "lapsed_60") in rule_moves(changes, f"returner-{i}")
        assert (iso(back), "rule_left", "lapsed_60") in rule_moves(changes, f"returner-{i}")


def test_the_same_data_in_another_line_order_gives_the_same_changes() -> None:
    """cases/12b: the file and its sorted copy hold the same lines."""
    shuffled = changes_of(CASES / "12b-lapse-and-return.jsonl", rules_config())
    ordered = changes_of(CASES / "12b-lapse-and-return.sorted.jsonl", rules_config())
    assert shuffled == ordered and shuffled


def test_line_order_does_not_matter_with_a_model_trained_mid_stream_and_repeated_ids(tmp_path: Path) -> None:
    """Clusters trained every 500 events and rules on a synthetic population, lines shuffled, one
    event_id sent twice with two contents (the first in the replay's order wins, in any line order).
    The second run orders the file in sorted runs of 97 lines spilled to disk: the same answer."""
    import random

    from models.synthetic import generate_population

    pop = generate_population(60, seed=4, activity=0.3)
    lines = [orjson.dumps(e) for e in pop.events]
    first = pop.events[len(pop.events) // 2]
    lines.append(orjson.dumps({**first, "amount": 999.0} if first["type"] == "purchase" else {**first}))
    outputs = []
    for seed, buffer in ((1, 1_000_000), (2, 97)):
        config = EngineConfig.model_validate({
            "segmentation": {"rules_file": str(ROOT / "examples/segments.toml"), "n_segments": 3,
                             "min_customers_to_train": 20, "train_every_events": 500},
            "value": {"min_customers_for_fit": 20},
            "replay": {"sweep_every_s": 7 * DAY, "sort_buffer_events": buffer}})
        random.Random(seed).shuffle(lines)
        path = tmp_path / f"events-{seed}.jsonl"
        path.write_bytes(b"\n".join(lines) + b"\n")
        out, changes = tmp_path / f"p-{seed}.jsonl", tmp_path / f"c-{seed}.jsonl"
        report = run_replay(path, pop.end, config, out, changes_out=changes)
        assert report.duplicates == 1 and report.reconciles() and report.model_version
        outputs.append((out.read_bytes(), changes.read_bytes()))
    assert outputs[0] == outputs[1]
    assert {orjson.loads(c)["kind"] for c in outputs[0][1].splitlines()} == {"cluster", "rule"}


@pytest.mark.parametrize("sweep_every_s", [0.0, DAY])
def test_a_rejected_event_does_not_move_the_replays_clock(sweep_every_s: float) -> None:
    """bob's purchase in a currency without a rate, stamped April, is rejected: ann's later January
    purchase is still evaluated in January and no sweep tick runs past it (she does not lapse),
    and bob has no profile."""
    changes: list = []
    replay = Replay(rules_config(sweep_every_s=sweep_every_s), APRIL_END, on_change=changes.append)
    lines = [
        {"type": "purchase", "event_id": "a1", "customer_id": "ann", "timestamp": "2026-01-01T00:00:00Z", "amount": 5},
        {"type": "purchase", "event_id": "b1", "customer_id": "bob", "timestamp": "2026-04-01T00:00:00Z",
         "amount": 5, "currency": "EUR"},
        {"type": "purchase", "event_id": "a2", "customer_id": "ann", "timestamp": "2026-01-20T00:00:00Z", "amount": 5},
    ]
    for number, line in enumerate(lines, 1):  # fed as they come, not ordered first
        replay.feed(number, orjson.dumps(line))
    assert replay.clock == datetime(2026, 1, 20, tzinfo=timezone.utc).timestamp()
    assert "bob" not in replay.states and replay.report.invalid == 1
    assert [(c.changed_at.isoformat(), c.reason.code.value) for c in changes] == [
        ("2026-01-01T00:00:00+00:00", "rule_entered")]


def test_the_sweep_cadence_is_configurable_and_zero_turns_it_off() -> None:
    """Weekly ticks (multiples of 7 days since the epoch: Thursdays) show the lapse later than
    daily ones; without a sweep it shows only at the as-of time, if at all."""
    path = CASES / "12b-lapse-and-return.jsonl"
    weekly = rule_moves(changes_of(path, rules_config(sweep_every_s=7 * DAY)), "lapser-0")
    daily = rule_moves(changes_of(path, rules_config()), "lapser-0")
    off = rule_moves(changes_of(path, rules_config(sweep_every_s=0)), "returner-0")
    lapse = lambda moves: next(at for at, code, seg in moves if (code, seg) == ("rule_entered", "lapsed_60"))  # noqa: E731
    assert lapse(daily) < lapse(weekly)
    assert ("rule_entered", "lapsed_60") not in [m[1:] for m in off]  # the gap the sweep closes


def test_the_snapshot_file_is_written_even_without_a_model(tmp_path: Path) -> None:
    """A user found an older run's snapshot left in place (no model, no rules: nothing was
    written) and took it for this run's: the file always holds this run's answer."""
    events = tmp_path / "e.jsonl"
    events.write_bytes(b'{"type":"purchase","event_id":"p1","customer_id":"a",'
                       b'"timestamp":"2026-01-05T00:00:00Z","amount":5}\n')
    snapshot = tmp_path / "snap.json"
    snapshot.write_bytes(b'{"stale": true}')
    report = run_replay(events, 1_769_904_000.0, EngineConfig(), tmp_path / "p.jsonl", snapshot_out=snapshot)
    doc = orjson.loads(snapshot.read_bytes())
    assert "stale" not in doc and doc["version"] is None and doc["segments"] == []
    assert doc["no_model"].startswith("no model trained yet: a training needs 300 customers")
    assert report.model_version is None and report.no_model == doc["no_model"]
