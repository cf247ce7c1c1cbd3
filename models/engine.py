"""The value engine: applies events to customer states and keeps the population's BTYD model.

Pure (no Kafka, no asyncio): the worker, ``segstream replay`` and the benchmarks all drive this
same class. Customer states are owned by the caller (a Faust table, a dict), the engine only
updates them.

>>> from datetime import datetime, timezone
>>> from models.config import ValueConfig
>>> from schemas.events import PurchaseEvent
>>> engine = ValueEngine(ValueConfig())
>>> state = engine.new_state("c1")
>>> e = PurchaseEvent(event_id="e1", customer_id="c1",
...                   timestamp=datetime(2026, 1, 5, tzinfo=timezone.utc), amount=10.0)
>>> engine.apply(state, e, now=e.timestamp.timestamp()).applied
True
"""

from __future__ import annotations

from dataclasses import dataclass

from models.config import ValueConfig
from models.state import CustomerState, EngineRejection, Position, utc_day
from models.valuation import BtydPopulation, Valuation, fit_valuation, pinned_valuation
from schemas.events import AnyEvent, PurchaseEvent


@dataclass(frozen=True, slots=True)
class ApplyResult:
    applied: bool  # False: a duplicate event_id, ignored
    refitted: bool = False  # the valuation changed as a consequence


class ValueEngine:
    def __init__(self, config: ValueConfig, auto_refit: bool = True, keep_population: bool = True):
        """``auto_refit=False`` leaves refits to the caller (a replay fits once, at the end).
        ``keep_population=False``: no refits here at all (a worker gets its valuation from the
        trainer), so no per-customer BTYD rows are kept either."""
        self.config = config
        self.auto_refit = auto_refit and keep_population
        self.keep_population = keep_population
        self.population = BtydPopulation()
        self.valuation: Valuation = pinned_valuation(config)
        self._purchases_since_fit = 0

    def new_state(self, customer_id: str) -> CustomerState:
        return CustomerState(customer_id)

    def apply(self, state: CustomerState, event: AnyEvent, now: float,
              position: Position | None = None) -> ApplyResult:
        """Apply ``event`` to ``state``. ``now`` (epoch s) bounds how far in the future events may be.

        Raises :class:`EngineRejection` for an event that cannot be applied (it goes to the
        dead-letter topic with that reason).
        """
        ts = event.timestamp.timestamp()
        if ts > now + self.config.max_future_skew_s:
            raise EngineRejection("timestamp", f"{ts - now:.0f}s in the future (max skew {self.config.max_future_skew_s:.0f}s)")
        if not state.apply(event, self.config, position):
            return ApplyResult(applied=False)
        refitted = False
        if self.keep_population and isinstance(event, PurchaseEvent) and state.purchase_days:
            self.track(state)
            self._purchases_since_fit += 1
            if self.auto_refit and self._purchases_since_fit >= self.config.refit_every_events:
                refitted = self.refit(now)
        return ApplyResult(applied=True, refitted=refitted)

    def accepts(self, state: CustomerState, event: AnyEvent, now: float) -> bool:
        """True when :meth:`apply` would apply ``event`` to ``state`` (not rejected, not a repeat);
        ``state`` is left as it is (a copy is tried). A replay asks before letting the event's time
        drive its clock (:mod:`streams.replay`).

        >>> from datetime import datetime, timezone
        >>> engine = ValueEngine(ValueConfig())
        >>> state, at = engine.new_state("c1"), datetime(2026, 1, 5, tzinfo=timezone.utc)
        >>> eur = PurchaseEvent(event_id="e1", customer_id="c1", timestamp=at, amount=5.0, currency="EUR")
        >>> engine.accepts(state, eur, now=at.timestamp()), state.seen    # no EUR rate configured
        (False, {})
        """
        if event.timestamp.timestamp() > now + self.config.max_future_skew_s:
            return False
        try:
            return CustomerState.from_bytes(state.to_bytes()).apply(event, self.config)
        except EngineRejection:
            return False

    def track(self, state: CustomerState) -> None:
        """Record a customer's BTYD statistics for the next refit."""
        if state.purchase_days:
            self.population.update(state.customer_id, state.purchase_days[0], state.purchase_days[-1],
                                   state.frequency, state.monetary_value)

    def forget(self, customer_id: str) -> None:
        self.population.remove(customer_id)

    def refit(self, as_of: float) -> bool:
        """Refit the BTYD parameters on the population as of ``as_of``; True if they changed."""
        self._purchases_since_fit = 0
        new = fit_valuation(self.population, utc_day(as_of), self.config, self.valuation)
        changed = new != self.valuation
        self.valuation = new
        return changed
