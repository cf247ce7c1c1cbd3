"""``segstream segments``: each segment's KPIs and viability scorecard, as a terminal table,
Markdown or HTML, from running workers or from an offline replay of an events file.

From workers, each one's raw KPI sums (``GET /segments/kpis``: its partitions at its last complete
sweep pass) are merged exactly (:meth:`models.kpis.SegmentKPIs.merge`), so the figures of a group
of workers are those of one worker holding every partition. From a file, the events are replayed
through the same engine as the worker (:class:`streams.replay.Replay`) and every customer is
counted as of ``--as-of``.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import orjson

from models.config import EngineConfig, ScorecardConfig
from models.kpis import SegmentKPIs
from models.membership_flow import WEEK_S
from models.scorecard import MembershipFlow, Scorecard, score
from models.segment_report import render_html, render_markdown, render_terminal
from schemas.errors import ConfigurationError
from schemas.segment_change import SegmentChange
from streams.wording import plural

__all__ = ["SegmentsReport", "from_events", "from_workers", "render"]

FORMATS = ("table", "markdown", "html")


@dataclass
class SegmentsReport:
    """What the report shows: the merged KPIs, the entries and exits of the last week, labels
    by kind and id, the base currency, the time the figures are as of and where they come from."""

    kpis: SegmentKPIs
    flows: dict[tuple[str, str], MembershipFlow]
    labels: dict[str, dict[str, str]]
    currency: str
    as_of: str | None
    source: str
    notes: tuple[str, ...] = ()  # what a reader must know to read the figures (no model yet, ...)
    population_label: str = "All customers"  # the row of every customer counted

    def scorecard(self, config: ScorecardConfig) -> Scorecard:
        return score(self.kpis.figures(), config, self.flows, self.currency)


def from_workers(urls: Iterable[str], timeout_s: float = 10.0, partial: bool = False) -> SegmentsReport:
    """Fetch ``/segments/kpis`` of every worker at ``urls`` and merge them. Raises
    :class:`ConfigurationError` (one line) for a worker that cannot be reached or has no complete
    sweep pass yet, for workers that disagree on the currency, the KPI window, the consumer group
    or the partition count, for two that count the same partition (one worker given twice, or a
    rebalance under way), and, unless ``partial``, for partitions no worker counts: the figures
    would not be the group's."""
    urls = [url if "://" in url else f"http://{url}" for url in urls]  # 127.0.0.1:6066 is meant as http
    given: dict[str, str] = {}
    for url in urls:
        address = _address(url)
        if address in given:
            raise ConfigurationError(f"{url}: the same worker as {given[address]}, given twice (its customers "
                                     "would be counted twice)")
        given[address] = url
    docs = [(url, _fetch(url.rstrip("/") + "/segments/kpis", timeout_s)) for url in urls]
    for url, doc in docs:  # before comparing anything: a worker without KPIs has nothing to compare
        if doc.get("kpis") is None:
            raise ConfigurationError(f"{url}: no KPIs yet (they come from the worker's first complete sweep pass, "
                                     "up to SEGSTREAM_WORKER__SWEEP_PERIOD_S after it starts or gets partitions)")
    currencies = {doc.get("currency") for _, doc in docs}
    if len(currencies) > 1:
        raise ConfigurationError(f"the workers value money in different currencies: {sorted(map(str, currencies))}")
    coverage = _coverage(docs, partial)
    parts = [SegmentKPIs.from_dict(doc["kpis"]) for _, doc in docs]
    if len({part.dim for part in parts} - {None}) > 1:  # workers on models with other features
        parts = [part.drop_features() for part in parts]
    merged: SegmentKPIs | None = None
    flows: dict[tuple[str, str], MembershipFlow] = {}
    labels: dict[str, dict[str, str]] = {}
    for kpis, (_, doc) in zip(parts, docs):
        merged = kpis if merged is None else merged.merge(kpis)
        for kind, sid, flow in doc.get("flows") or ():
            flows[(kind, sid)] = _add_flows(flows.get((kind, sid)), MembershipFlow(**flow))
        for kind, by_id in (doc.get("labels") or {}).items():
            labels.setdefault(kind, {}).update(by_id)
    assert merged is not None  # urls is never empty (the CLI's default is the local worker)
    as_of = min((doc["as_of"] for _, doc in docs if doc.get("as_of")), default=None)
    notes = ["figures as of each worker's last complete sweep pass over its partitions (a pass every "
             "SEGSTREAM_WORKER__SWEEP_PERIOD_S): events since then are not counted yet"]
    if coverage:
        notes.append(coverage)
    if not labels.get("cluster"):
        notes.append("no clustering model yet: only rule segments are shown")
    return SegmentsReport(merged, flows, labels, str(currencies.pop()), as_of,
                          f"{plural(len(docs), 'worker')}: " + ", ".join(url for url, _ in docs), tuple(notes),
                          "Customers counted" if coverage else "All customers")


def _coverage(docs: list[tuple[str, Mapping[str, Any]]], partial: bool) -> str | None:
    """Check that the workers' figures count each partition of one group once; a note to show
    when only some are counted (``partial``), else None. Raises :class:`ConfigurationError`."""
    groups = {doc.get("group") for _, doc in docs}
    if len(groups) > 1:
        raise ConfigurationError(f"the workers belong to different consumer groups: {sorted(map(str, groups))}")
    totals = {doc.get("partitions_total") for _, doc in docs}
    if len(totals) > 1 or None in totals or any(doc.get("partitions") is None for _, doc in docs):
        raise ConfigurationError("a worker does not say which partitions its figures cover (a segstream older than "
                                 "this command?): upgrade it, or ask each worker's GET /segments on its own")
    owners: dict[int, list[str]] = {}
    for url, doc in docs:
        for partition in doc["partitions"]:
            owners.setdefault(partition, []).append(url)
    twice = {p: who for p, who in sorted(owners.items()) if len(who) > 1}
    if twice:
        shown = "; ".join(f"partition {p} by {' and '.join(who)}" for p, who in twice.items())
        raise ConfigurationError(f"customers would be counted twice: {shown} (one worker given twice, or a "
                                 "rebalance under way: try again after a sweep pass)")
    total = int(totals.pop())  # type: ignore[arg-type]  # None was refused above
    missing = sorted(set(range(total)) - set(owners))
    if not missing:
        return None
    counted = ", ".join(map(str, sorted(owners))) or "none"
    if not partial:
        raise ConfigurationError(f"the workers' figures cover partitions {counted} of {total} (missing: "
                                 f"{', '.join(map(str, missing))}): give every worker of the group with --url, or "
                                 "--partial to report these partitions only (a worker counts a partition from its "
                                 "first complete sweep pass after it got it)")
    return (f"partial: customer partitions {counted} of {total} only (missing: {', '.join(map(str, missing))}); "
            "shares are of the customers counted")


def from_events(path: Path, as_of: float, config: EngineConfig,
                on_bytes: Callable[[int], None] | None = None) -> SegmentsReport:
    """Replay ``path`` (contract JSONL) up to ``as_of`` through the engine and count every customer
    as of ``as_of``; the stability flows are the changes of the week before it."""
    from datetime import datetime, timezone

    from streams.replay import Replay, iter_jsonl

    changes: list[SegmentChange] = []
    replay = Replay(config, as_of, on_change=changes.append)
    replay.feed_all(iter_jsonl(path, on_bytes))
    replay.finish()
    pipeline = replay.pipeline
    kpis = pipeline.new_kpis()
    ids = sorted(replay.states)
    states = [replay.states[cid] for cid in ids if replay.states[cid].holds_data]
    for memberships, values, z in pipeline.kpi_rows(states, [as_of] * len(states), pipeline.kpi_fields):
        kpis.add(memberships, values, z)
    kpis.declare(pipeline.segment_keys())
    snap, labels = pipeline.snapshot, pipeline.segment_labels()
    first = min((c.changed_at.timestamp() for c in changes), default=as_of)
    flows = week_flows(changes, as_of, first, kpis.by_segment)
    notes = () if snap is not None else (f"no clustering model: {pipeline.why_no_model()}",)
    return SegmentsReport(kpis, flows, labels, config.value.base_currency,
                          datetime.fromtimestamp(as_of, timezone.utc).isoformat(), f"replay of {path}", notes)


def week_flows(changes: Iterable[SegmentChange], as_of: float, first: float,
               segments: Iterable[tuple[str, str]] = ()) -> dict[tuple[str, str], MembershipFlow]:
    """Entries and exits per segment among ``changes`` in the week up to ``as_of`` (a shorter span
    when the history starts less than a week before it, at ``first``); ``segments`` are included
    with 0 and 0 when nobody entered or left them."""
    start = max(as_of - WEEK_S, first)
    entered: dict[tuple[str, str], int] = {}
    left: dict[tuple[str, str], int] = {}
    for c in changes:
        if not start < c.changed_at.timestamp() <= as_of:
            continue
        if c.previous_segment is not None:
            key = (c.kind.value, c.previous_segment.id)
            left[key] = left.get(key, 0) + 1
        if c.segment is not None:
            key = (c.kind.value, c.segment.id)
            entered[key] = entered.get(key, 0) + 1
    span_days = (as_of - start) / 86_400.0
    keys = entered.keys() | left.keys() | set(segments)
    return {key: MembershipFlow(entered.get(key, 0), left.get(key, 0), span_days) for key in keys}


def render(report: SegmentsReport, config: ScorecardConfig, fmt: str, width: int = 160) -> str:
    """The report in ``fmt`` (:data:`FORMATS`)."""
    figures = report.kpis.figures()
    card = score(figures, config, report.flows, report.currency)
    labels = {(kind, sid): label for kind, by_id in report.labels.items() for sid, label in by_id.items()}
    population = report.kpis.population_figures()
    title = f"Segments as of {report.as_of or 'unknown'} ({report.source})"
    common: dict[str, Any] = {"labels": labels, "population": population, "preface": report.notes,
                              "population_label": report.population_label}
    if fmt == "markdown":
        return render_markdown(figures, card, report.currency, title=title, **common)
    if fmt == "html":
        return render_html(figures, card, report.currency, title=title, **common)
    return title + "\n" + render_terminal(figures, card, report.currency, width=width, **common)


def _address(url: str) -> str:
    """``url`` as the worker it names: scheme and host in lower case, ``localhost`` as 127.0.0.1, no
    trailing slash (two spellings of one worker are caught before anything is fetched; a worker
    under two names, the overlap check catches)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    host = "127.0.0.1" if host == "localhost" else host
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme.lower())
    except ValueError:  # not a port: the fetch says what is wrong with the address
        return url
    return f"{parts.scheme.lower()}://{host}:{port}{parts.path.rstrip('/')}"


def _fetch(url: str, timeout_s: float) -> Mapping[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:  # noqa: S310 - the operator's own worker
            return orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise ConfigurationError(f"{url}: HTTP {exc.code} (is this a segstream worker's web address?)") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigurationError(f"{url}: cannot reach the worker ({reason}); start one (`segstream run`, "
                                 "`segstream worker`) or pass its address with --url") from None
    except orjson.JSONDecodeError:
        raise ConfigurationError(f"{url}: the answer is not JSON (is this a segstream worker's web address?)") from None


def _add_flows(a: MembershipFlow | None, b: MembershipFlow) -> MembershipFlow:
    """Two workers' flows of one segment: entries and exits add; the span is the shorter one."""
    if a is None:
        return b
    return MembershipFlow(a.entered + b.entered, a.left + b.left, min(a.span_days, b.span_days))
