"""A seeded synthetic customer population with known personas, emitting contract events.

Used to test segmentation against ground truth and to produce large replay and benchmark inputs.
Each persona is a behaviour: how often a customer buys, how much, whether they stopped, how they
engage and what they say. Everything is drawn from ``numpy`` generators seeded by ``seed``, so a
seed gives the same events on every machine.

With ``profiles=True`` every customer also has profile events (``type="profile"``): one near their
first activity with their traits, for some a later update (moved house, withdrew or gave
consent), and now and then a resend of one of them (the same ``event_id``: applied once). The
traits go with the persona (:data:`PERSONA_TRAITS`: champions older, richer and more often
consenting to email; bargain hunters younger and poorer; ...), a share of customers are businesses
(industry, company size), and every customer has an acquisition channel, campaign and cost, the
cost depending on the channel (:data:`ACQUISITION_COST_USD`). They are drawn from a generator of
their own: the behaviour events are exactly those of ``profiles=False``, and
:attr:`Population.traits` is every customer's final traits (the ground truth).

>>> pop = generate_population(customers=60, seed=7, end=1_767_225_600.0)
>>> len(pop.personas), sorted(set(pop.personas.values()))[:2]
(60, ['at_risk', 'bargain'])
>>> pop.events[0]["type"] in {"purchase", "engagement", "feedback"}, pop.traits
(True, {})
>>> with_profiles = generate_population(customers=60, seed=7, end=1_767_225_600.0, profiles=True)
>>> [e for e in with_profiles.events if e["type"] != "profile"] == pop.events
True
>>> first = next(e for e in with_profiles.events if e["type"] == "profile")
>>> sorted(first)[:8]
['acquisition_campaign', 'acquisition_channel', 'acquisition_cost', 'birth_year', 'city', 'consent', 'country', 'customer_id']
>>> len(with_profiles.traits), with_profiles.traits[first["customer_id"]]["country"] == first["country"]
(60, True)
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
    #: customer_id -> the traits the customer's profile events leave in force, by trait name as the
    #: state and ``GET /customers/{id}`` name them (``consent_email``, ``acquisition_cost`` in USD,
    #: tag lists sorted): a trait never sent, or cleared by a null, is not there. Empty without profiles.
    traits: dict[str, dict[str, Any]] = field(default_factory=dict)

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


# ---- profiles: traits that go with the personas --------------------------------------------------

_TRAIT_STREAM = 0x7472616974  # "trait": the traits' generator is seeded with (seed, this)

#: Where customers live, by country: (ISO 3166-2 region, city, postal code, IANA time zone).
PLACES: dict[str, tuple[tuple[str, str, str, str], ...]] = {
    "US": (("US-NY", "New York", "10001", "America/New_York"), ("US-CA", "Los Angeles", "90012", "America/Los_Angeles"),
           ("US-IL", "Chicago", "60601", "America/Chicago"), ("US-TX", "Austin", "73301", "America/Chicago"),
           ("US-WA", "Seattle", "98101", "America/Los_Angeles")),
    "CA": (("CA-ON", "Toronto", "M5H 2N2", "America/Toronto"), ("CA-BC", "Vancouver", "V6B 1A1", "America/Vancouver")),
    "GB": (("GB-LND", "London", "EC1A 1BB", "Europe/London"), ("GB-MAN", "Manchester", "M1 1AE", "Europe/London"),
           ("GB-EDH", "Edinburgh", "EH1 1YZ", "Europe/London")),
    "DE": (("DE-BE", "Berlin", "10115", "Europe/Berlin"), ("DE-BY", "München", "80331", "Europe/Berlin"),
           ("DE-HH", "Hamburg", "20095", "Europe/Berlin"), ("DE-NW", "Köln", "50667", "Europe/Berlin")),
    "AT": (("AT-9", "Wien", "1010", "Europe/Vienna"), ("AT-6", "Graz", "8010", "Europe/Vienna")),
    "CH": (("CH-ZH", "Zürich", "8001", "Europe/Zurich"), ("CH-GE", "Genève", "1201", "Europe/Zurich")),
    "FR": (("FR-75C", "Paris", "75001", "Europe/Paris"), ("FR-69", "Lyon", "69001", "Europe/Paris")),
    "NL": (("NL-NH", "Amsterdam", "1012 AB", "Europe/Amsterdam"), ("NL-ZH", "Rotterdam", "3011 AA", "Europe/Amsterdam")),
}
COUNTRY_SHARES: dict[str, float] = {"US": 0.34, "CA": 0.08, "GB": 0.15, "DE": 0.17, "AT": 0.05, "CH": 0.05,
                                    "FR": 0.09, "NL": 0.07}
INCOME_BANDS = ("low", "lower_middle", "middle", "upper_middle", "high")
EDUCATION = ("primary", "secondary", "post_secondary", "bachelor", "master", "doctorate")
COMPANY_SIZES = ("micro", "small", "medium", "large", "enterprise")
INDUSTRIES = ("software", "retail", "manufacturing", "healthcare", "finance", "hospitality", "education", "logistics")
#: Mean cost of acquiring a customer through each channel, in USD (each cost is drawn around it).
ACQUISITION_COST_USD: dict[str, float] = {"organic_search": 4.0, "email": 8.0, "referral": 15.0, "affiliate": 22.0,
                                          "display": 30.0, "paid_social": 36.0, "paid_search": 48.0}
ACQUISITION_CHANNELS: tuple[str, ...] = tuple(ACQUISITION_COST_USD)


@dataclass(frozen=True)
class PersonaTraits:
    """How a persona's traits are drawn."""

    age: tuple[float, float]  # mean and sd of the age reached in the end's calendar year (clipped to 18-90)
    income: tuple[float, ...]  # weights of INCOME_BANDS, lowest first
    consent: tuple[float, float, float]  # P(consent given) for email, sms, push, when the channel was asked
    interests: tuple[str, ...]  # the pool a customer's interests are drawn from
    channels: tuple[float, ...]  # weights of ACQUISITION_CHANNELS
    business: float  # share of customers that are businesses (industry and company size known)
    withdraws: float  # P(a later update withdraws an email consent given)


#: The traits of each persona of :data:`PERSONAS` (another persona gets :data:`DEFAULT_TRAITS`).
#: Channel weights are in the order of :data:`ACQUISITION_CHANNELS` (organic_search, email,
#: referral, affiliate, display, paid_social, paid_search).
PERSONA_TRAITS: dict[str, PersonaTraits] = {
    "champion": PersonaTraits((50, 9), (0.03, 0.07, 0.20, 0.35, 0.35), (0.85, 0.30, 0.60),
                              ("travel", "gourmet", "wine", "tech", "fitness"), (3, 1, 4, 0.5, 0.5, 1, 2), 0.30, 0.03),
    "loyal": PersonaTraits((45, 11), (0.08, 0.17, 0.40, 0.25, 0.10), (0.70, 0.25, 0.35),
                           ("home", "gardening", "books", "cooking"), (3, 3, 2, 0.5, 0.5, 1, 2), 0.15, 0.05),
    "new": PersonaTraits((32, 8), (0.15, 0.25, 0.35, 0.18, 0.07), (0.60, 0.30, 0.55),
                         ("fashion", "tech", "fitness", "music"), (1, 0.5, 1, 1, 1, 4, 3), 0.10, 0.05),
    "at_risk": PersonaTraits((42, 12), (0.12, 0.23, 0.35, 0.20, 0.10), (0.50, 0.20, 0.25),
                             ("home", "books", "sports"), (1, 1, 0.5, 1, 3, 2, 3), 0.10, 0.35),
    "bargain": PersonaTraits((28, 7), (0.40, 0.35, 0.18, 0.05, 0.02), (0.35, 0.50, 0.30),
                             ("deals", "gaming", "diy", "fashion"), (1, 0.5, 0.5, 5, 1, 3, 1), 0.05, 0.10),
    "browser": PersonaTraits((24, 5), (0.30, 0.30, 0.25, 0.10, 0.05), (0.25, 0.15, 0.40),
                             ("tech", "gaming", "music", "fashion"), (4, 0.5, 1, 0.5, 2, 3, 1), 0.03, 0.08),
}
DEFAULT_TRAITS = PersonaTraits((40, 12), (0.2, 0.2, 0.2, 0.2, 0.2), (0.5, 0.25, 0.35),
                               ("home", "books", "tech", "travel"), (1, 1, 1, 1, 1, 1, 1), 0.10, 0.10)
LIFESTYLES = ("urban", "suburban", "rural", "outdoor", "homebody", "eco")
OCCUPATIONS = ("engineer", "teacher", "nurse", "sales", "designer", "manager", "retail", "craftsperson")
BUSINESS_OCCUPATIONS = ("founder", "manager", "buyer", "consultant", "engineer")


def _pick(rng: np.random.Generator, options: tuple[Any, ...], weights: tuple[float, ...] | None = None) -> Any:
    if weights is None:
        return options[int(rng.integers(len(options)))]
    w = np.asarray(weights, dtype=float)
    return options[int(rng.choice(len(options), p=w / w.sum()))]


def _initial_traits(persona: str, at: float, end: float, rng: np.random.Generator) -> dict[str, Any]:
    """A customer's first profile update (contract fields), drawn for ``persona``."""
    t = PERSONA_TRAITS.get(persona, DEFAULT_TRAITS)
    doc: dict[str, Any] = {}
    country = _pick(rng, tuple(COUNTRY_SHARES), tuple(COUNTRY_SHARES.values()))
    region, city, postal, zone = _pick(rng, PLACES[country])
    doc.update(country=country, region=region, city=city, time_zone=zone)
    if rng.random() < 0.8:
        doc["postal_code"] = postal
    age = int(np.clip(round(rng.normal(*t.age)), 18, 90))
    if rng.random() < 0.85:
        doc["birth_year"] = datetime.fromtimestamp(end, timezone.utc).year - age
    household = int(min(1 + rng.poisson(0.6 if age < 30 else 1.5), 20))
    if rng.random() < 0.6:
        doc["household_size"] = household
    income = int(rng.choice(len(INCOME_BANDS), p=np.asarray(t.income) / sum(t.income)))
    if rng.random() < 0.7:
        doc["income_band"] = INCOME_BANDS[income]
    if rng.random() < 0.6:  # education goes with income
        doc["education"] = EDUCATION[int(np.clip(income + 1 + rng.integers(-1, 2), 0, len(EDUCATION) - 1))]
    business = rng.random() < t.business
    if business:
        doc["industry"] = _pick(rng, INDUSTRIES)
        doc["company_size"] = _pick(rng, COMPANY_SIZES, (0.35, 0.30, 0.20, 0.10, 0.05))
        doc["occupation"] = _pick(rng, BUSINESS_OCCUPATIONS)
    elif rng.random() < 0.5:
        doc["occupation"] = "student" if age < 23 else "retired" if age >= 67 else _pick(rng, OCCUPATIONS)
    if rng.random() < 0.75:
        n = int(rng.integers(1, min(3, len(t.interests)) + 1))
        doc["interests"] = sorted(str(x) for x in rng.choice(t.interests, size=n, replace=False))
    if rng.random() < 0.5:
        styles = {_pick(rng, LIFESTYLES), "family" if household >= 3 else "single" if household == 1 else "couple"}
        doc["lifestyle"] = sorted(styles)
    channel = _pick(rng, ACQUISITION_CHANNELS, t.channels)
    day = datetime.fromtimestamp(at, timezone.utc)
    doc["acquisition_channel"] = channel
    if channel != "organic_search":
        doc["acquisition_campaign"] = f"{channel}-{day.year}q{(day.month - 1) // 3 + 1}"
    doc["acquisition_cost"] = float(np.round(rng.gamma(4.0, ACQUISITION_COST_USD[channel] / 4.0), 2))
    consent = {}
    for channel_name, p_asked, p_given in zip(("email", "sms", "push"), (0.9, 0.6, 0.6), t.consent):
        if rng.random() < p_asked:
            consent[channel_name] = bool(rng.random() < p_given)
    if consent:
        doc["consent"] = consent
    return doc


def _later_updates(persona: str, current: dict[str, Any], rng: np.random.Generator) -> list[dict[str, Any]]:
    """What some customers change later (contract fields of one update each): a move (a new
    place, now and then in another country; the postal code now and then unknown: cleared with
    null), an email consent withdrawn, a push consent given."""
    t = PERSONA_TRAITS.get(persona, DEFAULT_TRAITS)
    updates: list[dict[str, Any]] = []
    if rng.random() < 0.12:
        country = current["country"]
        if rng.random() < 0.2:
            country = _pick(rng, tuple(c for c in COUNTRY_SHARES if c != country))
        places = [p for p in PLACES[country] if p[1] != current["city"]]
        region, city, postal, zone = _pick(rng, tuple(places))
        updates.append({"country": country, "region": region, "city": city, "time_zone": zone,
                        "postal_code": postal if rng.random() < 0.7 else None})
    if current.get("consent", {}).get("email") is True and rng.random() < t.withdraws:
        updates.append({"consent": {"email": False}})
    if current.get("consent", {}).get("push") is not True and rng.random() < 0.1:
        updates.append({"consent": {"push": True}})
    return updates


def _as_traits(doc: dict[str, Any]) -> dict[str, Any]:
    """An update's contract fields under the state's trait names (consent per channel)."""
    out = {k: v for k, v in doc.items() if k != "consent"}
    out.update({f"consent_{c}": v for c, v in doc.get("consent", {}).items()})
    return out


def _profile_events(customer_id: str, persona: str, first: float, end: float,
                    rng: np.random.Generator) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A customer's profile events (the first up to two days before ``first``, their first
    activity; updates later, before ``end``; a few sent twice) and the traits they leave."""
    at = first - rng.uniform(0, 2 * DAY)
    initial = _initial_traits(persona, at, end, rng)
    # Updates at distinct whole seconds, a day or more after the first and before the end: the
    # latest always wins, with no tie to break.
    updates = _later_updates(persona, initial, rng) if at + 2 * DAY < end else []
    times = np.sort(rng.uniform(at + DAY, end - DAY, len(updates))).tolist()
    events: list[dict[str, Any]] = []
    traits: dict[str, Any] = {}
    for k, (ts, doc) in enumerate(zip([at, *times], [initial, *updates])):
        event = {"type": "profile", "event_id": f"{customer_id}-profile{k}", "customer_id": customer_id,
                 "timestamp": _iso(ts + k), **doc}
        events.append(event)
        if rng.random() < 0.04:  # a resend (a CDP retrying): the same event again
            events.append(dict(event))
        traits.update(_as_traits(doc))
    return events, {name: value for name, value in traits.items() if value is not None}


def generate_population(customers: int, seed: int = 42, end: float | None = None,
                        activity: float = 1.0, personas: tuple[Persona, ...] = PERSONAS,
                        profiles: bool = False) -> Population:
    """``customers`` customers split across ``personas`` by share; events sorted by time.

    ``activity`` scales purchase and engagement rates (more events per customer). ``profiles``
    adds each customer's profile events (see the module doc) without changing any other event.
    """
    rng = np.random.default_rng(seed)
    # The traits' own generator: drawing them leaves the behaviour's draws (and events) as they are.
    trait_rng = np.random.default_rng([seed, _TRAIT_STREAM]) if profiles else None
    end = end if end is not None else datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    shares = np.array([p.share for p in personas])
    assignment = rng.choice(len(personas), size=customers, p=shares / shares.sum())
    events: list[dict[str, Any]] = []
    truth: dict[str, str] = {}
    traits: dict[str, dict[str, Any]] = {}
    for i, k in enumerate(assignment):
        cid = f"cust-{i:07d}"
        truth[cid] = personas[k].name
        behaviour = _customer_events(cid, personas[k], end, rng, activity)
        events.extend(behaviour)
        if trait_rng is not None:
            first = datetime.fromisoformat(min(e["timestamp"] for e in behaviour)).timestamp()  # one format: sorts as text
            profile_events, traits[cid] = _profile_events(cid, personas[k].name, first, end, trait_rng)
            events.extend(profile_events)
    # A stable sort: the behaviour events keep the order they have without profiles.
    events.sort(key=lambda e: e["timestamp"])
    return Population(events=events, personas=truth, end=end, traits=traits)


def iter_jsonl(events: list[dict[str, Any]]) -> Iterator[bytes]:
    import orjson

    for e in events:
        yield orjson.dumps(e) + b"\n"
