"""The whole pure engine for one event: value state -> features -> segments -> change records.

``Pipeline`` is what the worker, the replay and the benchmarks drive. It owns no customer states
(the caller does: a Faust table or a dict) and no I/O.

>>> from datetime import datetime, timezone
>>> from models.config import EngineConfig
>>> from schemas.events import PurchaseEvent
>>> p = Pipeline(EngineConfig())
>>> state = p.new_state("c1")
>>> e = PurchaseEvent(event_id="e1", customer_id="c1",
...                   timestamp=datetime(2026, 1, 5, tzinfo=timezone.utc), amount=10.0)
>>> out = p.process(state, e, now=e.timestamp.timestamp())
>>> out.applied, out.changes      # no model trained yet: no segment to enter
(True, [])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from models.config import EngineConfig
from models.engine import ValueEngine
from models.features import FEATURES, FeatureBasis, basis_of, matrix_at, vector_at
from models.kpis import SegmentKPIs, cluster_defining_fields
from models.profile import build_profile, decision_values, load_rules
from models.rules import RuleChange, RuleSet, RuleSizes, diff_memberships, percentile_key
from models.segmentation import ClusterChange, Segmenter
from models.snapshot import ModelSnapshot
from models.state import CustomerState, Position, utc_day
from models.valuation import Valuation
from schemas.events import AnyEvent
from schemas.segment_change import (
    Reason,
    ReasonCode,
    SegmentChange,
    SegmentKind,
    SegmentRef,
    ValueSummary,
)


@dataclass(slots=True)
class Outcome:
    applied: bool
    changes: list[SegmentChange] = field(default_factory=list)
    snapshot: ModelSnapshot | None = None  # a new model version trained on this event


BasisSink = Callable[[str, FeatureBasis], None]


class Pipeline:
    """``train_locally=False`` makes an assign-only pipeline, as in a worker: no BTYD rows, no
    training sample; the model comes from :meth:`install` and every evaluated customer's feature
    basis goes to ``on_basis`` (the worker forwards the sampled ones to the group's trainer).

    BTYD refits happen at trainings only (:meth:`train`), as part of the candidate model that the
    adoption rule judges (:meth:`models.segmentation.Segmenter.train`); ``auto_refit`` no longer
    refits between trainings (a refit in force without a model judged on it would move customers)."""

    def __init__(self, config: EngineConfig, auto_train: bool = True, auto_refit: bool = True,
                 rules: RuleSet | None = None, train_locally: bool = True,
                 on_basis: BasisSink | None = None):
        self.config = config
        # BTYD refits happen in train() only, as part of the candidate model: a refit changes every
        # customer's CLV and P(alive) features, so it comes into force with the model that was
        # judged on them, or not at all (``auto_refit`` is kept for callers; trainings refit).
        self.values = ValueEngine(config.value, auto_refit=False, keep_population=train_locally)
        if rules is None and config.segmentation.rules_file:
            rules = load_rules(config.segmentation.rules_file)
        self.rules = rules
        self.segmenter = Segmenter(config.segmentation, rules)
        self.auto_train = auto_train and train_locally
        self._on_basis: BasisSink | None = self.segmenter.observe if train_locally else on_basis
        self._events_since_train = 0
        self.rule_sizes = RuleSizes()  # exact rule segment sizes over the customers evaluated here

    def install(self, snapshot: ModelSnapshot) -> bool:
        """Assign with ``snapshot`` (and value with its BTYD parameters) from now on, unless a newer
        version is installed already. True if it was installed."""
        current = self.snapshot
        if current is not None and snapshot.version < current.version:
            return False
        self.segmenter.install(snapshot)
        if snapshot.valuation:
            self.values.valuation = Valuation.from_dict(snapshot.valuation)
        return True

    def new_state(self, customer_id: str) -> CustomerState:
        return CustomerState(customer_id)

    @property
    def snapshot(self) -> ModelSnapshot | None:
        return self.segmenter.snapshot

    def process(self, state: CustomerState, event: AnyEvent, now: float, clock: float | None = None) -> Outcome:
        """Apply one event. ``now`` bounds future timestamps; ``clock`` (default ``now``) is the time
        segments are evaluated at (a replay passes its event-time watermark)."""
        result = self.values.apply(state, event, now)
        if not result.applied:
            return Outcome(applied=False)
        at = now if clock is None else clock
        outcome = Outcome(applied=True, changes=self.evaluate(state, at))
        self._events_since_train += 1
        if self.auto_train and self._events_since_train >= self.config.segmentation.train_every_events:
            outcome.snapshot = self.train(at)
        return outcome

    def apply(self, state: CustomerState, event: AnyEvent, now: float,
              position: Position | None = None) -> bool:
        """Apply one event without evaluating segments (a worker applies a whole batch, then
        evaluates each customer it touched once). False for a duplicate; ``position`` as in
        :meth:`CustomerState.apply`."""
        applied = self.values.apply(state, event, now, position).applied
        self._events_since_train += applied
        return applied

    def maybe_train(self, at: float) -> ModelSnapshot | None:
        """Train when ``train_every_events`` applied events have passed (local training only)."""
        if self.auto_train and self._events_since_train >= self.config.segmentation.train_every_events:
            return self.train(at)
        return None

    def evaluate(self, state: CustomerState, now: float) -> list[SegmentChange]:
        """Re-evaluate a customer's segments as of ``now`` (also what the clock-driven sweep calls).

        A customer's time never goes back: ``now`` before the time of its last membership decision
        (``evaluated_at``: a change, or a candidate move starting its dwell) is taken as that time.
        A late event, or a worker evaluating behind its input after a restart, would otherwise
        take back a lapse the customer's data never took back. Only decisions record the time: an
        evaluation that decides nothing leaves the state as it was (the sweep writes nothing)."""
        if state.evaluated_at is not None and now < state.evaluated_at:
            now = state.evaluated_at
        traits = self._vector_traits()
        basis = basis_of(state, self.config.value, traits=self._carry_traits(traits))
        return self._decide(state, basis, vector_at(basis, now, self.values.valuation, self.config.value, traits), now)

    def evaluate_many(self, states: Sequence[CustomerState], nows: Sequence[float]) -> list[list[SegmentChange]]:
        """:meth:`evaluate` for a batch of customers (``states[i]`` as of ``nows[i]``), with the
        features and the distances to the centroids computed for the whole batch at once (numpy:
        the BTYD P(alive) and CLV of every buyer in one call). Returns each customer's changes,
        the same as :meth:`evaluate` one by one, which stays the reference
        (tests/test_batch_engine.py replays personas and CDNOW through both)."""
        if len(states) < 2:
            return [self.evaluate(state, now) for state, now in zip(states, nows)]
        at = np.array([now if s.evaluated_at is None or now >= s.evaluated_at else s.evaluated_at
                       for s, now in zip(states, nows)], dtype=float)
        value_config = self.config.value
        traits = self._vector_traits()
        carry = self._carry_traits(traits)
        bases = [basis_of(state, value_config, traits=carry) for state in states]
        matrix = matrix_at(bases, at, self.values.valuation, value_config, traits)
        snap = self.snapshot
        distances = snap.distances_many(matrix) if snap is not None and len(snap.centroids) else None
        return [self._decide(state, basis, matrix[i], float(at[i]), None if distances is None else distances[i])
                for i, (state, basis) in enumerate(zip(states, bases))]

    def _vector_traits(self) -> tuple[str, ...]:
        """The trait features of the model in force (its ``features`` past :data:`FEATURES`): a
        customer is assigned in the model's own feature space, whatever this engine's configuration
        (a worker that installed a model trained on other trait features assigns by it)."""
        snap = self.snapshot
        return tuple(snap.features[len(FEATURES):]) if snap is not None else ()

    def _carry_traits(self, in_force: tuple[str, ...]) -> bool:
        """Whether bases carry the traits: trait features are configured (the trainer needs them)
        or in force. Without, a basis is exactly as before trait features existed."""
        return bool(in_force) or bool(self.config.segmentation.trait_features)

    def _decide(self, state: CustomerState, basis: FeatureBasis, vector: list[float] | np.ndarray, now: float,
                distances_row: np.ndarray | None = None) -> list[SegmentChange]:
        """The membership decisions of one evaluation (``vector``: the customer's features as of
        ``now``; ``distances_row``: their distances to the centroids, when computed for a batch)."""
        before = _membership(state)
        change = self.segmenter.assign(state, vector, now, distances_row)
        if self._on_basis is not None:  # with the membership just decided: figures are over members
            # The basis is ours until it is sent: set in place (dataclasses.replace was 4 % of the engine).
            object.__setattr__(basis, "segment", state.cluster)
            self._on_basis(state.customer_id, basis)
        records = [self._cluster_record(state, change, now)] if change else []
        if self.rules is not None:
            records.extend(self._rule_records(state, now))
        if records or _membership(state) != before:
            state.evaluated_at = now
        return records

    def _rule_records(self, state: CustomerState, now: float) -> list[SegmentChange]:
        """Rules need no clustering model: literal clauses hold from the first event, percentile
        clauses once a snapshot brings their thresholds (false, and saying so, until then).
        Members are held to the relaxed percentiles (``rule_band``)."""
        snap = self.snapshot
        assert self.rules is not None
        # Decided on exact (unrounded) figures, only those the clauses read.
        profile = decision_values(state, now, self.values.valuation, self.config.value, self.rules.fields)
        members = frozenset(state.rules)
        thresholds, band = (snap.rule_thresholds if snap else None), self.config.segmentation.rule_band
        if self.rules.memberships(profile, thresholds, members, band) == members:
            return []  # nothing entered or left: the clause details (texts, reasons) are not needed
        evaluation = self.rules.evaluate(profile, thresholds, members, band)
        changes = diff_memberships(members, evaluation)
        if not changes:
            return []
        state.rules = sorted(evaluation.memberships)
        self.rule_sizes.record(changes)
        return [self._rule_record(state, change, now, snap.version if snap else None) for change in changes]

    def rule_report(self, sizes: Mapping[str, int] | None = None, size_scope: str | None = None) -> dict[str, Any]:
        """The rule part of ``/segments`` and of the replay's ``--snapshot-out``: three keys.

        ``rule_segments``: each rule segment with its ``size``, by default the exact count kept by
        this engine (:class:`~models.rules.RuleSizes`: every customer, in a replay); a worker passes
        its own ``sizes`` (an id missing there has size None: not counted) and says what they cover
        in ``size_scope`` (``rule_size_scope``).
        ``rule_percentiles``: the percentile thresholds in force (entry and relaxed by
        ``rule_band``), the model version that brought them, and ``pending``: each threshold not
        known yet and why (clauses on a pending entry threshold are false until it is known).

        >>> from models.config import EngineConfig
        >>> rules = RuleSet.from_toml('[[segment]]\\nid = "vip"\\nlabel = "VIP"\\n'
        ...                           'all = [{field = "clv", op = ">", value = "p80"}]')
        >>> report = Pipeline(EngineConfig(), rules=rules).rule_report()
        >>> report["rule_segments"][0]["size"], [p["threshold"] for p in report["rule_percentiles"]["pending"]]
        (0, ['clv:p80'])
        """
        rules, snap, seg = self.rules, self.snapshot, self.config.segmentation
        if rules is None:
            return {"rule_segments": [], "rule_size_scope": None, "rule_percentiles": None}
        thresholds = snap.rule_thresholds if snap is not None else {}
        entry = {percentile_key(f, p) for f, p in rules.percentiles_needed()}
        missing = rules.pending_thresholds(thresholds, seg.rule_band)
        # A relaxed threshold only holds members: worth a line only when its entry ones exist.
        short = {key.rpartition(":")[0] for key in missing if key in entry}
        pending = [{"threshold": key, "why": self._pending_why(key, key in entry)}
                   for key in missing if key in entry or key.rpartition(":")[0] not in short]
        counts = sizes if sizes is not None else {d.id: self.rule_sizes.size(d.id) for d in rules.definitions.segment}
        return {
            "rule_segments": [{"id": d.id, "label": d.label, "description": d.description,
                               "size": counts.get(d.id)} for d in rules.definitions.segment],
            "rule_size_scope": size_scope or "exact: every customer this engine evaluated",
            "rule_percentiles": {
                "band_percentile_points": seg.rule_band,
                "thresholds": dict(sorted(thresholds.items())),
                "model_version": snap.version if snap is not None else None,
                "pending": pending,
            },
        }

    def why_no_model(self) -> str:
        """Why there is no clustering model yet, in a marketer's words (None-free)."""
        seg = self.config.segmentation
        return (f"no model trained yet: a training needs {seg.min_customers_to_train} customers in the training "
                f"sample (and for the first model, {seg.first_model_min_tenure_days:g} days since the first "
                f"purchase of its median buyer)")

    def _pending_why(self, key: str, entry: bool) -> str:
        snap, seg = self.snapshot, self.config.segmentation
        field = key.rpartition(":")[0]
        if snap is None:
            return (f"{self.why_no_model()}; percentile thresholds are computed at each training, and clauses "
                    f"on it are false until then")
        if not entry:
            return (f"model v{snap.version} has no relaxed threshold {key} (trained with another rule_band, or "
                    f"before hysteresis existed): members are held to the entry threshold until a training brings it")
        return (f"fewer than {seg.threshold_min_samples} customers of model v{snap.version}'s training sample "
                f"have a value of {field}; clauses on it are false until then")

    def _rule_record(self, state: CustomerState, change: RuleChange, now: float, model_version: int | None) -> SegmentChange:
        ref = SegmentRef(id=change.segment_id, label=change.label)
        return SegmentChange(
            change_id=next_change_id(state),
            customer_id=state.customer_id, kind=SegmentKind.rule,
            previous_segment=None if change.entered else ref, segment=ref if change.entered else None,
            changed_at=datetime.fromtimestamp(now, timezone.utc), model_version=model_version,
            definition_version=change.definition_version,
            reason=Reason(code=ReasonCode.rule_entered if change.entered else ReasonCode.rule_left,
                          details=change.to_details()),
            value=self.value_summary(state, now),
        )

    def erase(self, state: CustomerState, now: float) -> list[SegmentChange]:
        """The exits of an erased customer (reason ``erased``), one per segment they are in. The
        caller deletes the state; the records carry no value summary (the data is gone)."""
        snap = self.snapshot
        version = snap.version if snap else None  # no model yet: none, as the rule changes say
        exits = []
        if state.cluster is not None:
            exits.append((SegmentKind.cluster, SegmentRef(id=state.cluster, label=snap.label(state.cluster) if snap else state.cluster)))
        labels = {d.id: d.label for d in self.rules.definitions.segment} if self.rules else {}
        exits.extend((SegmentKind.rule, SegmentRef(id=rid, label=labels.get(rid, rid))) for rid in state.rules)
        records = []
        for kind, ref in exits:
            records.append(SegmentChange(
                change_id=next_change_id(state),
                customer_id=state.customer_id, kind=kind, previous_segment=ref, segment=None,
                changed_at=datetime.fromtimestamp(now, timezone.utc), model_version=version,
                definition_version=self.rules.version if self.rules and kind is SegmentKind.rule else None,
                reason=Reason(code=ReasonCode.erased, details={}), value=None,
            ))
        if state.cluster is not None:
            self.segmenter.counters.remove(state.cluster)
        for rid in state.rules:
            self.rule_sizes.remove(rid)
        self.values.forget(state.customer_id)
        self.segmenter.sample.forget(state.customer_id)
        return records

    def train(self, now: float) -> ModelSnapshot | None:
        """Refit BTYD and train a candidate model as of ``now``; the new snapshot, or None when the
        candidate was not adopted (then the model and the BTYD parameters in force stay)."""
        self._events_since_train = 0
        self.values.refit(now)
        snap = self.segmenter.train(now, self.values.valuation, self.config.value)
        if self.segmenter.valuation is not None:
            self.values.valuation = self.segmenter.valuation
        return snap

    def profile(self, state: CustomerState, as_of: float) -> dict:
        doc = build_profile(state, as_of, self.values.valuation, self.config.value)
        snap = self.snapshot
        if state.cluster is not None and snap is not None:
            doc["segment"] = {"id": state.cluster, "label": snap.label(state.cluster), "model_version": snap.version}
        doc["rule_segments"] = list(state.rules)
        return doc

    def new_kpis(self) -> SegmentKPIs:
        """An empty KPI accumulator for this engine's segments (window: ``recent_spend_days``): a
        rule segment is defined by the fields its clauses read, a cluster segment by
        :data:`CLUSTER_DEFINING_FIELDS`."""
        defining: dict[str | tuple[str, str], tuple[str, ...]] = {"cluster": self.cluster_defining_fields}
        for segment in self.rules.segments if self.rules is not None else ():
            defining[("rule", segment.id)] = tuple(sorted({c.field for c in segment.clauses}))
        return SegmentKPIs(self.config.value.recent_spend_days, defining)

    def segment_labels(self) -> dict[str, dict[str, str]]:
        """Each segment's label by kind and id: the model's clusters and the rules file's segments."""
        snap, rules = self.snapshot, self.rules
        return {"cluster": {sid: snap.label(sid) for sid in snap.segment_ids} if snap is not None else {},
                "rule": {d.id: d.label for d in rules.definitions.segment} if rules is not None else {}}

    def segment_keys(self) -> list[tuple[str, str]]:
        """Every segment in force, as ``(kind, segment_id)``: the model's clusters and the rules'."""
        snap = self.snapshot
        clusters = [("cluster", sid) for sid in snap.segment_ids] if snap is not None else []
        return clusters + [("rule", rid) for rid in (self.rules.ids if self.rules is not None else ())]

    @property
    def kpi_fields(self) -> tuple[str, ...]:
        """The profile fields :meth:`kpi_rows` must give :meth:`new_kpis`' accumulators."""
        rule_fields = self.rules.fields if self.rules is not None else ()
        return tuple(dict.fromkeys((*KPI_FIELDS, *self.cluster_defining_fields, *rule_fields)))

    @property
    def cluster_defining_fields(self) -> tuple[str, ...]:
        """:data:`CLUSTER_DEFINING_FIELDS`, then the configured trait features, each named after its
        trait: a member whose trait is unknown is not measured on it (the profile's ``age``,
        ``income_band``...). From the configuration, not the model in force: the accumulators of one
        sweep pass (and of the workers of a group, configured alike) must agree to merge."""
        return CLUSTER_DEFINING_FIELDS + cluster_defining_fields(self.config.segmentation.trait_features)

    def kpi_rows(self, states: Sequence[CustomerState], nows: Sequence[float],
                 fields: Iterable[str]) -> Iterator[tuple[list[tuple[str, str]], dict[str, Any], np.ndarray | None]]:
        """What :class:`models.kpis.SegmentKPIs` is fed for each customer: its segments
        (``(kind, segment_id)``), the exact values of ``fields`` as of ``nows[i]`` (as rules read
        them) and its standardised features under the model in force (None without one), the
        features computed for the whole batch at once."""
        fields = tuple(fields)
        valuation, value_config = self.values.valuation, self.config.value
        snap = self.snapshot
        z = None
        if snap is not None and len(snap.centroids) and states:
            traits = self._vector_traits()
            matrix = matrix_at([basis_of(s, value_config, traits=bool(traits)) for s in states],
                               np.asarray(nows, dtype=float), valuation, value_config, traits)
            z = snap.standardise(matrix)
        for i, (state, now) in enumerate(zip(states, nows)):
            memberships = [("cluster", state.cluster)] if state.cluster is not None else []
            memberships += [("rule", rule) for rule in state.rules]
            yield (memberships, decision_values(state, now, valuation, value_config, fields),
                   None if z is None else z[i])

    # ---- change records ------------------------------------------------------------------------

    def value_summary(self, state: CustomerState, now: float) -> ValueSummary:
        val = self.values.valuation
        bought = bool(state.purchase_days)
        x, t_x = state.frequency, state.recency_days
        T = max(utc_day(now) - state.purchase_days[0], 0) if bought else 0
        clv = val.clv(x, t_x, T, state.monetary_value) if bought else None
        p_alive = val.prob_alive(x, t_x, T) if bought else None
        return ValueSummary(
            purchase_count=state.purchase_count, total_spend=round(state.total_spend, 2), frequency=x,
            recency_days=round((now - state.last_purchase_ts) / 86400, 2) if state.last_purchase_ts else None,
            monetary_value=round(state.monetary_value, 2),
            p_alive=round(p_alive, 4) if p_alive is not None else None,
            clv=round(clv, 2) if clv is not None else None, nps=state.nps_latest,
        )

    def _cluster_record(self, state: CustomerState, change: ClusterChange, now: float) -> SegmentChange:
        move = change.move
        details = {
            "distance_to_new": round(move.new_distance, 4),
            "distance_to_previous": round(move.previous_distance, 4) if move.previous_distance is not None else None,
            "distances": change.distances,
            "drivers": change.drivers,
            "margin": self.config.segmentation.margin,
            "dwell_days": self.config.segmentation.dwell_days,
        }
        if move.flap:
            details["flap"] = True
        return SegmentChange(
            change_id=next_change_id(state),
            customer_id=state.customer_id, kind=SegmentKind.cluster,
            previous_segment=SegmentRef(id=move.previous, label=change.previous_label or move.previous)
            if move.previous else None,
            segment=SegmentRef(id=move.new, label=change.label),
            changed_at=datetime.fromtimestamp(now, timezone.utc), model_version=change.model_version,
            definition_version=self.rules.version if self.rules else None, reason=Reason(code=ReasonCode(move.reason), details=details),
            value=self.value_summary(state, now),
        )


#: Profile fields the KPIs read (models.kpis), besides those that define each segment.
KPI_FIELDS: tuple[str, ...] = (
    "clv", "recent_spend", "bought_in_period", "bought_in_previous_period", "nps", "cost_to_serve",
    "acquisition_cost", "consent_email", "consent_sms", "consent_push", "reachable",
    "country", "age", "income_band", "company_size", "household_size",
)
#: What a cluster segment's members must have known to be measured (the scorecard's measurable):
#: the figures behind every feature but satisfaction. Satisfaction is the passive 7 for a customer
#: never surveyed (models.features), by design; how many members answered is the KPIs' own
#: ``nps_answered_share``, and counting it here would fail every cluster of a business that
#: surveys a tenth of its customers.
CLUSTER_DEFINING_FIELDS: tuple[str, ...] = cluster_defining_fields(f for f in FEATURES if f != "satisfaction")


def next_change_id(state: CustomerState) -> str:
    """The id of the customer's next change (deterministic: a replayed event re-emits the same id)."""
    state.change_seq += 1
    return SegmentChange.make_id(state.customer_id, state.change_seq, state.incarnation)


def _membership(state: CustomerState) -> tuple:
    """What an evaluation decides about a customer: its cluster, a candidate in dwell, its rules."""
    return state.cluster, state.cluster_since, state.candidate, state.candidate_since, tuple(state.rules)
