"""The compiled rule set (:class:`RuleSet`): definitions turned into small callables,
because :meth:`RuleSet.evaluate` runs on every event (no pydantic, no parsing there)."""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any


from models.rules.definitions import ClauseDef, MEMBERSHIP_OPS, RuleDefinitionError, RuleDefinitions, SegmentDef, _validate, _where, percentile_key
from models.rules.ops import compile_op
from models.rules.results import ClauseResult, RuleEvaluation, SegmentResult
from models.rules.quantiles import PopulationQuantiles


#: A clause's problem for the profile it reads (None: it can hold), checked when rules are loaded.
ClauseCheck = Callable[[ClauseDef], "str | None"]

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
    """A clause compiled to a field lookup, an op's tests (:mod:`.ops`) and a bound operand."""

    __slots__ = ("field", "op", "test", "on_bool", "operand", "shown", "key", "pct", "base", "text", "_texts",
                 "_stay_keys", "_stay_texts", "_lower_is_looser")

    def __init__(self, d: ClauseDef):
        self.field, self.op = d.field, d.op
        compiled = compile_op(d.op, d.value)
        self.test, self.on_bool = compiled.test, compiled.on_bool
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
            # in / not in: a frozenset for O(1) membership (booleans apart, see .ops); the tuple
            # (file order) is what results show
            self.operand = compiled.operand
            self.shown = tuple(d.value) if d.op in MEMBERSHIP_OPS else d.value
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

    def _held_operand(self, thresholds: Mapping[str, float], entry: float | None, band: float) -> float | None:
        """A member's threshold: the relaxed one, never stricter than the entry (the entry one when
        there is no relaxed threshold, e.g. an older snapshot)."""
        stay = self._stay_keys.get(band) or self.stay_key(band)
        relaxed = thresholds.get(stay[0]) if stay is not None else None
        if relaxed is None or entry is None:
            return entry
        return min(relaxed, entry) if self._lower_is_looser else max(relaxed, entry)

    def _held(self, thresholds: Mapping[str, float], entry: float | None, band: float) -> tuple[float | None, str]:
        """A member's threshold (:meth:`_held_operand`) and its text."""
        stay = self._stay_keys.get(band) or self.stay_key(band)
        if stay is None or entry is None or thresholds.get(stay[0]) is None:  # exact
            return entry, self._texts.get(entry) or self._text_for(entry)  # type: ignore[arg-type]
        looser = self._held_operand(thresholds, entry, band)
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
        # tuple.__new__ skips NamedTuple's Python-level __new__, which costs as much again
        return _new_tuple(ClauseResult, (text, self.field, self.op, shown, actual, self._test(actual, operand)))

    def holds(self, profile: Mapping[str, Any], thresholds: Mapping[str, float],
              member: bool = False, band: float = 0.0) -> bool:
        """``self(profile, ...).holds`` without the result's texts (most evaluations change nothing)."""
        if self.key is None:
            operand = self.operand
        else:
            operand = thresholds.get(self.key)
            if member and band > 0:
                operand = self._held_operand(thresholds, operand, band)
        return self._test(profile.get(self.field), operand)

    def _test(self, actual: Any, operand: Any) -> bool:
        if actual is None or operand is None:
            return False
        if actual is True or actual is False:  # Python's True == 1: a boolean is not a number here
            return self.on_bool(actual)
        try:
            return bool(self.test(actual, operand))
        except TypeError:  # e.g. a string field compared with a number: false, not a crash
            return False


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
        self._fields = tuple(sorted({c.field for seg in definitions.segment for c in seg.clauses}))

    @classmethod
    def from_toml(cls, text_or_path: str | os.PathLike[str], *, fields: Collection[str] | None = None,
                  check: ClauseCheck | None = None) -> RuleSet:
        """Parse TOML text (a ``str``) or the file at a path (a ``pathlib.Path`` / ``os.PathLike``).

        ``fields``, if given, are the allowed profile keys: a clause on any other field is an
        error (catches typos that would otherwise never match).
        """
        if isinstance(text_or_path, os.PathLike):
            return cls.from_file(text_or_path, fields=fields, check=check)
        return cls._load(text_or_path, "<string>", fields, check)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, fields: Collection[str] | None = None,
                  check: ClauseCheck | None = None) -> RuleSet:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise RuleDefinitionError(str(path), [f"cannot read the file: {getattr(exc, 'strerror', None) or exc}"]) from None
        return cls._load(text, str(path), fields, check)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, fields: Collection[str] | None = None,
                  source: str = "<dict>", check: ClauseCheck | None = None) -> RuleSet:
        """From already parsed data shaped like the TOML (``{"segment": [...]}``). ``check``: a
        clause's problem for the profile it will read (a text, None when it can be true), e.g.
        :func:`models.profile.clause_problem`."""
        definitions = _validate(data, source)
        if fields is not None:
            allowed = frozenset(fields)
            problems = [f"{_where(('segment', i, s.mode, j, 'field'), data)}: unknown profile field {c.field!r}"
                        for i, s in enumerate(definitions.segment)
                        for j, c in enumerate(s.clauses) if c.field not in allowed]
            if problems:
                raise RuleDefinitionError(source, problems)
        if check is not None:
            problems = [f"{_where(('segment', i, s.mode, j), data)}: {problem}"
                        for i, s in enumerate(definitions.segment)
                        for j, c in enumerate(s.clauses) if (problem := check(c)) is not None]
            if problems:
                raise RuleDefinitionError(source, problems)
        return cls(definitions)

    @classmethod
    def _load(cls, text: str, source: str, fields: Collection[str] | None,
              check: ClauseCheck | None = None) -> RuleSet:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RuleDefinitionError(source, [f"not valid TOML: {exc}"]) from None
        return cls.from_dict(data, fields=fields, source=source, check=check)

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

    @property
    def fields(self) -> tuple[str, ...]:
        """The profile fields the clauses read, sorted (each once).

        >>> RuleSet.from_toml('[[segment]]\\nid = "vip"\\nlabel = "VIP"\\n'
        ...                   'all = [{field = "clv", op = ">", value = "p80"}, {field = "T", op = "<", value = 9}]').fields
        ('T', 'clv')
        """
        return self._fields

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
        known yet, or whose types do not compare, is false; a boolean is not a number (``== 1``
        is false for ``True``), and a list field only answers ``contains`` / ``not contains``
        (:mod:`.ops`).

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
        th = self._thresholds(thresholds)
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

    def memberships(self, profile: Mapping[str, Any],
                    thresholds: PopulationQuantiles | Mapping[str, float] | None = None,
                    members: Collection[str] = (), band: float = 0.0) -> frozenset[str]:
        """``evaluate(...).memberships`` without the clause details: enough to see that nothing
        changed (what most evaluations find), at about a third of the cost.

        >>> rules = RuleSet.from_toml('[[segment]]\\nid = "vip"\\nlabel = "VIP"\\n'
        ...                           'all = [{field = "clv", op = ">", value = "p80"}]')
        >>> th = {"clv:p80": 100.0, "clv:p75": 90.0}
        >>> rules.memberships({"clv": 95.0}, th, band=5), rules.memberships({"clv": 95.0}, th, {"vip"}, 5)
        (frozenset(), frozenset({'vip'}))
        """
        th = self._thresholds(thresholds)
        return frozenset([seg.id for seg in self._segments
                          if seg.combine([clause.holds(profile, th, seg.id in members, band) for clause in seg.clauses])])

    @staticmethod
    def _thresholds(thresholds: PopulationQuantiles | Mapping[str, float] | None) -> Mapping[str, float]:
        return thresholds.thresholds() if isinstance(thresholds, PopulationQuantiles) else (thresholds or {})
