"""The PromQL of the monitoring files: the Grafana dashboard's panel queries and the alert rules.

Pure Python (no Prometheus, no Grafana): the tests use it to check the files' structure and the
metric names they use, and to evaluate every expression against a live Prometheus.

>>> exprs = dashboard_expressions()
>>> any("segstream_events_total" in e for _, e in exprs)
True
>>> sorted(metric_names('sum by (le) (rate(x_bucket{a="b(c)"}[$__rate_interval])) / on() y offset 5m'))
['x_bucket', 'y']
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator
from schemas.errors import ConfigurationError

MONITORING = Path(__file__).resolve().parent
DEFAULT_DASHBOARD = MONITORING / "grafana" / "dashboards" / "segstream.json"
DEFAULT_ALERTS = MONITORING / "prometheus" / "alerts.yml"
DEFAULT_ALERTS_TEST = MONITORING / "prometheus" / "alerts_test.yml"
DEFAULT_PROMETHEUS_CONFIG = MONITORING / "prometheus" / "prometheus.yml"
DEFAULT_DATASOURCES = MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml"


def load_yaml(path: str | Path) -> Any:
    """Parse a YAML file (PyYAML's safe loader)."""
    try:
        import yaml
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("reading the Prometheus/Grafana YAML files needs PyYAML (pip install pyyaml)") from exc
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def iter_panels(panels: list[dict]) -> Iterator[dict]:
    """Every panel, depth first, including those nested in (collapsed) rows."""
    for panel in panels or []:
        yield panel
        yield from iter_panels(panel.get("panels") or [])


def load_dashboard(path: str | Path = DEFAULT_DASHBOARD) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dashboard_expressions(path: str | Path = DEFAULT_DASHBOARD) -> list[tuple[str, str]]:
    """(panel title, PromQL expression) of every target of every panel, in dashboard order.

    The expressions are as Grafana stores them, with its macros (``$__rate_interval``...): pass
    them through :func:`grafana_to_promql` before sending them to Prometheus."""
    dashboard = load_dashboard(path)
    return [(panel.get("title", ""), target["expr"])
            for panel in iter_panels(dashboard.get("panels", []))
            for target in panel.get("targets") or []
            if target.get("expr")]


def alert_rules(path: str | Path = DEFAULT_ALERTS) -> list[dict]:
    """Every alerting rule of the rule file: name, expr, for (None if absent), labels, annotations,
    and the group it belongs to."""
    doc = load_yaml(path) or {}
    rules = []
    for group in doc.get("groups") or []:
        for rule in group.get("rules") or []:
            if "alert" not in rule:
                continue  # a recording rule
            rules.append({
                "name": rule["alert"],
                "expr": str(rule["expr"]).strip(),
                "for": rule.get("for"),
                "labels": dict(rule.get("labels") or {}),
                "annotations": dict(rule.get("annotations") or {}),
                "group": group.get("name"),
            })
    return rules


#: Grafana's interval macros and what a plain Prometheus query can use instead.
GRAFANA_MACROS = ("$__rate_interval", "$__interval_ms", "$__interval", "$__range_ms", "$__range_s", "$__range")


def grafana_to_promql(expr: str, rate_interval: str = "1m", interval: str = "15s", range_: str = "1h") -> str:
    """Replace Grafana's macros by fixed durations, so that Prometheus can evaluate the query."""
    seconds = {"s": 1, "m": 60, "h": 3600, "d": 86400}

    def secs(duration: str) -> int:
        m = re.fullmatch(r"(\d+)([smhd])", duration)
        if not m:
            raise ConfigurationError(f"expected a duration like 15s, 1m, 1h: {duration!r}")
        return int(m.group(1)) * seconds[m.group(2)]

    out = expr
    for macro, value in (("$__rate_interval", rate_interval), ("$__interval_ms", str(secs(interval) * 1000)),
                         ("$__interval", interval), ("$__range_ms", str(secs(range_) * 1000)),
                         ("$__range_s", str(secs(range_))), ("$__range", range_)):
        out = out.replace("${" + macro[1:] + "}", value).replace(macro, value)
    return out


_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset", "bool",
    "inf", "nan", "atan2", "start", "end",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(?!\w)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a lexical approximation that is exact for
    the expressions of this repository: no ``{__name__=...}`` selectors)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = re.sub(r"\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?", " ", text)  # numbers, durations
    names = set()
    for m in _IDENT.finditer(text):
        name, call = m.group(1), m.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names
