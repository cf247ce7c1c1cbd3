"""A seeded synthetic customer population with known personas, emitting contract events.

Used to test segmentation against ground truth and to produce large replay and benchmark inputs.
Each persona is a behaviour: how often a customer buys, how much, whether they stopped, how they
engage and what they say. Everything is drawn from one ``numpy`` generator, so a seed gives the
same events on every machine.

>>> pop = generate_population(customers=60, seed=7, end=1_767_225_600.0)
>>> len(pop.personas), sorted(set(pop.personas.values()))[:2]
(60, ['at_risk', 'bargain'])
>>> pop.events[0]["type"] in {"purchase", "engagement", "feedback"}
True
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, Iterator

import numpy as np

DAY = 86_400.0


@dataclass(frozen=True)
class Persona:
    name: str
    share: float
    purchase_gap_days: float | None  # mean days between purchases; None = never buys
    spend_mean: float
    active_until_days_ago: tuple[float, float]  # stopped buying between these many days before the end
    history_days: tuple[float, float]  # first activity this many days before the end
    engagement_per_week: float
    nps: tuple[int, int]  # inclusive score range
    complaint_rate: float  # complaints per purchase
    actions: tuple[str, ...] = ("page_view", "product_view")
    channel: str = "web"


PERSONAS: tuple[Persona, ...] = (
    Persona("champion", 0.15, 9, 140, (0, 5), (400, 700), 6, (9, 10), 0.0,
            ("product_view", "add_to_cart", "email_click", "social_share", "referral"), "mobile_app"),
    Persona("loyal", 0.25, 30, 55, (0, 20), (300, 700), 2, (7, 8), 0.02,
            ("page_view", "email_open", "product_view"), "email"),
    Persona("new", 0.15, 25, 60, (0, 10), (10, 45), 3, (7, 9), 0.0,
            ("page_view", "product_view", "app_session"), "mobile_app"),
    Persona("at_risk", 0.20, 14, 95, (150, 260), (450, 700), 0.3, (0, 4), 0.25,
            ("page_view",), "web"),
    Persona("bargain", 0.15, 80, 14, (0, 40), (300, 700), 0.7, (5, 7), 0.05,
            ("search", "page_view"), "web"),
    Persona("browser", 0.10, None, 0, (0, 10), (60, 400), 9, (6, 8), 0.0,
            ("page_view", "product_view", "search", "wishlist_add"), "web"),
)


#: Five well-separated personas in equal shares with one year of history, for stability
#: measurements: four never change behaviour (champion, loyal, bargain, browser: no complaints, so
#: service load is at_risk's alone, and active until the end, where the general personas stop
#: 0-40 days before it); ``at_risk`` stops buying 150-260 days before the end, a real, time-driven
#: change.
STABLE_YEAR: tuple[Persona, ...] = tuple(
    replace(p, history_days=(330.0, 365.0), share=1.0,
            complaint_rate=p.complaint_rate if p.name == "at_risk" else 0.0,
            active_until_days_ago=p.active_until_days_ago if p.name == "at_risk" else (0.0, 0.0))
    for p in PERSONAS if p.name in ("champion", "loyal", "bargain", "browser", "at_risk")
)


@dataclass
class Population:
    events: list[dict[str, Any]]
    personas: dict[str, str]  # customer_id -> persona name
    end: float  # epoch seconds of the last possible event

    @property
    def end_iso(self) -> str:
        return datetime.fromtimestamp(self.end, timezone.utc).isoformat()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(round(ts), timezone.utc).isoformat()


@dataclass
class _Emitter:
    customer_id: str
    events: list[dict[str, Any]] = field(default_factory=list)

    def emit(self, etype: str, ts: float, **fields: Any) -> None:
        n = len(self.events)
        self.events.append({"type": etype, "event_id": f"{self.customer_id}-{etype[0]}{n}",
                            "customer_id": self.customer_id, "timestamp": _iso(ts), **fields})


def _customer_events(customer_id: str, p: Persona, end: float, rng: np.random.Generator,
                     activity: float) -> list[dict[str, Any]]:
    out = _Emitter(customer_id)
    start = end - rng.uniform(*p.history_days) * DAY
    stop = end - rng.uniform(*p.active_until_days_ago) * DAY
    stop = max(stop, start + DAY)
    purchases = 0
    if p.purchase_gap_days is not None:
        gap = p.purchase_gap_days / activity
        t = start
        while t <= stop:
            amount = float(np.round(rng.gamma(4.0, p.spend_mean / 4.0), 2))
            out.emit("purchase", t, amount=amount, currency="USD", quantity=int(rng.integers(1, 4)),
                     channel=p.channel, order_id=f"{customer_id}-o{purchases}")
            purchases += 1
            if rng.random() < p.complaint_rate:
                out.emit("feedback", t + rng.uniform(1, 5) * DAY if t + 5 * DAY < end else t, kind="complaint")
            t += (rng.exponential(gap) + 0.5) * DAY
    # Engagement keeps going until the customer's stop time (lapsed customers go quiet too).
    weeks = (stop - start) / (7 * DAY)
    n_engagements = int(rng.poisson(p.engagement_per_week * activity * max(weeks, 0.1)))
    for ts in np.sort(rng.uniform(start, stop, n_engagements)):
        out.emit("engagement", float(ts), action=str(rng.choice(p.actions)), channel=p.channel)
    for ts in rng.uniform(start, min(stop + 30 * DAY, end), int(rng.integers(1, 3))):
        out.emit("feedback", float(ts), kind="nps", score=int(rng.integers(p.nps[0], p.nps[1] + 1)))
    return out.events


def generate_population(customers: int, seed: int = 42, end: float | None = None,
                        activity: float = 1.0, personas: tuple[Persona, ...] = PERSONAS) -> Population:
    """``customers`` customers split across ``personas`` by share; events sorted by time.

    ``activity`` scales purchase and engagement rates (more events per customer).
    """
    rng = np.random.default_rng(seed)
    end = end if end is not None else datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    shares = np.array([p.share for p in personas])
    assignment = rng.choice(len(personas), size=customers, p=shares / shares.sum())
    events: list[dict[str, Any]] = []
    truth: dict[str, str] = {}
    for i, k in enumerate(assignment):
        cid = f"cust-{i:07d}"
        truth[cid] = personas[k].name
        events.extend(_customer_events(cid, personas[k], end, rng, activity))
    events.sort(key=lambda e: e["timestamp"])
    return Population(events=events, personas=truth, end=end)


def iter_jsonl(events: list[dict[str, Any]]) -> Iterator[bytes]:
    import orjson

    for e in events:
        yield orjson.dumps(e) + b"\n"
