"""The segments report (models/segment_report.py): escaping in every format, the Markdown tables'
shape, the failing list, and the same content whether the scorecard comes as an object or as JSON."""

from __future__ import annotations

import html
import json
import re
from typing import Any

import pytest

from models.config import ScorecardConfig
from models.kpis import SegmentKPIs
from models.scorecard import CRITERIA, Scorecard, score
from models.segment_report import render_html, render_markdown, render_terminal

HOSTILE = 'Loyal <script>alert("x")</script> | & [bold red]big[/] *stars*\nsecond line'


def report_inputs(failing: bool = True) -> tuple[list[dict[str, Any]], Scorecard, dict[str, Any]]:
    kpis = SegmentKPIs(90, {"rule": ("clv",)})
    for i in range(200):
        segments = [("cluster", "c1" if i % 2 else "c2")]
        if i < (2 if failing else 40):
            segments.append(("rule", "vip|<b>"))
        kpis.add(segments, {"clv": 50.0 + i, "acquisition_cost": 20.0, "nps": i % 11, "consent_email": True,
                            "country": "DE" if i % 3 else "AT", "age": 20 + i % 50}, [10.0 * (i % 2), (i % 7) / 10])
    figures = kpis.figures()
    return figures, score(figures, ScorecardConfig(), currency="EUR"), kpis.population_figures()


LABELS = {("cluster", "c1"): HOSTILE}


def test_html_escapes_every_label_and_needs_nothing_outside_the_page() -> None:
    figures, card, population = report_inputs()
    page = render_html(figures, card, "EUR", labels=LABELS, population=population, title="Q3 <b>& co</b>")
    assert "<script" not in page and "[bold red]" in page  # rich markup is not HTML: shown as is
    assert "Loyal &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; | &amp;" in page
    assert "vip|&lt;b&gt;" in page and "<b>&" not in page
    assert "<title>Q3 &lt;b&gt;&amp; co&lt;/b&gt;</title>" in page
    assert not re.search(r"\b(src|href)=|https?://|@import|url\(", page)  # self-contained
    assert page.count("<table>") == page.count("</table>") == 5


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row (a backslashed pipe is text, not a separator)."""
    assert line.startswith("| ") or line.startswith("|-"), line
    return re.split(r"(?<!\\)\|", line.strip())[1:-1]


def test_markdown_tables_keep_their_shape_whatever_the_labels() -> None:
    figures, card, population = report_inputs()
    md = render_markdown(figures, card, "EUR", labels=LABELS, population=population)
    tables = re.findall(r"(?m)^## (.+)\n\n((?:\|.*\n)+)", md)
    assert [t for t, _ in tables] == ["Size and value (money in EUR; revenue over the last 90 days)",
                                      "Acquisition and reach (money in EUR)", "Loyalty and service", "Scorecard",
                                      "Composition (share of members)"]
    for title, block in tables:
        rows = block.splitlines()
        width = len(cells(rows[0]))
        assert re.fullmatch(r"\|(-{3}:?\|)+", rows[1]) and len(cells(rows[1])) == width, title
        assert all(len(cells(row)) == width for row in rows[2:]), title
    value_rows = tables[0][1].splitlines()[2:]
    assert len(value_rows) == len(figures) + 1  # and the population
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\*stars\\*" in md
    assert "second line" in value_rows[0]  # the label's new line did not end the row


def test_the_report_says_which_segments_fail_which_criterion() -> None:
    figures, card, population = report_inputs()
    assert card.failing() == {("rule", "vip|<b>"): ["substantial"]}
    md = render_markdown(figures, card, "EUR")
    assert "- **vip\\|&lt;b&gt; fails substantial**" in md
    assert "  - *substantial*: 1.0 % of customers, under the 2 % minimum" in md
    text = render_terminal(figures, card, "EUR")
    assert "vip|<b> fails substantial" in text and "1.0 % of customers, under the 2 % minimum" in text
    assert "Failing: 1 segment fails at least one criterion" in text
    ok_figures, ok_card, _ = report_inputs(failing=False)
    assert ok_card.failing() == {}
    for render in (render_terminal, render_markdown, render_html):
        out = render(ok_figures, ok_card, "EUR")
        assert "no segment fails a criterion" in out and "fails substantial" not in out


def test_terminal_text_shows_labels_as_text_and_colours_only_on_request() -> None:
    figures, card, population = report_inputs()
    text = render_terminal(figures, card, "EUR", labels=LABELS, population=population, width=200)
    assert "[bold red]big[/]" in text and "\x1b[" not in text
    assert "money in EUR" in text and "All customers" in text and "FAIL 1.0 %" in text
    coloured = render_terminal(figures, card, "EUR", color=True)
    assert "\x1b[" in coloured


@pytest.mark.parametrize("render", [render_terminal, render_markdown, render_html])
def test_the_scorecard_as_json_gives_the_same_report(render: Any) -> None:
    figures, card, population = report_inputs()
    as_json = json.loads(json.dumps(card.to_dict()))
    assert render(json.loads(json.dumps(figures)), as_json, "EUR", population=population) == render(
        figures, card, "EUR", population=population)


def test_figures_are_shown_with_units() -> None:
    figures, card, population = report_inputs()
    md = render_markdown(figures, card, "JPY", population=population)
    value, reach = [line for line in md.splitlines() if line.startswith("| All customers")][:2]
    size, share, revenue, clv_total, clv_mean, clv_known = cells(value)[2:]
    cac, cac_known, ratio, reachable = cells(reach)[1:]
    assert (size.strip(), share.strip(), clv_mean.strip(), cac.strip(), cac_known.strip(), ratio.strip()) == (
        "200", "100.0 %", "150", "20.00", "100.0 %", "7.5:1")
    assert clv_total.strip() == "29,900" and "money in JPY" in md
    assert "| c1 | country | DE 67.0 %, AT 33.0 % |" in md  # odd i: 33 of 100 a multiple of 3


def test_composition_shows_only_traits_someone_has() -> None:
    kpis = SegmentKPIs(window_days=90)
    kpis.add([("cluster", "c1")], {"clv": 10.0, "country": "DE"}, None)
    kpis.add([("cluster", "c2")], {"clv": 20.0}, None)
    figures = kpis.figures()
    text = render_markdown(figures, score(figures))
    assert "Composition" in text and "DE 100.0 %" in text and "Income band" not in text.title()
    bare = SegmentKPIs(window_days=90)
    bare.add([("cluster", "c1")], {"clv": 10.0}, None)
    assert "Composition" not in render_markdown(bare.figures(), score(bare.figures()))


def test_every_rendering_explains_each_criterion() -> None:
    from models.segment_report import LEGEND

    figures, card, population = report_inputs()
    assert [c for c, _ in LEGEND] == list(CRITERIA)
    for text in (render_markdown(figures, card), html.unescape(render_html(figures, card)),
                 render_terminal(figures, card, width=400)):
        assert "How the scorecard reads" in text and all(meaning in text for _, meaning in LEGEND), text[-1500:]
