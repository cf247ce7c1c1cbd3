"""Declarative rule segments: marketer-written conditions on the customer profile.

A rule segment is a named list of clauses on profile fields, combined with ``all`` (every clause
holds) or ``any`` (at least one does). A clause compares one field with a literal or with a
*percentile of that same field over the population* (``"p80"``), so "top 20% by CLV" keeps meaning
the same thing while the population changes; or tests that a list field (a tag list such as
``interests``) ``contains`` one value. Unlike the cluster segment, a customer can be in any
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

One segment can combine segmentation bases: behaviour (the cluster, by its id, never its label:
a relabel must not move anyone), geography and accessibility (consent). Unknown is never a match:
a customer whose consent is not known (None) is out, as is one whose consent is ``1`` rather
than ``true`` (booleans are not numbers here).

>>> dach = RuleSet.from_toml('''
... [[segment]]
... id = "dach_high_value_email"
... label = "High-value cluster, in DE/AT/CH, consented to email"
... all = [
...   { field = "cluster", op = "==", value = "c3" },
...   { field = "country", op = "in", value = ["DE", "AT", "CH"] },
...   { field = "consent_email", op = "==", value = true },
... ]
... ''')
>>> de = {"cluster": "c3", "country": "DE", "consent_email": True, "interests": ["outdoor"]}
>>> [dach.memberships(p) for p in (de, {**de, "country": "FR"}, {**de, "consent_email": None})]
[frozenset({'dach_high_value_email'}), frozenset(), frozenset()]
>>> outdoor = RuleSet.from_toml('[[segment]]\\nid = "outdoor"\\nlabel = "Outdoor"\\n'
...                             'all = [{field = "interests", op = "contains", value = "outdoor"}]')
>>> [c.text for c in outdoor.evaluate(de).segments[0].clauses], outdoor.memberships({"interests": "outdoors"})
(['interests contains "outdoor"'], frozenset())

One concept per module: :mod:`.definitions`, :mod:`.ops` (what each op means), :mod:`.results`,
:mod:`.quantiles`, :mod:`.ruleset` and :mod:`.changes`; everything public is imported from here.
"""

from __future__ import annotations

from models.rules.changes import RuleSizes, diff_memberships
from models.rules.definitions import (ClauseDef, RuleDefinitionError, RuleDefinitions, SegmentDef, parse_percentile,
                                      percentile_key)
from models.rules.quantiles import PopulationQuantiles
from models.rules.results import ClauseResult, RuleChange, RuleEvaluation, SegmentResult
from models.rules.ruleset import RuleSet, relaxed_percentile

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
    "relaxed_percentile", "parse_percentile",
]
