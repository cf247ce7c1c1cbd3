"""Per-customer value state, updated one event at a time.

The state is what lives in the worker's table, so it is small and it serialises compactly
(``to_bytes``/``from_bytes``: a msgpack array, about 600 B for a customer with a few hundred
events). Updates are

* **idempotent against redelivery, exactly**: when the caller passes the event's position in its
  source (a topic tag, the partition and the offset), the state keeps, per source topic-partition,
  the highest offset it has applied. After a crash Kafka redelivers every topic-partition from its
  last committed offset, in offset order: whatever the state already holds is recognised however
  much is redelivered. Positions are kept per partition, not per topic, because producers with
  different partitioners put one customer's events of one type on several partitions
  (:mod:`streams.partitioning`). The state and its positions are saved together, so they can never
  disagree;
* **idempotent against repeated event ids, for a window of event time**: the identity of an event
  is (customer, event type, ``event_id``). An id applied less than ``dedupe_window_days`` (7) of
  the customer's event time ago, or among the customer's last ``dedupe_keep_last`` (16) of its
  type, is recognised and ignored, whatever came between (:class:`models.dedupe.RecentIds`: 12
  bytes an id, at most ``dedupe_max_ids`` per customer and type);
* **order-independent**: every field is a commutative aggregate (integer money in micro-units,
  sets of purchase days, maxima, time-decayed sums anchored at the latest event time), so the same
  events in any order give the same value fields. Only the dedupe window depends on arrival order.

Nothing here depends on "now": recency, T, P(alive) and decays are computed as of a given time by
:mod:`models.profile`.

>>> from datetime import datetime, timezone
>>> from models.config import ValueConfig
>>> from schemas.events import PurchaseEvent
>>> cfg = ValueConfig()
>>> s = CustomerState("c1")
>>> ts = datetime(2026, 1, 5, 10, tzinfo=timezone.utc)
>>> e = PurchaseEvent(event_id="e1", customer_id="c1", timestamp=ts, amount=20.0)
>>> s.apply(e, cfg), s.apply(e, cfg)   # the second time is a duplicate
(True, False)
>>> s.purchase_count, s.gross_spend
(1, 20.0)
>>> CustomerState.from_bytes(s.to_bytes()) == s
True
"""

from __future__ import annotations

import base64
import bisect
import math
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgpack
import orjson

from models.config import ValueConfig
from models.decay import DecayedSum
from models.dedupe import RecentIds, fingerprint, minute_of
from models.traits import TRAIT_INDEX, TRAIT_NAMES, merge_trait, traits_of
from schemas.events import (
    INFLUENCE_ACTIONS,
    AnyEvent,
    EngagementEvent,
    FeedbackEvent,
    FeedbackKind,
    ProfileEvent,
    PurchaseEvent,
)
from schemas.errors import ContractError

SECONDS_PER_DAY = 86_400
MICROS = 1_000_000  # money is kept in integer micro-units: sums are exact in any order
STATE_FORMAT = 3  # 1: JSON, 2: msgpack array with positions per topic (both still read), 3: per partition
ERASED_IDS_CAP = 4096  # ids of erased events kept per event type, the latest (12 B each)

#: Where an event sits in its ordered source: (source tag of the topic, partition, offset).
Position = tuple[int, int, int]


class EngineRejection(ContractError):
    """A valid event the engine cannot apply (e.g. a currency without a configured rate)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def source_tag(source: str) -> int:
    """A short stable tag of a source's name (a topic): positions from another source never match.

    A topic deleted and recreated under the same name restarts its offsets at 0: its events would
    look redelivered. Recreating an input topic therefore needs new tables (a new app id), as with
    any Kafka stream processor that keeps positions.
    """
    return zlib.crc32(source.encode())


def utc_day(epoch_s: float) -> int:
    """Days since 1970-01-01 of the UTC calendar day containing ``epoch_s``."""
    return int(epoch_s // SECONDS_PER_DAY)


def to_micros(amount: float) -> int:
    """Money in integer micro-units (half-even rounding). Unbounded like any Python int; the
    stored form holds any size (:func:`_pack_big`). Raises ``OverflowError`` for a non-finite
    amount.

    Rounding may make a tiny amount 0: whether it is a purchase or a refund is decided on the
    amount as sent, never on this (:meth:`CustomerState._apply_purchase`).

    >>> to_micros(12.5), to_micros(-0.0000004), to_micros(2e13)
    (12500000, 0, 20000000000000000000)
    """
    return round(amount * MICROS)


def purchase_micros(event: PurchaseEvent, config: ValueConfig) -> int:
    """The purchase's value in micro-units of the base currency, or :class:`EngineRejection`
    naming the field when it cannot be valued (no rate for its currency; a value past any float).

    >>> cfg = ValueConfig(base_currency="VND", currency_rates={"USD": 25000})
    >>> e = PurchaseEvent(event_id="w", customer_id="c", timestamp="2026-05-02T10:00:00Z",
    ...                   amount=800000000.0, currency="USD")
    >>> purchase_micros(e, cfg)  # beyond int64 and uint64: held all the same
    20000000000000000000
    """
    return value_micros(event.amount, event.currency, config, "amount")


def value_micros(amount: float, currency: str, config: ValueConfig, field: str) -> int:
    """``amount`` in ``currency`` as micro-units of the base currency, or :class:`EngineRejection`
    naming ``field`` (or ``currency``: no configured rate) when it cannot be valued."""
    value = amount * _rate(currency, config)
    if not math.isfinite(value):
        raise EngineRejection(field, f"{amount!r} {currency} is beyond any value in "
                              f"{config.base_currency} at the configured rate")
    return to_micros(value)


@dataclass(slots=True)
class CustomerState:
    customer_id: str
    # purchases (refunds are purchases with a negative amount, kept apart)
    purchase_count: int = 0
    gross_micros: int = 0
    refund_count: int = 0
    refund_micros: int = 0  # positive
    first_purchase_ts: float | None = None
    last_purchase_ts: float | None = None
    purchase_days: list[int] = field(default_factory=list)  # sorted distinct UTC days
    first_day_micros: int = 0  # spend on the first purchase day (not a repeat day)
    # engagement
    engagement_count: int = 0
    influence_count: int = 0
    last_engagement_ts: float | None = None
    actions: dict[str, DecayedSum] = field(default_factory=dict)
    channels: dict[str, DecayedSum] = field(default_factory=dict)
    # feedback
    nps_latest: int | None = None
    nps_latest_ts: float | None = None
    nps_weighted: DecayedSum = field(default_factory=DecayedSum)  # sum of decayed score weights
    nps_weights: DecayedSum = field(default_factory=DecayedSum)
    csat_sum: int = 0
    csat_count: int = 0
    review_sum: int = 0
    review_count: int = 0
    ticket_count: int = 0
    complaint_count: int = 0
    service_load: DecayedSum = field(default_factory=DecayedSum)  # decayed tickets + weighted complaints
    # recent spend: UTC day -> net micro-units (purchases minus refunds) of the days within
    # ValueConfig.recent_spend_days of the latest such day (older days are dropped: the same set
    # whatever the arrival order, see _add_recent)
    recent_spend: dict[int, int] = field(default_factory=dict)
    # traits (models.traits): name -> (timestamp, value), the latest timestamp winning; None = cleared
    traits: dict[str, tuple[float, Any]] = field(default_factory=dict)
    # segment membership (written by models.membership / models.segmentation)
    cluster: str | None = None
    cluster_since: float | None = None
    candidate: str | None = None  # a closer segment, not yet closer by the margin
    candidate_since: float | None = None
    previous_cluster: str | None = None
    switched_at: float | None = None
    flaps: int = 0
    rules: list[str] = field(default_factory=list)  # rule segment ids the customer is in
    # bookkeeping
    last_event_ts: float | None = None
    # the latest time the customer's segments were evaluated at: a customer's time never goes
    # back (a late event or a worker restarted behind its input must not undo a lapse)
    evaluated_at: float | None = None
    applied_events: int = 0
    change_seq: int = 0  # per-customer sequence of emitted segment changes (-> change_id)
    incarnation: int = 0  # from the first applied event's id: a new life after an erasure (-> change_id)
    # recently applied event ids, per event type -- see "idempotent against repeated event ids"
    seen: dict[str, RecentIds] = field(default_factory=dict)
    # (source tag, partition) -> highest applied offset -- see "idempotent against redelivery"
    positions: dict[tuple[int, int], int] = field(default_factory=dict)
    # segment changes saved with the state but not yet acknowledged by the broker (JSON documents);
    # empty except across a crash (streams.processor sends them again, as saved)
    outbox: list[str] = field(default_factory=list)
    # erasure: (source tag, partition) -> first offset produced after the request was accepted;
    # events before it are the erased customer's and are dropped however late they arrive
    erased_before: dict[tuple[int, int], int] = field(default_factory=dict)
    erasures: list[int] = field(default_factory=list)  # fingerprints of the erase requests applied
    # ids of the erased events (fingerprints, no content), per event type: the same event sent
    # again after the erasure is a repeat, not a new life
    erased_ids: dict[str, RecentIds] = field(default_factory=dict)
    # (source tag, partition) -> highest offset applied before the erasure although produced after
    # it: those events were erased with the rest and are read again (see :meth:`erased`)
    replay_to: dict[tuple[int, int], int] = field(default_factory=dict)

    # ---- erasure -------------------------------------------------------------------------------

    @classmethod
    def erased(cls, customer_id: str, previous: "CustomerState | None", request_id: str,
               cutoff: dict[tuple[int, int], int]) -> "CustomerState":
        """What is left of a customer after the erase request ``request_id``: no data, only the
        marker that keeps it erased. ``cutoff``: per source topic-partition, the first offset
        produced after the request was accepted (the end offsets then); an event before it is
        dropped whenever it arrives (:meth:`before_erasure`), one after it starts a new life.
        Earlier requests' cutoffs and ids are kept (a repeat of any of them is a no-op), and so
        are the ids of the erased events (fingerprints, no content): the same event sent again
        after the erasure is still a repeat, not a new life.

        Events produced after the cutoff but consumed before the request (its topic is read
        independently of the inputs) went with the state. The marker's :attr:`replay_to` says
        which sources hold such events and up to which offset: the caller reads those sources
        again from the cutoff (:meth:`replay_pending`), and those events, re-applied, start the
        new life as if the request had come first."""
        marker = cls(customer_id)
        if previous is not None:
            marker.erased_before = dict(previous.erased_before)
            marker.erasures = list(previous.erasures)
            marker.erased_ids = _union(previous.erased_ids, previous.seen)
            marker.replay_to = {source: offset for source, offset in previous.positions.items()
                                if offset >= cutoff.get(source, offset + 1)}
        for source, offset in cutoff.items():
            marker.erased_before[source] = max(offset, marker.erased_before.get(source, 0))
        marker.erasures.append(fingerprint(request_id))
        return marker

    def replay_pending(self) -> dict[tuple[int, int], int]:
        """Per source, the offset to read again from (the erasure's cutoff), while events the
        last erasure took although produced after it are not applied again yet."""
        return {source: self.erased_before[source] for source, upto in self.replay_to.items()
                if self.positions.get(source, -1) < upto}

    @property
    def holds_data(self) -> bool:
        """False for a new state and for the marker an erasure leaves (nothing to show or segment)."""
        return self.applied_events > 0

    def erasure_applied(self, request_id: str) -> bool:
        return fingerprint(request_id) in self.erasures

    def before_erasure(self, position: Position) -> bool:
        """True when the event at ``position`` was produced before an erase request was accepted."""
        cutoff = self.erased_before.get(position[:2])
        return cutoff is not None and position[2] < cutoff

    # ---- updates -------------------------------------------------------------------------------

    def apply(self, event: AnyEvent, config: ValueConfig, position: Position | None = None) -> bool:
        """Apply one event; False when it is a duplicate (already applied).

        ``position``: (source tag, partition, offset) of the event in its ordered source (see
        :func:`source_tag`); an offset at or below the highest already applied from the same
        topic-partition is a redelivery. Raises :class:`EngineRejection` for events the engine
        cannot value.
        """
        if position is not None and self.redelivered(position):
            return False
        # Valued before anything is touched: an event the engine cannot value leaves no trace.
        micros = purchase_micros(event, config) if isinstance(event, PurchaseEvent) else 0
        traits = self._traits_valued(event, config) if isinstance(event, ProfileEvent) else None
        fp = fingerprint(event.event_id)
        erased = self.erased_ids.get(event.type)
        if erased is not None and fp in erased and not self._replayed(position):
            if position is not None:
                self._advance(position)
            return False
        recent = self.seen.get(event.type)
        if recent is not None and fp in recent:
            if position is not None:
                self._advance(position)
            return False
        ts = event.timestamp.timestamp()
        if isinstance(event, PurchaseEvent):
            self._apply_purchase(event, micros, ts, config.recent_spend_days)
        elif isinstance(event, EngagementEvent):
            self._apply_engagement(event, ts, config)
        elif isinstance(event, FeedbackEvent):
            self._apply_feedback(event, ts, config)
        elif traits is not None:
            for name, value in traits.items():
                merge_trait(self.traits, name, ts, value)
        # Nothing above raised (a rejection leaves the state exactly as it was): record the id now.
        if recent is None:
            recent = self.seen[event.type] = RecentIds()
        if self.applied_events == 0:
            self.incarnation = fp >> 32
        self.applied_events += 1
        if position is not None:
            self._advance(position)
        if traits is None:  # a profile update is not activity (last_active_at, the customer's event time)
            self.last_event_ts = ts if self.last_event_ts is None else max(self.last_event_ts, ts)
        anchor = self.last_event_ts if self.last_event_ts is not None else ts
        recent.add(fp, anchor)  # applied "at" the customer's event time (never earlier)
        stale = minute_of(anchor - config.dedupe_window_days * SECONDS_PER_DAY)
        keep_last, cap = config.dedupe_keep_last, config.dedupe_max_ids
        for ids in self.seen.values():
            ids.prune_before(stale, keep_last, cap)
        return True

    def redelivered(self, position: Position) -> bool:
        """True when ``position`` is at or below the highest offset applied from its topic-partition."""
        held = self.positions.get(position[:2])
        return held is not None and position[2] <= held

    def _replayed(self, position: Position | None) -> bool:
        """True for an event read again after an erasure took it although produced after it."""
        if position is None:
            return False
        upto = self.replay_to.get(position[:2])
        return upto is not None and position[2] <= upto

    def _advance(self, position: Position) -> None:
        source = position[:2]
        held = self.positions.get(source)
        if held is None or position[2] > held:
            self.positions[source] = position[2]
        upto = self.replay_to.get(source)
        if upto is not None and position[2] >= upto:
            del self.replay_to[source]  # read again to where the erasure took it

    @staticmethod
    def _traits_valued(event: ProfileEvent, config: ValueConfig) -> dict[str, Any]:
        """The event's traits, ``acquisition_cost`` in base-currency micro-units."""
        traits = traits_of(event)
        cost = traits.get("acquisition_cost")
        if cost is not None:
            traits["acquisition_cost"] = value_micros(cost, event.currency, config, "acquisition_cost")
        return traits

    def _add_recent(self, day: int, micros: int, window_days: int) -> None:
        """Add a day's net spend to :attr:`recent_spend`, keeping the days within ``window_days`` of
        the latest one. The days kept are those within the window of the latest day ever added,
        whatever the order they came in: an older day is dropped either on arrival or when a
        newer one pushes the window past it."""
        recent = self.recent_spend
        latest = max(recent) if recent else day
        if day <= latest - window_days:
            return
        recent[day] = recent.get(day, 0) + micros
        if day > latest:
            for old in [d for d in recent if d <= day - window_days]:
                del recent[old]

    def _apply_purchase(self, event: PurchaseEvent, micros: int, ts: float, window_days: int) -> None:
        # Refund or purchase on the sign of the amount as sent: -0.0000004 rounds to 0 micro-units
        # yet is a refund (no purchase, no purchase day); +0.0000004 is a purchase of 0.
        self._add_recent(utc_day(ts), micros, window_days)  # negative for a refund
        if event.is_refund:
            self.refund_count += 1
            self.refund_micros -= micros
            return
        self.purchase_count += 1
        self.gross_micros += micros
        self.first_purchase_ts = ts if self.first_purchase_ts is None else min(self.first_purchase_ts, ts)
        self.last_purchase_ts = ts if self.last_purchase_ts is None else max(self.last_purchase_ts, ts)
        day = utc_day(ts)
        days = self.purchase_days
        if not days or day < days[0]:
            days.insert(0, day)
            self.first_day_micros = micros
        elif day == days[0]:
            self.first_day_micros += micros
        else:
            i = bisect.bisect_left(days, day)
            if i == len(days) or days[i] != day:
                days.insert(i, day)

    def _apply_engagement(self, event: EngagementEvent, ts: float, config: ValueConfig) -> None:
        half_life = config.engagement_half_life_days * SECONDS_PER_DAY
        self.engagement_count += 1
        _decayed(self.actions, event.action.value).add(1.0, ts, half_life)
        if event.channel is not None:
            _decayed(self.channels, event.channel.value).add(1.0, ts, half_life)
        if event.action in INFLUENCE_ACTIONS:
            self.influence_count += 1
        self.last_engagement_ts = ts if self.last_engagement_ts is None else max(self.last_engagement_ts, ts)

    def _apply_feedback(self, event: FeedbackEvent, ts: float, config: ValueConfig) -> None:
        half_life = config.feedback_half_life_days * SECONDS_PER_DAY
        kind, score = event.kind, event.score
        if kind is FeedbackKind.nps:
            assert score is not None
            # Latest by event time; ties broken by score so that arrival order never matters.
            if self.nps_latest_ts is None or (ts, score) > (self.nps_latest_ts, self.nps_latest or 0):
                self.nps_latest, self.nps_latest_ts = score, ts
            self.nps_weighted.add(float(score), ts, half_life)
            self.nps_weights.add(1.0, ts, half_life)
        elif kind is FeedbackKind.csat:
            self.csat_sum += score or 0
            self.csat_count += 1
        elif kind is FeedbackKind.review:
            self.review_sum += score or 0
            self.review_count += 1
        elif kind is FeedbackKind.support_ticket:
            self.ticket_count += 1
            self.service_load.add(1.0, ts, half_life)
        elif kind is FeedbackKind.complaint:
            self.complaint_count += 1
            self.service_load.add(config.complaint_weight, ts, half_life)

    # ---- derived values that do not depend on "now" ---------------------------------------------

    @property
    def gross_spend(self) -> float:
        return self.gross_micros / MICROS

    @property
    def refund_total(self) -> float:
        return self.refund_micros / MICROS

    @property
    def total_spend(self) -> float:
        """Net spend: purchases minus refunds."""
        return (self.gross_micros - self.refund_micros) / MICROS

    @property
    def average_order_value(self) -> float:
        return self.gross_spend / self.purchase_count if self.purchase_count else 0.0

    @property
    def frequency(self) -> int:
        """BTYD frequency: distinct purchase days after the first."""
        return max(len(self.purchase_days) - 1, 0)

    @property
    def recency_days(self) -> int:
        """BTYD recency: days from the first to the last purchase day."""
        return self.purchase_days[-1] - self.purchase_days[0] if self.purchase_days else 0

    @property
    def monetary_value(self) -> float:
        """BTYD monetary value: mean spend per repeat purchase day (0 without repeats)."""
        f = self.frequency
        return (self.gross_micros - self.first_day_micros) / MICROS / f if f else 0.0

    def value_fields(self) -> dict[str, Any]:
        """Everything but arrival-order bookkeeping: equal for the same events in any order."""
        doc = self._to_doc()
        for key in ("seen", "pos", "outbox", "erased_before", "erasures", "erased_ids", "replay_to", "change_seq", "incarnation", "cluster", "cluster_since", "candidate", "candidate_since",
                    "previous_cluster", "switched_at", "flaps", "rules", "evaluated_at"):
            doc.pop(key, None)
        return doc

    # ---- serialisation ---------------------------------------------------------------------------

    def _to_doc(self) -> dict[str, Any]:
        """The state as a JSON-friendly document (for comparisons and debugging)."""
        doc: dict[str, Any] = {"id": self.customer_id}
        for name in _SCALARS:
            value = getattr(self, name)
            if value:  # zeros and Nones are the defaults: leave them out
                doc[name] = value
        if self.purchase_days:
            doc["purchase_days"] = _deltas(self.purchase_days)
        if self.rules:
            doc["rules"] = self.rules
        for name in ("actions", "channels"):
            if getattr(self, name):
                doc[name] = {k: [d.value, d.ref] for k, d in getattr(self, name).items()}
        for name in _DECAYED:
            d: DecayedSum = getattr(self, name)
            if d.value or d.ref:
                doc[name] = [d.value, d.ref]
        doc["seen"] = {etype: [list(ids.fingerprints), list(ids.minutes)] for etype, ids in self.seen.items()}
        if self.positions:
            doc["pos"] = [[tag, partition, offset] for (tag, partition), offset in self.positions.items()]
        if self.outbox:
            doc["outbox"] = self.outbox
        if self.recent_spend:
            doc["recent_spend"] = {str(day): micros for day, micros in sorted(self.recent_spend.items())}
        if self.traits:
            doc["traits"] = {name: list(self.traits[name]) for name in TRAIT_NAMES if name in self.traits}
        if self.erasures:
            doc["erased_before"] = [[tag, partition, offset] for (tag, partition), offset in self.erased_before.items()]
            doc["erasures"] = self.erasures
            doc["erased_ids"] = {etype: list(ids.fingerprints) for etype, ids in self.erased_ids.items()}
            doc["replay_to"] = [[tag, partition, offset] for (tag, partition), offset in self.replay_to.items()]
        return doc

    def to_bytes(self) -> bytes:
        """The table's format: a msgpack array, fields by position (no names: the table holds one
        per customer; 1,150 B as JSON, about 700 B like this)."""
        return msgpack.packb([
            STATE_FORMAT, self.customer_id, [getattr(self, name) for name in _SCALARS], _deltas(self.purchase_days),
            self.rules, {k: [d.value, d.ref] for k, d in self.actions.items()},
            {k: [d.value, d.ref] for k, d in self.channels.items()},
            [[d.value, d.ref] for d in (getattr(self, name) for name in _DECAYED)],
            {etype: ids.to_wire() for etype, ids in self.seen.items()},
            [[tag, partition, offset] for (tag, partition), offset in self.positions.items()], self.outbox,
            [[tag, partition, offset] for (tag, partition), offset in self.erased_before.items()], self.erasures,
            {etype: ids.to_wire() for etype, ids in self.erased_ids.items()},
            [[tag, partition, offset] for (tag, partition), offset in self.replay_to.items()],
            _pack_recent(self.recent_spend), _pack_traits(self.traits),
        ], default=_pack_big)

    @classmethod
    def from_bytes(cls, raw: bytes, partition: int | None = None) -> "CustomerState":
        """Decode the table's bytes. ``partition``: the partition the state is read for. Formats 1
        and 2 kept one position per topic; they came from the partition the state lived on, which
        for a deployment whose producers used Kafka's default partitioner is the customer's home
        partition: pass it, and those positions count for it (without it they are dropped, and
        a redelivery is only recognised by its event id)."""
        if raw[:1] == b"{":
            return cls._from_json(raw, partition)
        (version, customer_id, scalars, deltas, rules, actions, channels, decayed, seen, positions,
         outbox, *erasure) = msgpack.unpackb(raw, ext_hook=_unpack_ext)
        if version not in (2, STATE_FORMAT):
            raise ContractError(f"unknown customer state format {version!r}")
        state = cls(customer_id)
        for name, value in zip(_SCALARS, scalars):
            setattr(state, name, value)
        state.purchase_days = _undelta(deltas)
        state.rules = rules
        state.actions = {k: DecayedSum(v, r) for k, (v, r) in actions.items()}
        state.channels = {k: DecayedSum(v, r) for k, (v, r) in channels.items()}
        for name, (v, r) in zip(_DECAYED, decayed):
            setattr(state, name, DecayedSum(v, r))
        if version == STATE_FORMAT:
            state.seen = {etype: RecentIds.from_wire(wire) for etype, wire in seen.items()}
            state.positions = {(tag, p): offset for tag, p, offset in positions}
            erased_before, state.erasures, *replay = erasure
            state.erased_before = {(tag, p): offset for tag, p, offset in erased_before}
            if replay:  # written since erasures re-read what they took (earlier: no erased ids kept apart)
                erased_ids, replay_to, *kept = replay
                state.erased_ids = {etype: RecentIds.from_wire(wire) for etype, wire in erased_ids.items()}
                state.replay_to = {(tag, p): offset for tag, p, offset in replay_to}
                if kept:  # written since profiles and recent spend (earlier: neither)
                    state.recent_spend = _unpack_recent(kept[0])
                    state.traits = _unpack_traits(kept[1])
        else:
            state._load_format2(seen, positions, partition)
        state.outbox = outbox
        return state

    def _load_format2(self, seen: dict[str, bytes], positions: dict[str, list[int]], partition: int | None) -> None:
        """Fingerprints without the time they were applied (taken as the latest event time) and
        one position per event type (attributed to ``partition``, see :meth:`from_bytes`)."""
        at = self.last_event_ts or 0.0
        self.seen = {etype: RecentIds.from_fingerprints(ring, at) for etype, ring in seen.items()}
        if partition is not None:
            self.positions = {(tag, partition): offset for tag, offset in positions.values()}

    @classmethod
    def _from_json(cls, raw: bytes, partition: int | None = None) -> "CustomerState":
        """Format 1 (JSON, fingerprints in base64): tables written before format 2 still load."""
        doc = orjson.loads(raw)
        if doc.get("v") != 1:
            raise ContractError(f"unknown customer state format {doc.get('v')!r}")
        state = cls(doc["id"])
        for name in _SCALARS:
            if name in doc:
                setattr(state, name, doc[name])
        state.purchase_days = _undelta(doc.get("purchase_days", []))
        state.rules = doc.get("rules", [])
        for name in ("actions", "channels"):
            setattr(state, name, {k: DecayedSum(v, r) for k, (v, r) in doc.get(name, {}).items()})
        for name in _DECAYED:
            if name in doc:
                setattr(state, name, DecayedSum(*doc[name]))
        seen = {etype: base64.b64decode(b64) for etype, b64 in doc.get("seen", {}).items()}
        state._load_format2(seen, doc.get("pos", {}), partition)
        state.outbox = doc.get("outbox", [])
        return state


_SCALARS = (
    "purchase_count", "gross_micros", "refund_count", "refund_micros", "first_purchase_ts",
    "last_purchase_ts", "first_day_micros", "engagement_count", "influence_count",
    "last_engagement_ts", "nps_latest", "nps_latest_ts", "csat_sum", "csat_count", "review_sum",
    "review_count", "ticket_count", "complaint_count", "last_event_ts", "applied_events", "change_seq", "incarnation",
    "cluster", "cluster_since", "candidate", "candidate_since", "previous_cluster", "switched_at", "flaps",
    "evaluated_at",  # last: states written before it have one scalar fewer and read it as None
)
_DECAYED = ("nps_weighted", "nps_weights", "service_load")


#: msgpack extension code of an integer past msgpack's own (int64 and uint64): money totals in
#: micro-units pass 2**64 after about 18,447 purchases of 1e9 (and one purchase in a currency whose
#: rate is large). Written only for such values, so states without them read as before.
_BIG_INT = 1


def _pack_big(obj: Any) -> msgpack.ExtType:
    """msgpack's ``default`` for what it cannot pack: integers of any size, as two's-complement
    big-endian bytes (9 bytes for a value just past 2**64).

    >>> _unpack_ext(*_pack_big(-2**70)) == -2**70
    True
    """
    if isinstance(obj, int):
        return msgpack.ExtType(_BIG_INT, obj.to_bytes(obj.bit_length() // 8 + 1, "big", signed=True))
    raise TypeError(f"cannot serialise {type(obj).__name__} in a customer state")


def _unpack_ext(code: int, data: bytes) -> Any:
    if code == _BIG_INT:
        return int.from_bytes(data, "big", signed=True)
    raise ContractError(f"unknown msgpack extension {code} in a customer state")


def _union(*ids: dict[str, RecentIds]) -> dict[str, RecentIds]:
    """The ids of several lives, per event type, the latest :data:`ERASED_IDS_CAP` of each kept."""
    union: dict[str, RecentIds] = {}
    for table in ids:
        for etype, recent in table.items():
            union[etype] = union[etype].joined(recent, ERASED_IDS_CAP) if etype in union else recent.copy()
    return union


def _deltas(days: list[int]) -> list[int]:
    """Sorted days as the first and the gaps: small numbers, one byte each in msgpack."""
    return days[:1] + [b - a for a, b in zip(days, days[1:])]


def _undelta(deltas: list[int]) -> list[int]:
    days, acc = [], 0
    for delta in deltas:
        acc += delta
        days.append(acc)
    return days


def _decayed(table: dict[str, DecayedSum], key: str) -> DecayedSum:
    d = table.get(key)
    if d is None:
        d = table[key] = DecayedSum()
    return d


def _pack_recent(recent: dict[int, int]) -> list[int]:
    """``[latest day, then (latest - day, micros) per day]``: one-byte day offsets."""
    if not recent:
        return []
    latest = max(recent)
    return [latest, *(x for day, micros in sorted(recent.items()) for x in (latest - day, micros))]


def _unpack_recent(packed: list[int]) -> dict[int, int]:
    if not packed:
        return {}
    latest = packed[0]
    return {latest - packed[i]: packed[i + 1] for i in range(1, len(packed), 2)}


def _pack_traits(traits: dict[str, tuple[float, Any]]) -> list[Any]:
    """``[[timestamp, index, value, index, value, ...], ...]``: the traits grouped by the time
    they were set (one profile event sets several), a trait by its index in :data:`TRAIT_NAMES`."""
    by_time: dict[float, list[Any]] = {}
    for name, (ts, value) in traits.items():
        by_time.setdefault(ts, [ts]).extend((TRAIT_INDEX[name], value))
    return list(by_time.values())


def _unpack_traits(packed: list[list[Any]]) -> dict[str, tuple[float, Any]]:
    return {TRAIT_NAMES[group[i]]: (group[0], group[i + 1]) for group in packed for i in range(1, len(group), 2)}


def _rate(currency: str, config: ValueConfig) -> float:
    if currency == config.base_currency:
        return 1.0
    rate = config.currency_rates.get(currency)
    if rate is None:
        raise EngineRejection("currency", f"no rate configured from {currency} to {config.base_currency}")
    return rate
