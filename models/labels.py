"""Segment labels whose every word is backed by an absolute figure of the segment, stable per id.

A word is **said** of a segment only when three things hold:

1. the segment is distinctive on the word's feature (centroid at least ``min_z`` standard
   deviations from the population mean, in the word's direction; NPS bands for satisfaction),
   so that a label tells segments apart;
2. the word's rule in :data:`WORDS` holds on the segment's absolute figures
   (:class:`~models.figures.SegmentFigures`: medians of the members' raw features), so that the
   word is literally true: "new" is never said of a segment whose members first bought 480 days
   ago, whatever its z-score; and
3. the word's figure differs **materially** from the population's median, in the word's
   direction (:func:`material`), so that the word names what sets the segment apart: "lapsed"
   is not said of a segment at 480 days since the last purchase when the population's median is
   474. On figures with a ratio scale (days, money, counts of purchase days, actions, tickets) the
   segment's figure must be at least :data:`MATERIAL_FACTOR` (1.5) times the population median
   (high words) or at most 1 / 1.5 of it (low words), **and** at least :data:`MATERIAL_GAP` of
   the feature's unit away from it (which rules out figures at or near 0 on both sides); on
   bounded figures (P(alive), NPS) it must be at least :data:`MATERIAL_GAP` away (0.2 of
   probability, 1 NPS point). The figure compared is the one the description quotes (mean CLV for
   "high value", else the median). "no purchase yet" is a status, not a distinction: it says why
   the segment has no purchase word, and needs only fewer than half of the members to have bought.

A label, once given to an id, is **kept** by the next versions as long as every word of it is
still backed by the segment's figures (rules 2 and 3): the wording changes only when the segment
itself changed, not when another feature's z-score overtakes it. Rule 3 has hysteresis there: a
word already in the id's label stays while its figure is at least :data:`KEEP_SHARE` (half) of
the material distance from the population median (1.25 times it, half the gap), so a figure near
the threshold does not make the wording flap between versions. The words of each label are kept in
the segment's statistics (``words``) so the next training can check them.

>>> from models.figures import PopulationFigures, SegmentFigures
>>> pop = PopulationFigures(p25={"value": 5.0}, median={"value": 20.0, "tenure": 200.0, "recency": 474.0},
...     p75={"value": 60.0})
>>> old = SegmentFigures(members=100, buyers_share=1.0, nps_answered_share=0.0,
...     median={"tenure": 480.0, "recency": 480.0, "value": 1.0}, mean_clv=1.0)
>>> backed("new", old, pop), backed("high value", old, pop), backed("long-standing", old, pop)
(False, False, True)
>>> backed("lapsed", old, pop)  # 480 days is lapsed, but so is the population (median 474)
False
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Callable

import numpy as np

from models.features import FEATURES, PURCHASE_FEATURES
from models.figures import PopulationFigures, SegmentFigures, format_figure

__all__ = ["Word", "WORDS", "backed", "material", "quoted", "choose_words", "describe_words", "render", "stable_labels",
           "TYPICAL", "NO_PURCHASE", "MATERIAL_FACTOR", "MATERIAL_GAP", "KEEP_SHARE"]

TYPICAL = "typical"
EMPTY = "no members in the training sample"  # a word about nobody would be false
NO_PURCHASE = "no purchase yet"
#: Purchase words need most members to have bought (their medians are over buyers only).
MIN_BUYERS_SHARE = 0.5
#: NPS words need most members to have answered.
MIN_ANSWERED_SHARE = 0.5

# ---- rule 3: the word's figure differs materially from the population median -------------------
#: Ratio-scale figures: a high word needs the segment's figure ≥ this times the population median,
#: a low word ≤ the population median divided by it.
MATERIAL_FACTOR = 1.5
#: Every figure: the least difference from the population median, in the feature's unit (days,
#: base currency, repeat purchase days, decayed actions or tickets, probability, NPS points). On a
#: ratio scale it keeps a median of 0 from being "1.5 times" another 0.
MATERIAL_GAP: dict[str, float] = {
    "value": 1.0, "order_value": 1.0, "frequency": 1.0, "recency": 14.0, "tenure": 14.0,
    "engagement": 0.5, "cost_to_serve": 0.5, "p_alive": 0.2, "satisfaction": 1.0,
}
#: Bounded figures (no ratio scale): only the gap applies.
BOUNDED = frozenset({"p_alive", "satisfaction"})
#: Hysteresis for a word already in an id's label: kept while its figure is at least this share of
#: the material distance away (factor 1 + (1.5 - 1) x 0.5 = 1.25, half the gap).
KEEP_SHARE = 0.5

Rule = Callable[[SegmentFigures, PopulationFigures], bool]


def _le(feature: str, bound: Callable[[PopulationFigures], float | None]) -> Rule:
    def rule(f: SegmentFigures, pop: PopulationFigures) -> bool:
        v, b = f.median.get(feature), bound(pop)
        return v is not None and b is not None and v <= b
    return rule


def _ge(feature: str, bound: Callable[[PopulationFigures], float | None]) -> Rule:
    def rule(f: SegmentFigures, pop: PopulationFigures) -> bool:
        v, b = f.median.get(feature), bound(pop)
        return v is not None and b is not None and v >= b
    return rule


def _const(x: float) -> Callable[[PopulationFigures], float]:
    return lambda pop: x


def _at_least(x: float, quartile: str, feature: str) -> Callable[[PopulationFigures], float | None]:
    """max(x, the population's quartile): above the crowd *and* above an absolute floor."""
    def bound(pop: PopulationFigures) -> float | None:
        q = getattr(pop, quartile).get(feature)
        return max(x, q) if q is not None else None
    return bound


def _at_most(x: float, quartile: str, feature: str) -> Callable[[PopulationFigures], float | None]:
    def bound(pop: PopulationFigures) -> float | None:
        q = getattr(pop, quartile).get(feature)
        return min(x, q) if q is not None else None
    return bound


def _all(*rules: Rule) -> Rule:
    return lambda f, pop: all(r(f, pop) for r in rules)


def _high_value(f: SegmentFigures, pop: PopulationFigures) -> bool:
    p75 = pop.p75.get("value")
    return f.mean_clv is not None and p75 is not None and f.mean_clv > max(p75, 0.0)


@dataclass(frozen=True)
class Word:
    word: str
    feature: str
    direction: int  # +1: said of segments high on the feature, -1: low
    rule: Rule
    doc: str  # rule 2 in words (docs/segmentation.md has the same table)

    @property
    def apart_doc(self) -> str:
        """Rule 3 in words, against the population median m (the table's last column).

        >>> [w.apart_doc for w in WORDS if w.word in ("lapsed", "churn risk")]
        ['≥ 1.5 m and ≥ m + 14', '≤ m - 0.2']
        """
        gap, high = f"{MATERIAL_GAP[self.feature]:g}", self.direction > 0
        if self.feature in BOUNDED:
            return f"≥ m + {gap}" if high else f"≤ m - {gap}"
        return (f"≥ {MATERIAL_FACTOR:g} m and ≥ m + {gap}" if high
                else f"≤ m / {MATERIAL_FACTOR:g} and ≤ m - {gap}")


#: Every word a cluster label may contain, with the figure that must back it.
WORDS: tuple[Word, ...] = (
    Word("high value", "value", +1, _high_value,
         "mean CLV > population 75th percentile of CLV, and > 0"),
    Word("low value", "value", -1, _le("value", lambda p: p.p25.get("value")),
         "median CLV ≤ population 25th percentile"),
    Word("frequent", "frequency", +1, _ge("frequency", _at_least(2.0, "p75", "frequency")),
         "median repeat purchase days ≥ max(2, population 75th percentile)"),
    Word("infrequent", "frequency", -1, _le("frequency", _const(1.0)),
         "median repeat purchase days ≤ 1"),
    Word("recent", "recency", -1, _le("recency", _const(30.0)),
         "median days since last purchase ≤ 30"),
    Word("lapsed", "recency", +1, _ge("recency", _const(180.0)),
         "median days since last purchase ≥ 180"),
    # BG/NBD gives a customer with no repeat purchase P(alive) = 1 by construction (no evidence of
    # dropout), so "likely active" also needs repeat buyers.
    Word("likely active", "p_alive", +1,
         _all(_ge("p_alive", _const(0.8)), _ge("frequency", _const(1.0)), _le("recency", _const(180.0))),
         "median P(alive) ≥ 0.8, median repeat purchase days ≥ 1 and median days since last purchase ≤ 180"),
    Word("churn risk", "p_alive", -1, _le("p_alive", _const(0.5)), "median P(alive) ≤ 0.5"),
    Word("big baskets", "order_value", +1, _ge("order_value", lambda p: p.p75.get("order_value")),
         "median average order ≥ population 75th percentile"),
    Word("small baskets", "order_value", -1, _le("order_value", lambda p: p.p25.get("order_value")),
         "median average order ≤ population 25th percentile"),
    Word("engaged", "engagement", +1, _ge("engagement", _at_least(1.0, "p75", "engagement")),
         "median decayed engagement ≥ max(1 action, population 75th percentile)"),
    Word("disengaged", "engagement", -1, _le("engagement", _at_most(0.5, "p25", "engagement")),
         "median decayed engagement ≤ min(0.5 action, population 25th percentile)"),
    Word("promoter", "satisfaction", +1, _ge("satisfaction", _const(9.0)),
         "≥ 50 % of members answered NPS, and their median NPS ≥ 9"),
    Word("detractor", "satisfaction", -1, _le("satisfaction", _const(6.0)),
         "≥ 50 % of members answered NPS, and their median NPS ≤ 6"),
    Word("costly to serve", "cost_to_serve", +1, _ge("cost_to_serve", _at_least(1.0, "p75", "cost_to_serve")),
         "median decayed service load ≥ max(1 ticket, population 75th percentile)"),
    Word("long-standing", "tenure", +1, _ge("tenure", _const(365.0)),
         "median days since first purchase ≥ 365"),
    Word("new", "tenure", -1, _le("tenure", _const(90.0)), "median days since first purchase ≤ 90"),
)
_BY_WORD = {w.word: w for w in WORDS}


def quoted(w: Word, figures: SegmentFigures) -> float | None:
    """The segment's figure behind ``w``, the one its description quotes: mean CLV (over buyers)
    for "high value", else the median of the feature."""
    return figures.mean_clv if w.feature == "value" and w.direction > 0 else figures.median.get(w.feature)


def material(feature: str, direction: int, value: float | None, population: PopulationFigures,
             keeping: bool = False) -> bool:
    """Whether a segment's figure ``value`` (feature units) differs materially from the population
    median of ``feature`` in ``direction`` (+1: above, -1: below): rule 3 of the module doc.

    ``keeping``: the word is already in the id's label (hysteresis: :data:`KEEP_SHARE` of the
    distance). False when either figure is missing.

    >>> pop = PopulationFigures(p25={}, median={"recency": 474.0, "engagement": 0.0, "p_alive": 0.9}, p75={})
    >>> material("recency", +1, 480.0, pop), material("recency", +1, 720.0, pop)
    (False, True)
    >>> material("recency", +1, 600.0, pop), material("recency", +1, 600.0, pop, keeping=True)
    (False, True)
    >>> material("engagement", -1, 0.0, pop), material("engagement", +1, 0.3, pop), material("p_alive", -1, 0.6, pop)
    (False, False, True)
    """
    m = population.median.get(feature)
    if value is None or m is None:
        return False
    share = KEEP_SHARE if keeping else 1.0
    gap = MATERIAL_GAP[feature] * share
    if direction * (value - m) < gap:
        return False
    if feature in BOUNDED:
        return True
    factor = 1.0 + (MATERIAL_FACTOR - 1.0) * share
    return value >= m * factor if direction > 0 else value * factor <= m


def backed(word: str, figures: SegmentFigures, population: PopulationFigures, keeping: bool = False) -> bool:
    """Whether the segment's figures back ``word``: its rule in :data:`WORDS` holds and its figure
    differs materially from the population's (:func:`material`; ``keeping``: the word is already in
    the id's label, with hysteresis). An unknown word (from an older version's vocabulary) is not
    backed."""
    if word == NO_PURCHASE:
        return figures.buyers_share < MIN_BUYERS_SHARE
    if word == EMPTY:
        return figures.members == 0
    w = _BY_WORD.get(word)
    if w is None:
        return False
    if w.feature in PURCHASE_FEATURES and figures.buyers_share < MIN_BUYERS_SHARE:
        return False
    if w.feature == "satisfaction" and figures.nps_answered_share < MIN_ANSWERED_SHARE:
        return False
    return bool(w.rule(figures, population)) and material(w.feature, w.direction, quoted(w, figures),
                                                          population, keeping)


def _strength(w: Word, z: np.ndarray, figures: SegmentFigures) -> float:
    """How far the segment stands out in the word's direction (std units; NPS: bands of 1.5)."""
    if w.feature == "satisfaction":
        nps = figures.median.get("satisfaction")
        return (w.direction * (nps - 7.5) / 1.5) if nps is not None else 0.0
    return w.direction * float(z[FEATURES.index(w.feature)])


def choose_words(z: np.ndarray, figures: SegmentFigures, population: PopulationFigures,
                 max_terms: int = 4, min_z: float = 0.5) -> list[str]:
    """The segment's most distinctive words that its figures back, most distinctive first.

    ``z`` is the centroid (len(FEATURES), standard deviations from the population mean).
    """
    if figures.members == 0:
        return [EMPTY]
    if figures.buyers_share < MIN_BUYERS_SHARE:
        head = [NO_PURCHASE]
    else:
        head = []
    scored = [(s, w.word) for w in WORDS if (s := _strength(w, z, figures)) >= min_z
              and backed(w.word, figures, population)]
    scored.sort(key=lambda t: -t[0])
    return head + [word for _, word in scored][: max_terms - len(head)]


def render(words: list[str]) -> str:
    return " · ".join(words) if words else TYPICAL


def describe_words(words: list[str], figures: SegmentFigures, population: PopulationFigures) -> str:
    """Each word with the figure that backs it, e.g. 'new (median days since first purchase 45)'."""
    if not words:
        return "no feature on which the segment both stands out and has a figure to back a word"
    if words == [EMPTY]:
        return "no customer of the training sample is nearest to this segment: no figure to describe"
    parts = []
    for word in words:
        if word == NO_PURCHASE:
            parts.append(f"{word} ({figures.buyers_share:.0%} of members bought)")
            continue
        w = _BY_WORD[word]
        v = quoted(w, figures)
        if w.feature == "value" and w.direction > 0:  # a mean CLV, judged against the 75th percentile
            stat, against, bound = "mean", "population 75th percentile", population.p75.get(w.feature)
        else:  # a median, against the population's median (like with like)
            stat, against, bound = "median", "population median", population.median.get(w.feature)
        typical = format_figure(w.feature, bound, population.currency, with_name=False)
        parts.append(f"{word} ({stat} {format_figure(w.feature, v, population.currency)}; {against} {typical})")
    return "; ".join(parts)


def stable_labels(ids: list[str], fresh: list[list[str]], figures: list[SegmentFigures],
                  population: PopulationFigures, previous: dict[str, tuple[str, list[str] | None]]
                  ) -> tuple[list[str], list[list[str]]]:
    """(label, words) of each segment: the previous label of the id when its figures still back
    every word of it (rule 3 with hysteresis: ``backed(..., keeping=True)``), else the fresh
    words; labels made unique with the id.

    ``previous`` maps a segment id to (label, words) from the previous snapshot (words None for a
    snapshot from before words were kept: its label is then replaced).

    >>> from models.figures import PopulationFigures, SegmentFigures
    >>> pop = PopulationFigures(p25={}, median={"recency": 60.0}, p75={})
    >>> f = SegmentFigures(members=9, buyers_share=1.0, nps_answered_share=0.0, median={"recency": 12.0})
    >>> stable_labels(["c1"], [["lapsed"]], [f], pop, {"c1": ("recent", ["recent"])})
    (['recent'], [['recent']])
    """
    words: list[list[str]] = []
    labels: list[str] = []
    kept: list[bool] = []
    for sid, new_words, fig in zip(ids, fresh, figures):
        label, old_words = previous.get(sid, (None, None))
        keep = (old_words is not None and label is not None
                and (all(backed(w, fig, population, keeping=True) for w in old_words)
                     if old_words else not new_words))
        words.append(list(old_words) if keep else list(new_words))
        labels.append(label if keep else render(new_words))
        kept.append(keep)
    return _unique(labels, ids, kept), words


def _unique(labels: list[str], ids: list[str], kept: list[bool]) -> list[str]:
    """A label shared by several segments gets the id appended, except on a kept label (unique
    when it was given, so the newcomer yields). Labels with the same words in another order are
    the same label ("frequent · high value" and "high value · frequent" tell nobody which is which).

    >>> _unique(["frequent · high value", "high value · frequent", "churn risk"], ["c3", "c5", "c6"],
    ...         [True, False, False])
    ['frequent · high value', 'high value · frequent (c5)', 'churn risk']
    """
    words = [_words_of(label, sid) for label, sid in zip(labels, ids)]
    seen = Counter(words)
    out = []
    for label, w, sid, keep in zip(labels, words, ids, kept):
        clash = seen[w] > 1 and not (keep and sum(k for w2, k in zip(words, kept) if w2 == w) == 1)
        out.append(f"{label} ({sid})" if clash and not label.endswith(f"({sid})") else label)
    return out


def _words_of(label: str, sid: str) -> frozenset[str]:
    """The words of a label, in any order, without the id a clash appended."""
    return frozenset(label.removesuffix(f" ({sid})").split(" · "))
