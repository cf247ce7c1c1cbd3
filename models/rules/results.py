"""What evaluating the rules gives: each clause's and segment's result, the evaluation
of one profile, and a membership change with the clauses that turned."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple


class ClauseResult(NamedTuple):
    """How one clause came out for one profile (a tuple, because evaluate makes many of them).

    ``threshold`` is what the field was compared with: the literal, the list for ``in``, or the
    current population value of a percentile (None while it is not known yet).

    >>> from models.rules import RuleSet, diff_memberships
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
        """JSON-ready: tuples as lists, and a set-valued field (a tag set) as a sorted list, so
        that the same profile gives the same bytes in every process (a set's order is not).

        >>> ClauseResult('interests contains "golf"', "interests", "contains", "golf",
        ...              frozenset({"tennis", "golf"}), True).to_dict()["actual"]
        ['golf', 'tennis']
        """
        d = self._asdict()
        if isinstance(d["threshold"], tuple):
            d["threshold"] = list(d["threshold"])
        actual = d["actual"]
        if isinstance(actual, tuple):
            d["actual"] = list(actual)
        elif isinstance(actual, (set, frozenset)):
            try:
                d["actual"] = sorted(actual)
            except TypeError:  # mixed kinds (tags and numbers) do not sort together
                d["actual"] = sorted(actual, key=repr)
        return d


class SegmentResult(NamedTuple):
    """One segment's outcome: ``matched`` combines the clause results with all / any.

    >>> from models.rules import RuleSet, diff_memberships
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

        >>> from models.rules import RuleSet, diff_memberships
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

    >>> from models.rules import RuleSet, diff_memberships
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
