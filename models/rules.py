"""Declarative rule segments: marketer-written conditions on the customer profile.

A rule segment is a named list of clauses on profile fields, combined with ``all`` (every clause
holds) or ``any`` (at least one does). A clause compares one field with a literal or with a
*percentile of that same field over the population* (``"p80"``), so "top 20% by CLV" keeps meaning
the same thing while the population changes. Unlike the cluster segment, a customer can be in any
number of rule segments at once.

Definitions are read from TOML, validated strictly once (pydantic), then compiled into small
callables, because :meth:`RuleSet.evaluate` runs on every event.

>>> rules = RuleSet.from_toml('''
... [[segment]]
... id = "vip_at_risk"
... label = "VIP at risk"
... all = [
...   { field = "clv", op = ">", value = "p80" },
...   { field = "days_since_last_purchase", op = ">", value = 60 },
... ]
... ''')
>>> sorted(rules.percentiles_needed())
[('clv', 80.0)]
>>> population = PopulationQuantiles.for_rules(rules, min_samples=10)
>>> for clv in range(1, 101):  # one profile per customer
...     population.learn({"clv": float(clv)})
>>> before = rules.evaluate({"clv": 900.0, "days_since_last_purchase": 12.0}, population)
>>> after = rules.evaluate({"clv": 900.0, "days_since_last_purchase": 75.0}, population)
>>> [c.text for c in after.segments[0].clauses]
['clv > p80 (80.00)', 'days_since_last_purchase > 60']
>>> for change in diff_memberships(before.memberships, after, before.clause_truths()):
...     print(change.segment_id, change.entered, change.turned)
vip_at_risk True ('days_since_last_purchase > 60',)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import operator
import os
import pickle
import re
import tomllib
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import river
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from river import stats

from schemas.errors import ConfigurationError, ContractError

__all__ = [
    "ClauseDef",
    "ClauseResult",
    "PopulationQuantiles",
    "RuleChange",
    "RuleDefinitionError",
    "RuleDefinitions",
    "RuleEvaluation",
    "RuleSet",
    "RuleSizes",
    "SegmentDef",
    "SegmentResult",
    "diff_memberships",
    "percentile_key",
    "relaxed_percentile",
]

Op = Literal[">", ">=", "<", "<=", "==", "!=", "in", "not in"]
ORDERING_OPS = frozenset({">", ">=", "<", "<="})
MEMBERSHIP_OPS = frozenset({"in", "not in"})

# "p80", "p99.5": the integer part is 1..99 and decimals are allowed, so p99.9 works but p100 and
# p0.5 do not (neither is a useful threshold and P² estimates of such extremes are unstable).
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
# Strings that look like a percentile reference are refused as literals of ==, != and in: a
# marketer writing `clv == "p80"` means a threshold, and a silent string comparison never matches.
_LOOKS_LIKE_PERCENTILE = re.compile(r"^p\d")


class RuleDefinitionError(ConfigurationError):
    """Rule definitions that cannot be used; ``problems`` has one line per problem.

    Each problem names where it is, e.g. ``segment[1] 'advocates', all[0]: unknown op '=>' ...``
    (indices are zero-based, in file order).
    """

    def __init__(self, source: str, problems: Sequence[str]):
        self.source = source
        self.problems = list(problems)
        head = f"invalid rule definitions in {source}"
        super().__init__(head + ": " + problems[0] if len(problems) == 1 else
                         head + ":\n  " + "\n  ".join(problems))


def percentile_key(field: str, pct: float) -> str:
    """How thresholds are keyed: ``field:pNN`` with the shortest spelling of the percentile.

    >>> percentile_key("clv", 80.0), percentile_key("clv", 99.5)
    ('clv:p80', 'clv:p99.5')
    """
    return f"{field}:p{pct:g}"


def parse_percentile(value: str) -> float | None:
    """The percentile of a ``"pNN"`` reference, or None when it is not a valid one.

    >>> parse_percentile("p80"), parse_percentile("p99.5"), parse_percentile("p100")
    (80.0, 99.5, None)
    """
    m = _PERCENTILE.match(value)
    if m is None:
        return None
    pct = float(m.group(1))
    return pct if 1.0 <= pct < 100.0 else None


# --------------------------------------------------------------------------------------------
# Definitions (validated once, at load time)


class _Def(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _check_scalar(x: Any) -> None:
    # TOML also has dates, times and tables: none of them is a profile value.
    if isinstance(x, float) and not math.isfinite(x):
        raise ConfigurationError(f"value {x!r} is not a finite number")
    if not isinstance(x, (str, bool, int, float)):
        raise ConfigurationError(f"value {x!r} must be a number, a string or a boolean")


class ClauseDef(_Def):
    """One condition ``<field> <op> <value>`` as written in the file.

    >>> ClauseDef(field="clv", op=">", value="p80.0").value  # percentiles are canonicalised
    'p80'
    >>> ClauseDef(field="nps_category", op="in", value=["promoter", "passive"]).op
    'in'
    """

    field: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="A profile key.")
    op: Op
    value: Any = Field(description="A number, string, boolean, a list for in / not in, or 'pNN'.")

    @model_validator(mode="after")
    def _check_value(self) -> ClauseDef:
        op, value = self.op, self.value
        if op in MEMBERSHIP_OPS:
            if not isinstance(value, list) or not value:
                raise ConfigurationError(f"op {op!r} needs a non-empty list of values, got {value!r}")
            for x in value:
                _check_scalar(x)
                if isinstance(x, str) and _LOOKS_LIKE_PERCENTILE.match(x):
                    raise ConfigurationError(f"percentile {x!r} only works with >, >=, < and <=, not inside a list")
            return self
        if isinstance(value, list):
            raise ConfigurationError(f"op {op!r} needs a single value, got the list {value!r} (use 'in' for lists)")
        _check_scalar(value)
        if isinstance(value, str) and op in ORDERING_OPS:
            pct = parse_percentile(value)
            if pct is None and not _LOOKS_LIKE_PERCENTILE.match(value):
                raise ConfigurationError(f"op {op!r} needs a number or a percentile 'pNN', got {value!r}")
            if pct is None:
                raise ConfigurationError(f"bad percentile {value!r}: expected 'pNN' with NN from 1 to 99, "
                                 f"decimals allowed (e.g. 'p80', 'p99.5')")
            self.value = f"p{pct:g}"
        elif isinstance(value, str) and _LOOKS_LIKE_PERCENTILE.match(value):
            raise ConfigurationError(f"percentile {value!r} only works with >, >=, < and <=, not with {op!r}")
        elif op in ORDERING_OPS and isinstance(value, bool):
            raise ConfigurationError(f"op {op!r} needs a number or a percentile 'pNN', got {value!r}")
        return self

    @property
    def percentile(self) -> float | None:
        """The percentile referenced by the value, if any."""
        if self.op in ORDERING_OPS and isinstance(self.value, str):
            return parse_percentile(self.value)
        return None


class SegmentDef(_Def):
    """One ``[[segment]]``: an id, a label and exactly one of ``all`` / ``any``.

    >>> seg = SegmentDef.model_validate({"id": "new_customers", "label": "New customers",
    ...                                  "all": [{"field": "T", "op": "<=", "value": 30}]})
    >>> seg.mode, len(seg.clauses)
    ('all', 1)
    """

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    label: str = Field(min_length=1, max_length=200)
    description: str = Field("", max_length=2000)
    all_: list[ClauseDef] | None = Field(None, alias="all")
    any_: list[ClauseDef] | None = Field(None, alias="any")

    @model_validator(mode="after")
    def _one_clause_list(self) -> SegmentDef:
        if (self.all_ is None) == (self.any_ is None):
            both = "both" if self.all_ is not None else "neither"
            raise ConfigurationError(f"give exactly one of 'all' or 'any' (this segment has {both})")
        if not self.clauses:
            raise ConfigurationError(f"'{self.mode}' is empty: give at least one clause")
        return self

    @property
    def mode(self) -> Literal["all", "any"]:
        return "all" if self.all_ is not None else "any"

    @property
    def clauses(self) -> list[ClauseDef]:
        return self.all_ if self.all_ is not None else (self.any_ or [])


class RuleDefinitions(_Def):
    """A whole definitions file: the ``[[segment]]`` array of tables, ids unique."""

    segment: list[SegmentDef] = Field(default_factory=list)

    @field_validator("segment")
    @classmethod
    def _unique_ids(cls, segments: list[SegmentDef]) -> list[SegmentDef]:
        seen: dict[str, int] = {}
        for i, seg in enumerate(segments):
            if seg.id in seen:
                raise ConfigurationError(f"duplicate segment id {seg.id!r} (segment[{seen[seg.id]}] and segment[{i}])")
            seen[seg.id] = i
        return segments

    def canonical_json(self) -> str:
        """Key order, whitespace and comments of the file do not show here, so neither in the version."""
        return json.dumps(self.model_dump(mode="json", by_alias=True, exclude_none=True),
                          sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _where(loc: tuple[Any, ...], data: Any) -> str:
    """``('segment', 1, 'all', 0, 'op')`` -> ``segment[1] 'advocates', all[0].op``."""
    if len(loc) < 2 or loc[0] != "segment" or not isinstance(loc[1], int):
        return ".".join(map(str, loc)) or "file"
    i, rest = loc[1], loc[2:]
    raw = data.get("segment") if isinstance(data, Mapping) else None
    seg_id = raw[i].get("id") if isinstance(raw, list) and i < len(raw) and isinstance(raw[i], Mapping) else None
    where = f"segment[{i}]" + (f" {seg_id!r}" if isinstance(seg_id, str) else "")
    if len(rest) >= 2 and rest[0] in ("all", "any") and isinstance(rest[1], int):
        clause = f"{rest[0]}[{rest[1]}]"
        return f"{where}, " + ".".join([clause, *map(str, rest[2:])])
    return where + (", " + ".".join(map(str, rest)) if rest else "")


def _validate(data: Any, source: str) -> RuleDefinitions:
    try:
        return RuleDefinitions.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_url=False):
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "literal_error" and err["loc"][-1:] == ("op",):
                msg = f"unknown op {err['input']!r}; {msg[0].lower()}{msg[1:]}"
            problems.append(f"{_where(err['loc'], data)}: {msg}")
        raise RuleDefinitionError(source, problems) from None


# --------------------------------------------------------------------------------------------
# Results


class ClauseResult(NamedTuple):
    """How one clause came out for one profile (a tuple, because evaluate makes many of them).

    ``threshold`` is what the field was compared with: the literal, the list for ``in``, or the
    current population value of a percentile (None while it is not known yet).

    >>> rules = RuleSet.from_toml('[[segment]]\\nid = "vip"\\nlabel = "VIP"\\n'
    ...                           'all = [{field = "clv", op = ">", value = "p80"}]')
    >>> rules.evaluate({"clv": 500.0}, {"clv:p80": 412.3}).segments[0].clauses[0].to_dict()
    {'text': 'clv > p80 (412.30)', 'field': 'clv', 'op': '>', 'threshold': 412.3, 'actual': 500.0, 'holds': True}
    """

    text: str  # e.g. "clv > p80 (412.30)": what a marketer reads
    field: str
    op: str
    threshold: Any
    actual: Any
    holds: bool

    def to_dict(self) -> dict[str, Any]:
        d = self._asdict()
        if isinstance(d["threshold"], tuple):
            d["threshold"] = list(d["threshold"])
        return d


class SegmentResult(NamedTuple):
    """One segment's outcome: ``matched`` combines the clause results with all / any.

    >>> rules = RuleSet.from_toml('[[segment]]\\nid = "new"\\nlabel = "New"\\n'
    ...                           'all = [{field = "T", op = "<=", value = 30}]')
    >>> rules.evaluate({"T": 3}).segments[0][:3]
    ('new', 'New', True)
    """

    segment_id: str
    label: str
    matched: bool
    clauses: tuple[ClauseResult, ...]


@dataclass(frozen=True, slots=True)
class RuleEvaluation:
    """Every rule segment's outcome for one profile, under one definition version."""

    version: str
    segments: tuple[SegmentResult, ...]
    memberships: frozenset[str]  # ids of the matched segments

    def clause_truths(self) -> dict[str, tuple[bool, ...]]:
        """Per segment, the truth of each clause: keep it to explain the next change.

        >>> rules = RuleSet.from_toml('[[segment]]\\nid = "x"\\nlabel = "X"\\n'
        ...                           'any = [{field = "a", op = ">", value = 1}]')
        >>> rules.evaluate({"a": 2}).clause_truths()
        {'x': (True,)}
        """
        return {s.segment_id: tuple(c.holds for c in s.clauses) for s in self.segments}

    def get(self, segment_id: str) -> SegmentResult | None:
        for s in self.segments:
            if s.segment_id == segment_id:
                return s
        return None


@dataclass(frozen=True, slots=True)
class RuleChange:
    """A customer entered or left one rule segment, and why.

    ``clauses`` are all clause results now; ``turned`` are the texts of the clauses that explain
    the change (see :func:`diff_memberships`). ``to_details()`` is what goes in
    ``SegmentChange.reason.details``.

    >>> rules = RuleSet.from_toml('[[segment]]\\nid = "new"\\nlabel = "New"\\n'
    ...                           'all = [{field = "T", op = "<=", value = 30}]')
    >>> [change] = diff_memberships(frozenset({"new"}), rules.evaluate({"T": 31}))
    >>> change.entered, change.to_details()["turned"]
    (False, ['T <= 30'])
    """

    segment_id: str
    label: str
    entered: bool
    clauses: tuple[ClauseResult, ...]
    turned: tuple[str, ...]
    definition_version: str

    def to_details(self) -> dict[str, Any]:
        return {"turned": list(self.turned), "clauses": [c.to_dict() for c in self.clauses]}


# --------------------------------------------------------------------------------------------
# Population percentiles


class _QuantileUnpickler(pickle.Unpickler):
    """Loads pickled river quantiles and nothing else.

    The state travels between workers, and plain ``pickle.loads`` on a message would run whatever
    it names; this allow-list admits only the two classes a pickled ``stats.Quantile`` contains.
    """

    _ALLOWED = {("river.stats.quantile", "Quantile"), ("river._river_rust.stats", "RsQuantile")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not a river quantile")
        return super().find_class(module, name)


class PopulationQuantiles:
    """Streaming percentiles of profile fields over the customer population.

    The trainer does not use these: its thresholds are exact quantiles of its bounded sample, kept
    until the population moved (:mod:`models.thresholds`), because P² estimates depend on the
    order of the values and made members flap at every training. This class remains for callers
    that must follow an unbounded stream in O(1) memory.

    One ``river.stats.Quantile`` (the P² algorithm: five markers, O(1) memory and time per value)
    per (field, percentile) pair the rule set references. Values that are None, non-numeric or
    not finite are skipped.

    Feed it **one profile per customer sample, not one per event**: the population is customers,
    and learning on every event would weigh each customer by their activity (frequent buyers would
    dominate) and would always see profiles as of an event (``days_since_last_purchase`` near 0).
    A periodic sweep over the customer table, or each customer's profile at most once per period,
    gives the intended distribution.

    Parameters
    ----------
    needed
        ``(field, percentile)`` pairs, e.g. ``RuleSet.percentiles_needed()``.
    min_samples
        ``value`` is None until a field has seen this many values: early P² estimates are noise.

    Examples
    --------
    >>> population = PopulationQuantiles([("clv", 50.0)], min_samples=5)
    >>> for x in [1.0, None, 2.0, 3.0, 4.0]:
    ...     population.learn({"clv": x})
    >>> population.value("clv", 50) is None  # 4 values so far
    True
    >>> population.learn({"clv": 5.0})
    >>> population.value("clv", 50), population.thresholds()
    (3.0, {'clv:p50': 3.0})
    """

    def __init__(self, needed: Iterable[tuple[str, float]], min_samples: int = 50):
        if min_samples < 1:
            raise ConfigurationError("min_samples must be at least 1")
        self.min_samples = min_samples
        self._quantiles: dict[str, stats.Quantile] = {}
        self._by_field: dict[str, list[stats.Quantile]] = {}
        self.counts: dict[str, int] = {}
        for field, pct in sorted(set((f, float(p)) for f, p in needed)):
            if not 0.0 < pct < 100.0:
                raise ConfigurationError(f"percentile {pct} of {field!r} is not between 0 and 100")
            q = stats.Quantile(pct / 100.0)
            self._quantiles[percentile_key(field, pct)] = q
            self._by_field.setdefault(field, []).append(q)
            self.counts[field] = 0

    @classmethod
    def for_rules(cls, rules: RuleSet, min_samples: int = 50) -> PopulationQuantiles:
        return cls(rules.percentiles_needed(), min_samples)

    def learn(self, profile: Mapping[str, Any]) -> None:
        """Update with one customer's profile (see the class note on sampling)."""
        for field, quantiles in self._by_field.items():
            x = profile.get(field)
            # bool is an int in Python, but True is not a useful sample of a numeric field
            if x is None or isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                continue
            self.counts[field] += 1
            for q in quantiles:
                q.update(float(x))

    def value(self, field: str, pct: float) -> float | None:
        """The current estimate, or None while fewer than ``min_samples`` values were seen."""
        q = self._quantiles.get(percentile_key(field, float(pct)))
        if q is None or self.counts[field] < self.min_samples:
            return None
        return q.get()

    def thresholds(self) -> dict[str, float]:
        """A frozen snapshot of the known thresholds, keyed like ``"clv:p80"``.

        This small dict is what to broadcast to the workers: ``RuleSet.evaluate`` takes it as is.
        """
        ready = {f for f, n in self.counts.items() if n >= self.min_samples}
        return {key: q.get() for key, q in self._quantiles.items() if key.rpartition(":")[0] in ready}

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: the thresholds snapshot plus the estimators' state to resume learning.

        ``estimators`` is river's own pickle of each ``stats.Quantile`` (base64): river gives no
        other way to read or set the P² markers. It is tied to the river version.
        """
        return {
            "min_samples": self.min_samples,
            "counts": dict(self.counts),
            "thresholds": self.thresholds(),
            "river": river.__version__,
            "estimators": {k: base64.b64encode(pickle.dumps(q, protocol=4)).decode("ascii")
                           for k, q in self._quantiles.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PopulationQuantiles:
        """The inverse of ``to_dict``; only river quantiles are unpickled."""
        needed = []
        for key in data["estimators"]:
            field, _, ref = key.rpartition(":")
            pct = parse_percentile(ref) if field else None
            if pct is None:
                raise ContractError(f"bad estimator key {key!r}")
            needed.append((field, pct))
        out = cls(needed, int(data["min_samples"]))
        for key, blob in data["estimators"].items():
            try:
                q = _QuantileUnpickler(io.BytesIO(base64.b64decode(blob, validate=True))).load()
            except Exception as exc:  # a corrupt blob or another river version's layout
                raise ContractError(f"cannot restore estimator {key!r} (saved with river "
                                 f"{data.get('river')}, running {river.__version__}): {exc}") from exc
            if not isinstance(q, stats.Quantile):
                raise ContractError(f"estimator {key!r} is not a river Quantile")
            field = key.rpartition(":")[0]
            out._by_field[field] = [q if x is out._quantiles[key] else x for x in out._by_field[field]]
            out._quantiles[key] = q
        for field, n in data["counts"].items():
            if field in out.counts:
                out.counts[field] = int(n)
        return out


# --------------------------------------------------------------------------------------------
# Compiled rules (the per-event hot path: no pydantic, no parsing)

_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    "in": lambda actual, values: actual in values,
    "not in": lambda actual, values: actual not in values,
}


_new_tuple = tuple.__new__


def _literal_text(value: Any) -> str:
    # JSON spelling, as in the file: "promoter" in quotes, true / false, [..] for lists
    return json.dumps(value, ensure_ascii=False)


def _number_text(x: float) -> str:
    return f"{x:.2f}" if abs(x) >= 1 else f"{x:.4g}"


def relaxed_percentile(pct: float, op: str, band: float) -> float:
    """The percentile a member is held to: ``pct`` moved ``band`` points in the clause's favour.

    ``clv > p80`` with a band of 5 holds a member while ``clv > p75``; ``clv < p20`` while
    ``clv < p25``. Kept within [0.1, 99.9] (a percentile of 0 or 100 is the sample's extreme).

    >>> relaxed_percentile(80.0, ">", 5.0), relaxed_percentile(20.0, "<=", 5.0), relaxed_percentile(3.0, ">", 5.0)
    (75.0, 25.0, 0.1)
    """
    if band <= 0:
        return pct
    relaxed = pct - band if op in (">", ">=") else pct + band
    return min(max(relaxed, 0.1), 99.9)


class _Clause:
    """A clause compiled to a field lookup, an operator and a bound operand."""

    __slots__ = ("field", "op", "test", "operand", "shown", "key", "pct", "base", "text", "_texts",
                 "_stay_keys", "_stay_texts", "_lower_is_looser")

    def __init__(self, d: ClauseDef):
        self.field, self.op, self.test = d.field, d.op, _TESTS[d.op]
        self.base = f"{d.field} {d.op} "
        pct = d.percentile
        self.pct = pct
        # For > and >= a lower threshold is easier to meet; for < and <= a higher one.
        self._lower_is_looser = d.op in (">", ">=")
        self._stay_keys: dict[float, tuple[str, str]] = {}
        self._stay_texts: dict[float, str] = {}
        if pct is not None:
            self.key: str | None = percentile_key(d.field, pct)
            self.base += d.value
            self.operand = self.shown = None
            self._texts: dict[float | None, str] = {None: f"{self.base} (threshold not known yet)"}
        else:
            self.key = None
            if d.op in MEMBERSHIP_OPS:
                # a frozenset for O(1) membership; tuple (file order) is what results show
                self.operand, self.shown = frozenset(d.value), tuple(d.value)
            else:
                self.operand = self.shown = d.value
            self.base += _literal_text(d.value)
        self.text = self.base

    def _text_for(self, threshold: float) -> str:
        # Thresholds change rarely (a new snapshot now and then), so each text is formatted once
        # rather than per event (that was a third of the cost). The cache only ever maps a value
        # to the same text, so sharing it between threads or snapshots is harmless.
        if len(self._texts) > 64:
            self._texts = {None: self._texts[None]}
        text = self._texts[threshold] = f"{self.base} ({_number_text(threshold)})"
        return text

    def stay_key(self, band: float) -> tuple[str, str] | None:
        """The relaxed threshold's key and its ``"> p75"`` spelling, for a percentile clause."""
        if self.pct is None or band <= 0:
            return None
        found = self._stay_keys.get(band)
        if found is None:
            relaxed = relaxed_percentile(self.pct, self.op, band)
            found = self._stay_keys[band] = (percentile_key(self.field, relaxed), f"{self.op} p{relaxed:g}")
        return found

    def _held(self, thresholds: Mapping[str, float], entry: float | None, band: float) -> tuple[float | None, str]:
        """A member's threshold (the relaxed one, never stricter than the entry) and its text."""
        stay = self._stay_keys.get(band) or self.stay_key(band)
        relaxed = thresholds.get(stay[0]) if stay is not None else None
        if relaxed is None or entry is None:  # no relaxed threshold (e.g. an older snapshot): exact
            return entry, self._texts.get(entry) or self._text_for(entry)  # type: ignore[arg-type]
        looser = min(relaxed, entry) if self._lower_is_looser else max(relaxed, entry)
        text = self._stay_texts.get(looser)
        if text is None:
            if len(self._stay_texts) > 64:
                self._stay_texts = {}
            text = self._stay_texts[looser] = f"{self.base} (member while {stay[1]}: {_number_text(looser)})"  # type: ignore[index]
        return looser, text

    def __call__(self, profile: Mapping[str, Any], thresholds: Mapping[str, float],
                 member: bool = False, band: float = 0.0) -> ClauseResult:
        actual = profile.get(self.field)
        if self.key is None:
            operand, shown, text = self.operand, self.shown, self.text
        else:
            operand = thresholds.get(self.key)
            if member and band > 0:
                operand, text = self._held(thresholds, operand, band)
            else:
                text = self._texts.get(operand) or self._text_for(operand)  # type: ignore[arg-type]
            shown = operand
        holds = False
        if actual is not None and operand is not None:
            try:
                holds = bool(self.test(actual, operand))
            except TypeError:  # e.g. a string field compared with a number: false, not a crash
                pass
        # tuple.__new__ skips NamedTuple's Python-level __new__, which costs as much again
        return _new_tuple(ClauseResult, (text, self.field, self.op, shown, actual, holds))


class _Segment:
    __slots__ = ("id", "label", "description", "combine", "clauses")

    def __init__(self, d: SegmentDef):
        self.id, self.label, self.description = d.id, d.label, d.description
        self.combine = all if d.mode == "all" else any
        self.clauses = tuple(_Clause(c) for c in d.clauses)


class RuleSet:
    """Validated, compiled rule segments with a stable definition version.

    Parameters
    ----------
    definitions
        Parsed definitions; usually built by ``from_toml`` / ``from_file``.

    Examples
    --------
    >>> rules = RuleSet.from_toml('''
    ... [[segment]]
    ... id = "advocates"
    ... label = "Advocates"
    ... all = [{ field = "nps_category", op = "==", value = "promoter" },
    ...        { field = "engagement", op = ">=", value = 5 }]
    ... ''')
    >>> rules.ids, len(rules.version)
    (('advocates',), 12)
    >>> ev = rules.evaluate({"nps_category": "promoter", "engagement": 7.5})
    >>> ev.memberships
    frozenset({'advocates'})
    >>> rules.evaluate({"nps_category": "promoter", "engagement": None}).memberships
    frozenset()
    """

    def __init__(self, definitions: RuleDefinitions):
        self.definitions = definitions
        # sha256 of the canonical JSON: stable across formatting, comments and key order
        self.version = hashlib.sha256(definitions.canonical_json().encode("utf-8")).hexdigest()[:12]
        self._segments = tuple(_Segment(s) for s in definitions.segment)

    @classmethod
    def from_toml(cls, text_or_path: str | os.PathLike[str], *, fields: Collection[str] | None = None) -> RuleSet:
        """Parse TOML text (a ``str``) or the file at a path (a ``pathlib.Path`` / ``os.PathLike``).

        ``fields``, if given, are the allowed profile keys: a clause on any other field is an
        error (catches typos that would otherwise never match).
        """
        if isinstance(text_or_path, os.PathLike):
            return cls.from_file(text_or_path, fields=fields)
        return cls._load(text_or_path, "<string>", fields)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, fields: Collection[str] | None = None) -> RuleSet:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleDefinitionError(str(path), [f"cannot read the file: {getattr(exc, 'strerror', None) or exc}"]) from None
        return cls._load(text, str(path), fields)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, fields: Collection[str] | None = None,
                  source: str = "<dict>") -> RuleSet:
        """From already parsed data shaped like the TOML (``{"segment": [...]}``)."""
        definitions = _validate(data, source)
        if fields is not None:
            allowed = frozenset(fields)
            problems = [f"{_where(('segment', i, s.mode, j, 'field'), data)}: unknown profile field {c.field!r}"
                        for i, s in enumerate(definitions.segment)
                        for j, c in enumerate(s.clauses) if c.field not in allowed]
            if problems:
                raise RuleDefinitionError(source, problems)
        return cls(definitions)

    @classmethod
    def _load(cls, text: str, source: str, fields: Collection[str] | None) -> RuleSet:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleDefinitionError(source, [f"not valid TOML: {exc}"]) from None
        return cls.from_dict(data, fields=fields, source=source)

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(s.id for s in self._segments)

    @property
    def segments(self) -> tuple[SegmentDef, ...]:
        return tuple(self.definitions.segment)

    def __len__(self) -> int:
        return len(self._segments)

    def __repr__(self) -> str:
        return f"RuleSet(version={self.version!r}, segments={list(self.ids)})"

    def percentiles_needed(self, band: float = 0.0) -> frozenset[tuple[str, float]]:
        """The ``(field, percentile)`` pairs referenced anywhere, and with ``band`` > 0 also the
        relaxed percentiles members are held to (:func:`relaxed_percentile`).

        >>> rules = RuleSet.from_toml('[[segment]]\\nid = "vip"\\nlabel = "VIP"\\n'
        ...                           'all = [{field = "clv", op = ">", value = "p80"}]')
        >>> sorted(rules.percentiles_needed()), sorted(rules.percentiles_needed(band=5))
        ([('clv', 80.0)], [('clv', 75.0), ('clv', 80.0)])
        """
        entry = {(c.field, c.percentile) for s in self.definitions.segment
                 for c in s.clauses if c.percentile is not None}
        relaxed = {(c.field, relaxed_percentile(c.percentile, c.op, band)) for s in self.definitions.segment
                   for c in s.clauses if c.percentile is not None and band > 0}
        return frozenset(entry | relaxed)

    def pending_thresholds(self, thresholds: Mapping[str, float] | None,
                           band: float = 0.0) -> list[str]:
        """The threshold keys the rules need that ``thresholds`` lacks, sorted.

        A clause on a missing entry threshold is false for everyone (its text says the threshold
        is not known yet); a missing relaxed one only means members are held to the entry one.

        >>> rules = RuleSet.from_toml('[[segment]]\\nid = "vip"\\nlabel = "VIP"\\n'
        ...                           'all = [{field = "clv", op = ">", value = "p80"}]')
        >>> rules.pending_thresholds({}, band=5), rules.pending_thresholds({"clv:p80": 3.0, "clv:p75": 2.0}, 5)
        (['clv:p75', 'clv:p80'], [])
        """
        have = thresholds or {}
        return sorted(k for k in (percentile_key(f, p) for f, p in self.percentiles_needed(band)) if k not in have)

    def evaluate(self, profile: Mapping[str, Any],
                 thresholds: PopulationQuantiles | Mapping[str, float] | None = None,
                 members: Collection[str] = (), band: float = 0.0) -> RuleEvaluation:
        """Every segment's outcome for ``profile``.

        ``thresholds`` are the population percentiles: a live ``PopulationQuantiles`` or a
        snapshot's ``rule_thresholds``. A clause whose field is None, whose percentile is not
        known yet, or whose types do not compare, is false.

        Hysteresis: for a segment in ``members`` (the customer's current rule segments), each
        percentile clause is held to the percentile relaxed by ``band`` points (``clv > p80``
        keeps a member while ``clv > p75``) when ``thresholds`` has that relaxed value; literal
        clauses stay exact. A non-member always needs the entry thresholds.

        >>> rules = RuleSet.from_toml('[[segment]]\\nid = "vip"\\nlabel = "VIP"\\n'
        ...                           'all = [{field = "clv", op = ">", value = "p80"}]')
        >>> th = {"clv:p80": 100.0, "clv:p75": 90.0}
        >>> rules.evaluate({"clv": 95.0}, th, band=5).memberships           # not in: needs p80
        frozenset()
        >>> held = rules.evaluate({"clv": 95.0}, th, members={"vip"}, band=5)  # in: stays above p75
        >>> held.memberships, held.segments[0].clauses[0].text
        (frozenset({'vip'}), 'clv > p80 (member while > p75: 90.00)')
        >>> rules.evaluate({"clv": 95.0}, {}).segments[0].clauses[0].text
        'clv > p80 (threshold not known yet)'
        """
        th = thresholds.thresholds() if isinstance(thresholds, PopulationQuantiles) else (thresholds or {})
        results = []
        in_segments = []
        for seg in self._segments:
            member = seg.id in members
            clauses = tuple([clause(profile, th, member, band) for clause in seg.clauses])
            matched = seg.combine([c.holds for c in clauses])
            if matched:
                in_segments.append(seg.id)
            results.append(SegmentResult(seg.id, seg.label, matched, clauses))
        return RuleEvaluation(self.version, tuple(results), frozenset(in_segments))


class RuleSizes:
    """Exact member counts of the rule segments, kept where memberships are decided.

    The engine calls :meth:`record` with every change it emits, so the counts are exact for the
    customers this engine evaluates (all of them in a replay). ``entered`` / ``left`` count the
    flows since they were last read with :meth:`take_flows`.

    >>> rules = RuleSet.from_toml('[[segment]]\\nid = "new"\\nlabel = "New"\\n'
    ...                           'all = [{field = "T", op = "<=", value = 30}]')
    >>> sizes = RuleSizes()
    >>> sizes.record(diff_memberships(frozenset(), rules.evaluate({"T": 3})))
    >>> sizes.record(diff_memberships(frozenset(), rules.evaluate({"T": 4})))
    >>> sizes.record(diff_memberships(frozenset({"new"}), rules.evaluate({"T": 40})))
    >>> sizes.size("new"), sizes.entered["new"], sizes.left["new"]
    (1, 2, 1)
    """

    def __init__(self) -> None:
        self.sizes: Counter[str] = Counter()
        self.entered: Counter[str] = Counter()
        self.left: Counter[str] = Counter()

    def record(self, changes: Iterable[RuleChange]) -> None:
        for change in changes:
            self.add(change.segment_id) if change.entered else self.remove(change.segment_id)

    def add(self, segment_id: str) -> None:
        self.sizes[segment_id] += 1
        self.entered[segment_id] += 1

    def remove(self, segment_id: str) -> None:
        self.sizes[segment_id] -= 1
        self.left[segment_id] += 1

    def size(self, segment_id: str) -> int:
        return max(self.sizes.get(segment_id, 0), 0)

    def take_flows(self) -> tuple[dict[str, int], dict[str, int]]:
        """Entries and exits per segment since the last call, then reset."""
        flows = dict(self.entered), dict(self.left)
        self.entered.clear()
        self.left.clear()
        return flows


def diff_memberships(previous: frozenset[str], evaluation: RuleEvaluation,
                     previous_clauses: Mapping[str, Sequence[bool]] | None = None) -> list[RuleChange]:
    """The rule segments a customer entered or left, in definition order.

    ``turned`` explains each change. With ``previous_clauses`` (the previous evaluation's
    ``clause_truths()``, same definition version) it is the clauses whose truth changed: those
    that turned true on an entry, false on an exit. Without it (or if a segment's clause count
    differs) it falls back to the clauses now true on an entry and now false on an exit.

    A segment in ``previous`` that no longer exists in the definitions is reported as an exit
    with no clauses (its label is then its id).

    Examples
    --------
    >>> rules = RuleSet.from_toml('''
    ... [[segment]]
    ... id = "lapsing"
    ... label = "Lapsing"
    ... any = [{ field = "p_alive", op = "<", value = 0.3 },
    ...        { field = "days_since_last_purchase", op = ">", value = 90 }]
    ... ''')
    >>> old = rules.evaluate({"p_alive": 0.2, "days_since_last_purchase": 120})
    >>> new = rules.evaluate({"p_alive": 0.9, "days_since_last_purchase": 0.5})
    >>> [(c.entered, c.turned) for c in diff_memberships(old.memberships, new, old.clause_truths())]
    [(False, ('p_alive < 0.3', 'days_since_last_purchase > 90'))]
    >>> diff_memberships(new.memberships, new)
    []
    """
    changes = []
    for seg in evaluation.segments:
        was = seg.segment_id in previous
        if was == seg.matched:
            continue
        entered = seg.matched
        before = previous_clauses.get(seg.segment_id) if previous_clauses is not None else None
        turned: tuple[str, ...] = ()
        if before is not None and len(before) == len(seg.clauses):
            turned = tuple(c.text for c, b in zip(seg.clauses, before) if c.holds == entered and bool(b) != entered)
        if not turned:
            turned = tuple(c.text for c in seg.clauses if c.holds == entered)
        changes.append(RuleChange(seg.segment_id, seg.label, entered, seg.clauses, turned, evaluation.version))
    known = {s.segment_id for s in evaluation.segments}
    for retired in sorted(previous - known):
        changes.append(RuleChange(retired, retired, False, (), (), evaluation.version))
    return changes
