"""Absolute figures of a segment and of the population: what labels, statistics and drivers quote.

A centroid in standard deviations says how a segment differs, not what it is: "+1.2 sd of
recency" can be 30 days or 12,000. The figures here are medians of the members' **raw**
features (days, currency, NPS points), each over the members for whom the feature exists:

* purchase features (:data:`~models.features.PURCHASE_FEATURES`: CLV, repeat purchase days,
  days since last / first purchase, P(alive), average order) over the members who bought: a
  never-buyer's 1000 "days since last purchase" is a placeholder, not a figure;
* NPS over the members who answered a survey (the feature holds a neutral 7 for the others);
* engagement and service load over every member (no action is a real 0).

A figure with no member to compute it from is None, never 0.

>>> import numpy as np
>>> from models.features import FEATURES
>>> raw = np.zeros((4, len(FEATURES)))
>>> raw[:, FEATURES.index("recency")] = [10, 20, 30, 1000]
>>> f = figures_of(raw, bought=np.array([True, True, True, False]), answered=np.zeros(4, bool))
>>> f.median["recency"], f.buyers_share, f.median["satisfaction"]
(20.0, 0.75, None)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.features import FEATURES, PURCHASE_FEATURES

__all__ = ["SegmentFigures", "PopulationFigures", "figures_of", "population_figures", "format_figure",
           "figure_meanings", "shown_figure"]


def _subset(raw: np.ndarray, bought: np.ndarray, answered: np.ndarray, feature: str) -> np.ndarray:
    """The values of ``feature`` over the rows for which it exists."""
    column = raw[:, FEATURES.index(feature)]
    if feature in PURCHASE_FEATURES:
        return column[bought]
    if feature == "satisfaction":
        return column[answered]
    return column


def _stat(values: np.ndarray, q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


@dataclass(frozen=True)
class SegmentFigures:
    """Medians of a group of customers' raw features (None where no member has the figure)."""

    members: int
    buyers_share: float  # members who bought at least once
    nps_answered_share: float  # members who answered an NPS survey
    median: dict[str, float | None] = field(default_factory=dict)  # feature -> raw median
    mean_clv: float | None = None  # over buyers (base currency)

    def to_dict(self) -> dict[str, Any]:
        return {"members": self.members, "buyers_share": round(self.buyers_share, 3),
                "nps_answered_share": round(self.nps_answered_share, 3),
                "mean_clv": _round(self.mean_clv), "median": {k: _round(v) for k, v in self.median.items()}}


@dataclass(frozen=True)
class PopulationFigures:
    """Quartiles of every raw feature over the training sample, each over the customers who have it."""

    p25: dict[str, float | None]
    median: dict[str, float | None]
    p75: dict[str, float | None]
    currency: str = "USD"

    def to_dict(self) -> dict[str, Any]:
        return {"currency": self.currency, "p25": {k: _round(v) for k, v in self.p25.items()},
                "median": {k: _round(v) for k, v in self.median.items()},
                "p75": {k: _round(v) for k, v in self.p75.items()}}

    @classmethod
    def from_dict(cls, doc: dict[str, Any] | None) -> "PopulationFigures | None":
        if not doc:
            return None
        return cls(p25=doc.get("p25", {}), median=doc.get("median", {}), p75=doc.get("p75", {}),
                   currency=doc.get("currency", "USD"))


def figures_of(raw: np.ndarray, bought: np.ndarray, answered: np.ndarray) -> SegmentFigures:
    """Figures of the customers in ``raw`` (n x len(FEATURES), feature units; see
    :func:`models.features.raw_matrix`); ``bought`` and ``answered`` are boolean masks (n)."""
    n = len(raw)
    clv = _subset(raw, bought, answered, "value")
    return SegmentFigures(
        members=n,
        buyers_share=float(bought.mean()) if n else 0.0,
        nps_answered_share=float(answered.mean()) if n else 0.0,
        median={f: _stat(_subset(raw, bought, answered, f), 0.5) for f in FEATURES},
        mean_clv=float(clv.mean()) if len(clv) else None,
    )


def population_figures(raw: np.ndarray, bought: np.ndarray, answered: np.ndarray,
                       currency: str = "USD") -> PopulationFigures:
    """Quartiles (numpy's linear-interpolation quantiles) of each raw feature over the sample."""
    cols = {f: _subset(raw, bought, answered, f) for f in FEATURES}
    return PopulationFigures(p25={f: _stat(v, 0.25) for f, v in cols.items()},
                             median={f: _stat(v, 0.5) for f, v in cols.items()},
                             p75={f: _stat(v, 0.75) for f, v in cols.items()}, currency=currency)


#: How a marketer reads each feature: (name, unit; "$" = the base currency, decimals).
_READ: dict[str, tuple[str, str, int]] = {
    "value": ("CLV", "$", 0),
    "frequency": ("repeat purchase days", "", 0),
    "recency": ("days since last purchase", "", 0),
    "p_alive": ("P(alive)", "", 2),
    "order_value": ("average order", "$", 0),
    "engagement": ("engagement actions (decayed)", "", 1),
    "satisfaction": ("NPS", "", 1),
    "cost_to_serve": ("service load (decayed tickets)", "", 1),
    "tenure": ("days since first purchase", "", 0),
}


def format_figure(feature: str, value: float | None, currency: str = "USD", with_name: bool = True) -> str:
    """A raw figure as a marketer reads it.

    >>> format_figure("value", 812.4), format_figure("recency", 12.2, with_name=False)
    ('CLV 812 USD', '12')
    """
    name, unit, decimals = _READ[feature]
    if value is None:
        text = "unknown"
    else:
        text = f"{value:,.{decimals}f}" + (f" {currency}" if unit == "$" else "")
    return f"{name} {text}" if with_name else text


def figure_meanings() -> dict[str, str]:
    """What each figure is (the keys of ``median``, ``p25`` and ``p75``: the features' names),
    for ``GET /segments``. Its ``recency`` is RFM recency, days since the last purchase, not the
    BTYD recency of a customer profile (days from the first to the last purchase day).

    >>> figure_meanings()["recency"]
    'days since last purchase (RFM recency)'
    >>> figure_meanings()["value"]
    'CLV (base currency)'
    """
    notes = {"recency": " (RFM recency)", "frequency": " (BTYD frequency)", "satisfaction": " score (0-10, decayed)",
             # BG/NBD (Fader, Hardie & Lee 2005): a customer can only drop out after a repeat purchase
             "p_alive": " (BG/NBD; 1.00 for a customer who never bought again after the first purchase: the model "
                        "lets customers drop out only after a repeat purchase, so one-time buyers read as alive)"}
    return {feature: name + (" (base currency)" if unit == "$" else "") + notes.get(feature, "")
            for feature, (name, unit, _) in _READ.items()}


def shown_figure(feature: str, value: float | None) -> float | None:
    """``value`` as :func:`format_figure` shows it (rounded to its decimals): what a reader of the
    text compares, so that a claim made by quoted figures is checked on the quoted figures.

    >>> shown_figure("recency", 29.6), shown_figure("p_alive", 0.996), shown_figure("value", None)
    (30.0, 1.0, None)
    """
    return round(float(value), _READ[feature][2]) if value is not None else None


def _round(value: float | None) -> float | None:
    return round(float(value), 3) if value is not None else None
