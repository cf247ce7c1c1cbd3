"""Rule definitions: the TOML a marketer writes, validated strictly once at load time
(pydantic), and the percentile references (``"p80"``) clauses may use."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from schemas.errors import ConfigurationError


Op = Literal[">", ">=", "<", "<=", "==", "!=", "in", "not in", "contains", "not contains"]
ORDERING_OPS = frozenset({">", ">=", "<", "<="})
MEMBERSHIP_OPS = frozenset({"in", "not in"})  # the field's value is one of a list of values
CONTAINS_OPS = frozenset({"contains", "not contains"})  # the field is a list that holds one value

# "p80", "p99.5": the integer part is 1..99 and decimals are allowed, so p99.9 works but p100 and
# p0.5 do not (neither is a useful threshold and P² estimates of such extremes are unstable).
_PERCENTILE = re.compile(r"^p(\d{1,2}(?:\.\d+)?)$")
# With an ordering op a string is only ever a percentile, so anything starting like one ("p8x")
# gets the percentile message.
_LOOKS_LIKE_PERCENTILE = re.compile(r"^p\d")
# Strings spelled like a percentile ("p80", "p100", "p0.5") are refused as literals of the other
# ops: a marketer writing `clv == "p80"` means a threshold, and a silent string comparison never
# matches. Only the whole spelling: "p2p" is a fine tag (`interests contains "p2p"`).
_SPELLED_AS_PERCENTILE = re.compile(r"^p\d+(?:\.\d*)?$")


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
    >>> ClauseDef(field="interests", op="contains", value="outdoor").value  # a list field holds one tag
    'outdoor'
    """

    field: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", description="A profile key.")
    op: Op
    value: Any = Field(description="A number, string, boolean, a list for in / not in, or 'pNN' "
                                   "(with > >= < <=); one value for contains / not contains.")

    @model_validator(mode="after")
    def _check_value(self) -> ClauseDef:
        op, value = self.op, self.value
        if op in MEMBERSHIP_OPS:
            if not isinstance(value, list) or not value:
                raise ConfigurationError(f"op {op!r} needs a non-empty list of values, got {value!r}")
            for x in value:
                _check_scalar(x)
                if isinstance(x, str) and _SPELLED_AS_PERCENTILE.match(x):
                    raise ConfigurationError(f"percentile {x!r} only works with >, >=, < and <=, not inside a list")
            return self
        if isinstance(value, list) and op in CONTAINS_OPS:
            # `interests contains ["a", "b"]` is ambiguous (either of them? both?): say it
            raise ConfigurationError(
                f"op {op!r} needs a single value, got the list {value!r}: write one clause per value, "
                f"combined with 'any' (holds one of them) or 'all' (holds every one)")
        if isinstance(value, list):
            raise ConfigurationError(f"op {op!r} needs a single value, got the list {value!r} (use 'in' for lists)")
        _check_scalar(value)
        if isinstance(value, str) and op in ORDERING_OPS:
            pct = parse_percentile(value)
            if pct is None and not _LOOKS_LIKE_PERCENTILE.match(value):
                raise ConfigurationError(f"op {op!r} needs a number or a percentile 'pNN', got {value!r} "
                                         f"(to match text values, list them with 'in')")
            if pct is None:
                raise ConfigurationError(f"bad percentile {value!r}: expected 'pNN' with NN from 1 to 99, "
                                 f"decimals allowed (e.g. 'p80', 'p99.5')")
            self.value = f"p{pct:g}"
        elif isinstance(value, str) and _SPELLED_AS_PERCENTILE.match(value):
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
