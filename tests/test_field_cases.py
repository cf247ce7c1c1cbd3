"""Contract faults from the field (issue #18, shared/cases): each input's right value, offline through
``segstream replay`` and online through the worker's processor (in process, no Kafka).

Cases: 07 (RFC 3339 timestamps), 10 line 8 (duplicated JSON keys), 10b (refund sign decided before
rounding), 14 (amounts and totals that overflow the stored integer micro-units).
"""

from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from models.config import EngineConfig
from models.pipeline import Pipeline
from models.state import CustomerState, utc_day
from monitoring.metrics import WorkerMetrics
from schemas.events import FieldProblem
from streams.clock import WorkerClock
from streams.processor import CustomerProcessor, InMessage
from streams.sampling import SampleForwarder
from streams.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests/data"
TOPICS = Settings().topics


def replay(case: str, as_of: str, tmp_path: Path, env: dict[str, str] | None = None,
           lines: list[int] | None = None) -> tuple[dict[str, dict], dict[int, str]]:
    """Run ``segstream replay`` on a case file (or some of its lines): profiles by customer, and
    the rejected lines' reasons by line number (of the file given to the replay)."""
    source = DATA / case
    if lines is not None:
        picked = source.read_bytes().splitlines()
        source = tmp_path / case
        source.write_bytes(b"\n".join(picked[n - 1] for n in lines) + b"\n")
    profiles, rejects = tmp_path / "profiles.jsonl", tmp_path / "rejects.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "replay", str(source), "--as-of", as_of,
         "--profiles-out", str(profiles), "--rejects-out", str(rejects)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})},
    )
    assert proc.returncode == 0, proc.stderr
    by_customer = {p["customer_id"]: p for p in map(orjson.loads, profiles.read_bytes().splitlines())}
    reasons = {r["line"]: r["error"] for r in map(orjson.loads, rejects.read_bytes().splitlines())}
    return by_customer, reasons


class DeadLetters:
    """The processor's outputs, keeping the dead letters (by offset) and dropping the rest."""

    def __init__(self) -> None:
        self.problems: dict[int, list[FieldProblem]] = {}

    async def changes(self, changes: list) -> None:
        pass

    async def flush(self) -> None:
        pass

    async def dead_letter(self, message: InMessage, source_type: str, problems: list[FieldProblem]) -> None:
        self.problems[message.offset] = problems

    async def forward(self, message: InMessage, partition: int) -> None:
        raise AssertionError("one partition: nothing to forward")

    async def input_end_offsets(self) -> dict[str, list[int]]:
        return {}


class Worker:
    """One partition's processor fed the lines of a case file (offset = line number)."""

    def __init__(self, engine: EngineConfig | None = None) -> None:
        routes = {name: etype for etype, name in TOPICS.input_topics.items()}
        self.table: dict[bytes, bytes] = {}
        self.outputs = DeadLetters()
        self.processor = CustomerProcessor(Pipeline(engine or EngineConfig(), train_locally=False), self.table,
                                           self.outputs, WorkerClock("event"), SampleForwarder(),
                                           WorkerMetrics(), routes)

    def feed_case(self, case: str, lines: list[int]) -> None:
        raw = (DATA / case).read_bytes().splitlines()
        msgs = []
        for n in lines:
            key = orjson.loads(raw[n - 1].lstrip(b"\xef\xbb\xbf"))["customer_id"].encode()
            msgs.append(InMessage(TOPICS.input_topics["purchase"], 0, n, key, raw[n - 1]))
        asyncio.run(self.processor.handle_batch(msgs))

    def state(self, customer_id: str) -> CustomerState:
        return CustomerState.from_bytes(self.table[customer_id.encode()])


# ---- case 07: timestamps are RFC 3339 date-times, nothing else ------------------------------------

CASE_07 = "07-timezones-dst.jsonl"
REJECTED_07 = [7, 8, 13, 14, 15, 16, 17, 18, 19]


def test_case_07_replay_accepts_exactly_the_rfc3339_lines(tmp_path: Path) -> None:
    profiles, reasons = replay(CASE_07, "2026-12-01T00:00:00Z", tmp_path)
    assert sorted(reasons) == REJECTED_07
    assert all(reason.startswith("timestamp:") for reason in reasons.values()), reasons
    assert "RFC 3339" in reasons[19] and "'1781085600'" in reasons[19]
    uk = profiles["uk-shopper"]
    assert (uk["purchase_count"], uk["frequency"], uk["recency"]) == (4, 2, 4)  # UTC days 03-28, 03-29, 04-01
    assert profiles["fmt-shopper"]["purchase_count"] == 4  # lines 9-12
    assert profiles["us-shopper"]["purchase_count"] == 2


def test_case_07_worker_dead_letters_the_same_lines() -> None:
    worker = Worker()
    worker.feed_case(CASE_07, list(range(1, 20)))
    assert sorted(worker.outputs.problems) == REJECTED_07
    assert {p.field for problems in worker.outputs.problems.values() for p in problems} == {"timestamp"}
    assert worker.state("fmt-shopper").purchase_count == 4
    assert (worker.state("uk-shopper").purchase_count, worker.state("uk-shopper").frequency) == (4, 2)


# ---- case 10b: refund or purchase on the sign of the amount as sent -------------------------------

CASE_10B = "10b-tiny-refund-rounding.jsonl"


def check_10b(profile_of) -> None:
    tiny, tiny2, small = profile_of("tiny-refund"), profile_of("tiny-refund-2"), profile_of("small-refund")
    assert (tiny["purchase_count"], tiny["refund_count"], tiny["T"]) == (0, 1, None)
    assert (tiny2["purchase_count"], tiny2["refund_count"], tiny2["frequency"], tiny2["recency"]) == (1, 1, 0, 0)
    assert (small["purchase_count"], small["refund_count"], small["refund_total"]) == (0, 1, 1e-06)


def test_case_10b_replay_counts_a_refund_that_rounds_to_zero_as_a_refund(tmp_path: Path) -> None:
    profiles, reasons = replay(CASE_10B, "2026-06-01T00:00:00Z", tmp_path)
    assert reasons == {}
    check_10b(profiles.__getitem__)


def test_case_10b_worker_gives_the_same_counts() -> None:
    worker = Worker()
    worker.feed_case(CASE_10B, [1, 2, 3, 4])
    as_of_day = utc_day(datetime(2026, 6, 1, tzinfo=timezone.utc).timestamp())

    def profile_of(customer_id: str) -> dict:
        s = worker.state(customer_id)
        return {"purchase_count": s.purchase_count, "refund_count": s.refund_count, "frequency": s.frequency,
                "recency": s.recency_days, "refund_total": s.refund_total,
                "T": as_of_day - s.purchase_days[0] if s.purchase_days else None}

    assert worker.outputs.problems == {}
    check_10b(profile_of)


@pytest.mark.parametrize("amount,purchases,refunds", [(-4e-07, 0, 1), (4e-07, 1, 0), (-0.0, 1, 0), (0.0, 1, 0)])
def test_the_sign_as_sent_decides_even_when_the_micro_units_are_zero(amount: float, purchases: int,
                                                                     refunds: int) -> None:
    from schemas.events import PurchaseEvent

    state = CustomerState("c")
    state.apply(PurchaseEvent(event_id="e", customer_id="c", timestamp="2026-05-01T10:00:00Z", amount=amount),
                EngineConfig().value)
    assert (state.purchase_count, state.refund_count, len(state.purchase_days)) == (purchases, refunds, purchases)
    assert state.gross_micros == state.refund_micros == 0


# ---- case 14: amounts and totals past the stored integers ------------------------------------------

CASE_14 = "14-huge-amount-serialisation.jsonl"
VND = {"SEGSTREAM_ENGINE__VALUE__BASE_CURRENCY": "VND", "SEGSTREAM_ENGINE__VALUE__CURRENCY_RATES": '{"USD":25000}'}
WHOLESALE_GROSS = 20_000_000_750_000.0  # VND: (10 + 800,000,000 + 20) USD at 25,000


def test_case_14_replay_applies_the_huge_purchase(tmp_path: Path) -> None:
    profiles, reasons = replay(CASE_14, "2026-06-01T00:00:00Z", tmp_path, env=VND)
    assert reasons == {}
    w1 = profiles["wholesale-1"]
    assert (w1["purchase_count"], w1["gross_spend"], w1["total_spend"]) == (3, WHOLESALE_GROSS, WHOLESALE_GROSS)
    assert profiles["wholesale-2"]["gross_spend"] == 500_000.0


def test_case_14_worker_applies_and_stores_it_too() -> None:
    engine = EngineConfig.model_validate({"value": {"base_currency": "VND", "currency_rates": {"USD": 25000}}})
    worker = Worker(engine)
    worker.feed_case(CASE_14, [1, 2, 3, 4])
    assert worker.outputs.problems == {}  # was: internal_error: OverflowError when the state was saved
    w1 = worker.state("wholesale-1")
    assert (w1.purchase_count, w1.gross_spend) == (3, WHOLESALE_GROSS)
    assert w1.gross_micros == 20_000_000_750_000 * 1_000_000 > 2**64


def test_no_accumulated_total_overflows_its_stored_form() -> None:
    """18,447 purchases of 1e9 USD by one customer pass 2**64 micro-units: the state still saves
    and reads back exactly (every purchase on its own day, so the first-day total stays small)."""
    from schemas.events import PurchaseEvent

    config, state, start = EngineConfig().value, CustomerState("whale"), datetime(2026, 1, 1, tzinfo=timezone.utc)
    n = 18_448
    for i in range(n):
        state.apply(PurchaseEvent(event_id=f"w{i}", customer_id="whale", timestamp=start + timedelta(minutes=i),
                                  amount=1e9), config)
    assert state.gross_micros == n * 10**15 > 2**64
    back = CustomerState.from_bytes(state.to_bytes())
    assert back == state and back.gross_spend == n * 1e9
    state.apply(PurchaseEvent(event_id="r", customer_id="whale", timestamp=start, amount=-1e9), config)
    assert CustomerState.from_bytes(state.to_bytes()).total_spend == (n - 1) * 1e9


def test_a_purchase_beyond_any_float_is_rejected_naming_amount_before_the_state_is_touched(tmp_path: Path) -> None:
    from models.state import EngineRejection
    from schemas.events import PurchaseEvent

    config = EngineConfig.model_validate({"value": {"currency_rates": {"XAU": 1e300}}}).value
    state = CustomerState("c")
    before = state.to_bytes()
    event = PurchaseEvent(event_id="e", customer_id="c", timestamp="2026-05-01T10:00:00Z", amount=1e9, currency="XAU")
    with pytest.raises(EngineRejection) as info:
        state.apply(event, config)
    assert info.value.field == "amount" and state.to_bytes() == before


# ---- case 10 line 8: a key written twice ----------------------------------------------------------

CASE_10 = "10-json-nan-bigint-dupkeys.jsonl"
REPEATED_10 = {8: "amount", 9: "customer_id", 10: "event_id"}  # lines j-8, j-9, j-10


def test_case_10_replay_rejects_repeated_keys_naming_them(tmp_path: Path) -> None:
    profiles, reasons = replay(CASE_10, "2026-06-01T00:00:00Z", tmp_path, lines=[6, 8, 9, 10])
    assert reasons == {n: f'{key}: duplicate key "{key}"' for n, key in zip((2, 3, 4), REPEATED_10.values())}
    edge = profiles["json-edge"]
    assert (edge["purchase_count"], edge["refund_count"], edge["gross_spend"]) == (1, 0, 1e9)  # line 6 only
    assert "someone-else" not in profiles


def test_case_10_worker_dead_letters_them() -> None:
    worker = Worker()
    worker.feed_case(CASE_10, [6, *REPEATED_10])
    assert {n: [(p.field, p.error, p.message) for p in problems]
            for n, problems in worker.outputs.problems.items()} == {
        n: [(key, "duplicate_key", f'duplicate key "{key}"')] for n, key in REPEATED_10.items()}
    assert (worker.state("json-edge").purchase_count, worker.state("json-edge").refund_count) == (1, 0)


# ---- the same kind as 10b elsewhere: rules decide on exact values, not on rounded ones ------------

def test_a_rule_decides_on_the_exact_value_not_the_rounded_one_shown() -> None:
    """days_since_last_purchase is shown to 3 decimals: 60 days and 20 s shows as 60.0. A rule
    'more than 60 days' holds then (the pipeline evaluates rules on the exact profile)."""
    from models.profile import build_profile
    from models.rules import RuleSet
    from models.valuation import pinned_valuation
    from schemas.events import PurchaseEvent

    cfg = EngineConfig().value
    state, bought = CustomerState("c"), datetime(2026, 1, 1, tzinfo=timezone.utc)
    state.apply(PurchaseEvent(event_id="e", customer_id="c", timestamp=bought, amount=10.0), cfg)
    as_of = (bought + timedelta(days=60, seconds=20)).timestamp()
    rules = RuleSet.from_toml('[[segment]]\nid = "lapsed"\nlabel = "Lapsed"\n'
                              'all = [{field = "days_since_last_purchase", op = ">", value = 60}]')
    shown = build_profile(state, as_of, pinned_valuation(cfg), cfg)
    exact = build_profile(state, as_of, pinned_valuation(cfg), cfg, exact=True)
    assert shown["days_since_last_purchase"] == 60.0 and exact["days_since_last_purchase"] > 60
    assert rules.evaluate(exact).memberships == {"lapsed"}
