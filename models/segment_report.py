"""The segments report a marketer reads: KPIs, scorecard and composition of every segment.

Pure text in, text out (``segstream segments`` and the worker call it): the inputs are the plain
JSON forms, :meth:`models.kpis.SegmentKPIs.figures` and :meth:`models.scorecard.Scorecard.to_dict`
(or the :class:`~models.scorecard.Scorecard` itself), so a report can be drawn from a worker's
``/segments`` answer as well as in process. Three renderings of the same tables:

* :func:`render_terminal`: ``rich`` tables, as plain text (or with ANSI colours);
* :func:`render_markdown`: GitHub-flavoured Markdown, every cell escaped (``|`` cannot break a row);
* :func:`render_html`: one self-contained page (inline style, no script, no external asset), every
  text escaped.

Each says plainly which segments fail which criterion, with the scorecard's reasons. Money is
shown in the base currency passed in, shares as percentages; an unknown figure shows as "–".

>>> from models.kpis import SegmentKPIs
>>> from models.scorecard import score
>>> kpis = SegmentKPIs(90)
>>> for i in range(100):
...     kpis.add([("rule", "vip")] if i < 1 else [], {"clv": 100.0 + i, "consent_email": True})
>>> figures = kpis.figures()
>>> md = render_markdown(figures, score(figures))
>>> for line in md.split("## Failing")[1].strip().splitlines()[2:4]:
...     print(line)
- **vip fails substantial**
  - *substantial*: 1.0 % of customers, under the 2 % minimum
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from models.scorecard import CRITERIA, Scorecard

__all__ = ["render_html", "render_markdown", "render_terminal"]

_Key = tuple[str, str]
_UNKNOWN = "–"
_TRAITS = {"country": "country", "age_band": "age", "income_band": "income band", "company_size": "company size",
           "household_size": "household size"}


@dataclass(frozen=True)
class _Cell:
    text: str
    style: str = ""  # pass | fail | unknown | "" (the verdict a cell shows, for colour)


@dataclass(frozen=True)
class _Table:
    title: str
    header: list[str]
    rows: list[list[_Cell]]
    figures_from: int  # the columns from this one on hold figures (right-aligned, never wrapped)


@dataclass(frozen=True)
class _Report:
    tables: list[_Table]
    failing: list[tuple[str, list[tuple[str, str]]]]  # segment name, [(criterion, reason)]
    notes: list[tuple[str, str, str]]  # segments (named), criterion, note: one per distinct note
    unknown: list[tuple[str, str, str]]  # segments (named), criterion, why it could not be judged
    preface: tuple[str, ...] = ()  # lines under the title (what the figures are, what is missing)


def render_terminal(figures: Sequence[Mapping[str, Any]], scorecard: Scorecard | Mapping[str, Any],
                    currency: str = "USD", *, labels: Mapping[_Key, str] | None = None,
                    population: Mapping[str, Any] | None = None, width: int = 160, color: bool = False,
                    preface: Sequence[str] = (), population_label: str = "All customers") -> str:
    """The report as terminal text: ``rich`` tables ``width`` columns wide; ANSI colours when
    ``color`` (for a terminal), plain text otherwise. Labels are shown as text, never as markup."""
    report = _build(figures, scorecard, currency, labels, population, preface, population_label)
    # Never narrower than the tables' figures need: rich drops the columns that do not fit, and a
    # figure with them; a line longer than the terminal wraps, a dropped column is lost.
    width = max([width, *map(_needed_width, report.tables)])
    console = Console(file=io.StringIO(), width=width, force_terminal=color, color_system="standard" if color else None,
                      highlight=False, emoji=False, markup=False)
    for line in report.preface:
        console.print(Text(line))
    for table in report.tables:
        console.print(_rich_table(table, width))
    console.print(Text(_failing_heading(report), style="bold"))
    for name, failures in report.failing:
        console.print(Text(f"  {_failing_line(name, failures)}", style="bold red"))
        for criterion, reason in failures:
            console.print(Text(f"    {criterion}: {reason}"))
    if report.unknown:
        console.print(Text(_UNKNOWN_HEADING, style="bold"))
    for names, criterion, why in report.unknown:
        console.print(Text(f"  {criterion} ({names}): {why}"))
    if report.notes:
        console.print(Text("* judged on part of the data:", style="bold"))
    for name, criterion, note in report.notes:
        console.print(Text(f"  {criterion} ({name}): {note}"))
    console.print(Text(_LEGEND_HEADING, style="bold"))
    for criterion, meaning in LEGEND:
        console.print(Text(f"  {criterion}: {meaning}"))
    return console.file.getvalue()  # type: ignore[attr-defined]


def render_markdown(figures: Sequence[Mapping[str, Any]], scorecard: Scorecard | Mapping[str, Any],
                    currency: str = "USD", *, labels: Mapping[_Key, str] | None = None,
                    population: Mapping[str, Any] | None = None, title: str = "Segments",
                    preface: Sequence[str] = (), population_label: str = "All customers") -> str:
    """The report as Markdown: a heading, a pipe table per section and the failing list."""
    report = _build(figures, scorecard, currency, labels, population, preface, population_label)
    out = [f"# {_md(title)}", ""]
    if report.preface:
        out += [*(_md(line) + "  " for line in report.preface), ""]
    for table in report.tables:
        out += [f"## {_md(table.title)}", "", "| " + " | ".join(_md(h.replace("\n", " ")) for h in table.header) + " |",
                "|" + "".join("---:|" if i >= table.figures_from else "---|" for i in range(len(table.header)))]
        out += ["| " + " | ".join(_md(c.text) for c in row) + " |" for row in table.rows]
        out.append("")
    out += [f"## {_failing_heading(report)}", ""]
    for name, failures in report.failing:
        out.append(f"- **{_md(_failing_line(name, failures))}**")
        out += [f"  - *{criterion}*: {_md(reason)}" for criterion, reason in failures]
    if report.unknown:
        out += ["", f"## {_UNKNOWN_HEADING}", ""]
    out += [f"- *{criterion}* ({_md(names)}): {_md(why)}" for names, criterion, why in report.unknown]
    if report.notes:
        out += ["", "\\* Judged on part of the data:", ""]
    out += [f"- *{criterion}* ({_md(name)}): {_md(note)}" for name, criterion, note in report.notes]
    out += ["", f"## {_LEGEND_HEADING}", "", *(f"- *{c}*: {_md(meaning)}" for c, meaning in LEGEND)]
    return "\n".join(out).rstrip() + "\n"


def render_html(figures: Sequence[Mapping[str, Any]], scorecard: Scorecard | Mapping[str, Any],
                currency: str = "USD", *, labels: Mapping[_Key, str] | None = None,
                population: Mapping[str, Any] | None = None, title: str = "Segments",
                preface: Sequence[str] = (), population_label: str = "All customers") -> str:
    """The report as one self-contained HTML page (inline style, no script, no external asset);
    every text is escaped."""
    report = _build(figures, scorecard, currency, labels, population, preface, population_label)
    e = html.escape
    body = [f"<h1>{e(title)}</h1>"] + [f"<p>{e(line)}</p>" for line in report.preface]
    for table in report.tables:
        body.append(f"<h2>{e(table.title)}</h2>\n<table>\n<tr>" + "".join(f"<th>{e(h).replace(chr(10), '<br>')}</th>" for h in table.header)
                    + "</tr>")
        body += ["<tr>" + "".join(f'<td class="{c.style}">{e(c.text)}</td>' if c.style else f"<td>{e(c.text)}</td>"
                                  for c in row) + "</tr>" for row in table.rows]
        body.append("</table>")
    body.append(f"<h2>{e(_failing_heading(report))}</h2>\n<ul>")
    for name, failures in report.failing:
        body.append(f'<li class="fail"><b>{e(_failing_line(name, failures))}</b><ul>'
                    + "".join(f"<li><i>{e(c)}</i>: {e(reason)}</li>" for c, reason in failures) + "</ul></li>")
    body.append("</ul>")
    if report.unknown:
        body.append(f"<h2>{e(_UNKNOWN_HEADING)}</h2>\n<ul>")
        body += [f"<li><i>{e(criterion)}</i> ({e(names)}): {e(why)}</li>" for names, criterion, why in report.unknown]
        body.append("</ul>")
    if report.notes:
        body.append("<p>* Judged on part of the data:</p>\n<ul>")
        body += [f"<li><i>{e(criterion)}</i> ({e(name)}): {e(note)}</li>" for name, criterion, note in report.notes]
        body.append("</ul>")
    body.append(f"<h2>{e(_LEGEND_HEADING)}</h2>\n<ul>")
    body += [f"<li><i>{e(c)}</i>: {e(meaning)}</li>" for c, meaning in LEGEND]
    body.append("</ul>")
    return _PAGE.format(title=e(title), style=_STYLE, body="\n".join(body))


# ---- the report's content, shared by the three renderings ------------------------------------------

def _build(figures: Sequence[Mapping[str, Any]], scorecard: Scorecard | Mapping[str, Any], currency: str,
           labels: Mapping[_Key, str] | None, population: Mapping[str, Any] | None,
           preface: Sequence[str] = (), population_label: str = "All customers") -> _Report:
    card = scorecard.to_dict() if isinstance(scorecard, Scorecard) else scorecard
    scores = {(s["kind"], s["segment_id"]): s for s in card["segments"]}
    names = {(f["kind"], f["segment_id"]): _name(f, labels or {}) for f in figures}
    rows = [(names[f["kind"], f["segment_id"]], f["kind"], f) for f in figures]
    if population is not None:
        rows.append((population_label, "", population))  # "All customers", or which ones when not all
    value_rows = [_value_row(name, kind, f) for name, kind, f in rows]
    reach_rows = [_reach_row(name, f) for name, _, f in rows]
    loyalty_rows = [_loyalty_row(name, f) for name, _, f in rows]
    window = next((f.get("recent_revenue_days") for f in [*figures, population or {}] if f), None)
    over = f"; revenue over the last {window:g} days" if isinstance(window, (int, float)) else ""
    tables = [
        _Table(f"Size and value (money in {currency}{over})", _VALUE_HEADER, value_rows, 2),
        _Table(f"Acquisition and reach (money in {currency})", _REACH_HEADER, reach_rows, 1),
        _Table("Loyalty and service", _LOYALTY_HEADER, loyalty_rows, 1),
        _Table("Scorecard", ["Segment", *_criterion_headers(card.get("thresholds") or {})],
               [[_Cell(names[key]), *_verdict_cells(scores[key])] for key in names if key in scores], 1),
    ]
    known = _known_traits(figures)
    if known:  # a trait no member of any segment has (no profile events at all, say) is left out
        tables.append(_Table("Composition (share of members)", ["Segment", "Trait", "Values"],
                             [row for f in figures for row in _composition_rows(names[f["kind"], f["segment_id"]], f,
                                                                                known)], 3))
    failing = [(names.get(key, key[1]), [(c, s["criteria"][c]["reason"]) for c in s["failed"]])
               for key, s in scores.items() if s["failed"]]
    notes = _grouped([(names.get(key, key[1]), c, v["note"]) for key, s in scores.items()
                      for c, v in s["criteria"].items() if v.get("note")])
    unknown = _grouped([(names.get(key, key[1]), c, v["reason"]) for key, s in scores.items()
                        for c, v in s["criteria"].items() if v["verdict"] == "unknown"])
    return _Report(tables, failing, notes, unknown, tuple(preface))


_UNKNOWN_HEADING = "Could not be judged (the data it needs is missing)"
_LEGEND_HEADING = "How the scorecard reads"
#: One line per criterion for a reader without the documentation (docs/segmentation.md §11).
LEGEND: tuple[tuple[str, str], ...] = (
    ("substantial", "members as a share of the customers counted: big enough to be worth a programme"),
    ("measurable", "share of members whose defining figures are known (a rule's fields; a cluster's value and "
                   "behaviour figures)"),
    ("accessible", "share of members who consented to email, sms or push"),
    ("differentiable", "how far the segment's typical member is from the nearest other segment's, in multiples of "
                       "the spread within the two (1x: a typical member-to-centre distance apart)"),
    ("stable", "customers entering plus leaving in a week, as a share of the segment"),
    ("profitable", "mean CLV against what a member costs to acquire (CAC) and to serve"),
)


def _grouped(items: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """(segment, criterion, text) grouped by (criterion, text), in criterion order: one line says
    "no member has a consent recorded" once for the segments it is true of, not once each."""
    groups: dict[tuple[str, str], list[str]] = {}
    for name, criterion, text in items:
        groups.setdefault((criterion, text), []).append(name)
    order = {c: i for i, c in enumerate(CRITERIA)}
    return [(_names(segments), criterion, text)
            for (criterion, text), segments in sorted(groups.items(), key=lambda g: order.get(g[0][0], 99))]


def _names(segments: list[str]) -> str:
    return ", ".join(segments) if len(segments) <= 3 else f"{len(segments)} segments"


def _name(f: Mapping[str, Any], labels: Mapping[_Key, str]) -> str:
    label = labels.get((f["kind"], f["segment_id"])) or f.get("label")
    if not label:
        return str(f["segment_id"])
    # a label may carry its id already (two segments described alike: "typical (c1)", "typical (c3)")
    return label if label.endswith(f"({f['segment_id']})") else f"{label} ({f['segment_id']})"


# Three narrow tables rather than one wide one: each fits an 80-column terminal.
_VALUE_HEADER = ["Segment", "Kind", "Size", "Share", "Revenue", "CLV total", "CLV mean", "CLV known"]
_REACH_HEADER = ["Segment", "CAC mean", "CAC known", "CLV:CAC", "Reachable"]
_LOYALTY_HEADER = ["Segment", "Retention", "Churn", "NPS", "NPS answered", "Service load (tickets)"]


def _value_row(name: str, kind: str, f: Mapping[str, Any]) -> list[_Cell]:
    size = f.get("size") or 0
    texts = [name, kind, f"{size:,}", _pct(f.get("share")), _amount(f.get("recent_revenue")),
             _amount(f.get("clv_total")), _amount(f.get("clv_mean")),
             _pct(f["clv_known"] / size) if size and f.get("clv_known") is not None else _UNKNOWN]
    return [_Cell(t) for t in texts]


def _reach_row(name: str, f: Mapping[str, Any]) -> list[_Cell]:
    ratio = f.get("clv_to_cac")
    texts = [name, _amount(f.get("cac_mean")), _pct(f.get("cac_known_share")),
             _UNKNOWN if ratio is None else f"{ratio:.1f}:1", _pct(f.get("reachable_share"))]
    return [_Cell(t) for t in texts]


def _loyalty_row(name: str, f: Mapping[str, Any]) -> list[_Cell]:
    nps, load = f.get("nps"), f.get("cost_to_serve_mean")
    texts = [name, _pct(f.get("retention")), _pct(f.get("churn")), _UNKNOWN if nps is None else f"{nps:+.0f}",
             _pct(f.get("nps_answered_share")), _UNKNOWN if load is None else f"{load:.2f}"]
    return [_Cell(t) for t in texts]


def _criterion_headers(thresholds: Mapping[str, Any]) -> list[str]:
    """Each criterion with its threshold, so the table reads without the configuration at hand."""
    share: Callable[[float], str] = lambda v: f"{v * 100:g} %"  # noqa: E731
    ratio: Callable[[float], str] = lambda v: f"{v:g}x"  # noqa: E731
    bounds = {"substantial": ("min_share", "≥", share), "measurable": ("min_measurable_share", "≥", share),
              "accessible": ("min_reachable_share", "≥", share), "differentiable": ("min_separation", "≥", ratio),
              "stable": ("max_weekly_churn", "≤", lambda v: f"{share(v)}/wk"),
              "profitable": ("min_profit_ratio", "≥", ratio)}
    headers = []
    for name in CRITERIA:
        key, op, shown = bounds[name]
        headers.append(f"{name}\n{op} {shown(thresholds[key])}" if thresholds.get(key) is not None else name)
    return headers


def _verdict_cells(s: Mapping[str, Any]) -> list[_Cell]:
    cells = []
    for name in CRITERIA:
        c = s["criteria"].get(name)
        if c is None:
            cells.append(_Cell(_UNKNOWN, "unknown"))
            continue
        shown = _criterion_value(name, c.get("value"))
        text = {"pass": "pass", "fail": "FAIL", "unknown": "?"}[c["verdict"]] + (f" {shown}" if shown else "")
        cells.append(_Cell(text + (" *" if c.get("note") else ""), c["verdict"]))
    return cells


def _criterion_value(name: str, value: float | None) -> str:
    if value is None:
        return ""
    if name in ("substantial", "measurable", "accessible"):
        return _pct(value)
    return f"{_pct(value)}/wk" if name == "stable" else _times(value)


def _known_traits(figures: Sequence[Mapping[str, Any]]) -> set[str]:
    """The composition traits some member of some segment has a value of."""
    return {trait for f in figures for trait, c in (f.get("composition") or {}).items() if c["values"] or c["other"]}


def _composition_rows(name: str, f: Mapping[str, Any], traits: set[str]) -> list[list[_Cell]]:
    """One row per trait of ``traits``; the segment's name on its first row only."""
    size = f.get("size") or 0
    rows: list[list[_Cell]] = []
    for trait, c in (f.get("composition") or {}).items():
        if trait not in traits:
            continue
        parts = [f"{v} {_pct(n / size)}" for v, n in c["values"].items()] if size else []
        if size and c["other"]:
            parts.append(f"{c['other_values']} other values {_pct(c['other'] / size)}")
        if size and c["unknown"]:
            parts.append(f"unknown {_pct(c['unknown'] / size)}")
        rows.append([_Cell("" if rows else name), _Cell(_TRAITS.get(trait, trait)),
                     _Cell(", ".join(parts) or _UNKNOWN)])
    return rows


def _failing_heading(report: _Report) -> str:
    if not report.failing:
        # "no segment fails" would read as a clean bill of health while verdicts are missing
        return ("Failing: no segment fails a criterion that could be judged (some could not: below)"
                if report.unknown else "Failing: no segment fails a criterion")
    n = len(report.failing)
    return f"Failing: {n} segment{'s' if n > 1 else ''} fail{'' if n > 1 else 's'} at least one criterion"


def _failing_line(name: str, failures: list[tuple[str, str]]) -> str:
    criteria = [c for c, _ in failures]
    listed = criteria[0] if len(criteria) == 1 else ", ".join(criteria[:-1]) + " and " + criteria[-1]
    return f"{name} fails {listed}"


# ---- formats ---------------------------------------------------------------------------------------

def _pct(share: float | None) -> str:
    """A share as a percentage, one decimal.

    >>> _pct(0.1234), _pct(None), _pct(1.0)
    ('12.3 %', '–', '100.0 %')
    """
    return _UNKNOWN if share is None else f"{share * 100:.1f} %"


def _amount(value: float | None) -> str:
    """Money (the currency is in the column's header): whole units from 100 up, millions and
    billions shortened.

    >>> _amount(12.345), _amount(12_345.6), _amount(3_456_789.0), _amount(-2.5e9), _amount(None)
    ('12.35', '12,346', '3.46 M', '-2.50 bn', '–')
    """
    if value is None:
        return _UNKNOWN
    size = abs(value)
    if size >= 1e9:
        return f"{value / 1e9:,.2f} bn"
    if size >= 1e6:
        return f"{value / 1e6:,.2f} M"
    return f"{value:,.0f}" if size >= 100 else f"{value:,.2f}"


def _times(value: float) -> str:
    return f"{value:.2f}x"


_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def _md(text: str) -> str:
    """``text`` safe in a Markdown table cell: one line, Markdown's specials backslashed, HTML's escaped
    (a renderer that passes HTML through must not run a label's ``<script>``).

    >>> _md("a|b <script>*x*</script>\\nc")
    'a\\\\|b &lt;script&gt;\\\\*x\\\\*&lt;/script&gt; c'
    """
    one_line = " ".join(str(text).split())
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def _needed_width(t: _Table) -> int:
    """Columns a table needs with every figure on one line and labels folded at 16 characters."""
    widest = [max([len(row[i].text) for row in t.rows] + [max(map(len, t.header[i].split()), default=0)])
              for i in range(len(t.header))]
    return sum(w if i >= t.figures_from else min(w, 16) for i, w in enumerate(widest)) + 2 * len(t.header) + 2


def _rich_table(t: _Table, width: int) -> Table:
    table = Table(title=t.title, box=box.SIMPLE_HEAVY, title_justify="left", show_lines=False, pad_edge=False,
                  collapse_padding=True)
    widest = [max((len(row[i].text) for row in t.rows), default=0) for i in range(len(t.header))]
    # A figure is kept on one line while the figures fit the width; past it they fold too (rich
    # would otherwise drop the last columns of a narrow terminal, and a figure with them).
    whole = sum(widest[t.figures_from:]) + 16 + 3 * len(t.header) <= width
    for i, h in enumerate(t.header):
        figures = i >= t.figures_from
        table.add_column(Text(h), justify="right" if figures else "left", overflow="fold",
                         min_width=(widest[i] if whole else None) if figures else min(widest[i], 16))
    colours = {"pass": "green", "fail": "bold red", "unknown": "yellow"}
    for row in t.rows:
        table.add_row(*(Text(c.text, style=colours.get(c.style, "")) for c in row))
    return table


_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
td.pass { color: #176317; } td.fail { color: #b00020; font-weight: bold; } td.unknown { color: #8a6d00; }
li.fail { color: #b00020; }
"""
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>{title}</title>
<style>{style}</style>
</head>
<body>
{body}
</body>
</html>
"""
