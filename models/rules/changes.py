"""Membership changes and exact rule segment sizes: :func:`diff_memberships` turns two
evaluations into enter/leave changes, :class:`RuleSizes` counts members from them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence


from models.rules.results import RuleChange, RuleEvaluation


class RuleSizes:
    """Exact member counts of the rule segments, kept where memberships are decided.

    The engine calls :meth:`record` with every change it emits, so the counts are exact for the
    customers this engine evaluates (all of them in a replay). ``entered`` / ``left`` count the
    flows since they were last read with :meth:`take_flows`.

    >>> from models.rules import RuleSet
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
    >>> from models.rules import RuleSet, diff_memberships
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
