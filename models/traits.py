"""Customer traits: the attributes a profile event carries (geographic, demographic,
psychographic, firmographic, acquisition and consent), as the customer's state keeps them.

Each trait is kept with the timestamp of the event that set it, and **the latest timestamp wins**
whatever the arrival order: a late, older profile update never overwrites a newer one. Two
updates with the same timestamp are ordered by their values' canonical JSON (the larger wins), so
the outcome never depends on arrival order either. A trait sent as ``null`` is cleared, and the
clearing is kept (with its timestamp) so that an older value arriving later stays overwritten.

>>> from schemas.events import parse_event
>>> e = parse_event(b'{"type":"profile","event_id":"p1","customer_id":"c1","timestamp":"2026-03-01T00:00:00Z",'
...                 b'"country":"DE","interests":["outdoor","books","outdoor"],"consent":{"email":true}}')
>>> traits_of(e)
{'country': 'DE', 'interests': ['books', 'outdoor'], 'consent_email': True}
>>> held = {}
>>> merge_trait(held, "country", 200.0, "FR"), merge_trait(held, "country", 100.0, "DE")   # the older loses
(True, False)
>>> held
{'country': (200.0, 'FR')}
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import orjson

from schemas.events import ProfileEvent

__all__ = ["CLUSTERING_TRAITS", "CONSENT_CHANNELS", "TRAIT_NAMES", "merge_trait", "traits_of"]

#: Marketing channels a customer can consent to, each a trait ``consent_<channel>``.
CONSENT_CHANNELS: tuple[str, ...] = ("email", "sms", "push")

#: Every trait, in a fixed order: the state stores a trait by its position here, so names are only
#: ever appended (a reordering would read old states' traits under other names).
TRAIT_NAMES: tuple[str, ...] = (
    "country", "region", "city", "postal_code", "time_zone",
    "birth_year", "household_size", "income_band", "education", "occupation",
    "interests", "lifestyle",
    "industry", "company_size",
    "acquisition_channel", "acquisition_campaign", "acquisition_cost",
    "consent_email", "consent_sms", "consent_push",
)
TRAIT_INDEX: dict[str, int] = {name: i for i, name in enumerate(TRAIT_NAMES)}

#: The traits that can be added as clustering features (``SegmentationConfig.trait_features``),
#: a closed set of numeric or ordinal traits (encodings: :mod:`models.features`). Categorical
#: traits (country, region, industry, occupation, tags) are not offered: k-means needs numbers
#: whose distances mean something, and a one-hot encoding of a high-cardinality trait adds a
#: dimension per value, each worth a fixed distance, so such a trait would dominate the clusters.
CLUSTERING_TRAITS: tuple[str, ...] = ("age", "household_size", "income_band", "education", "company_size")

_COPIED = tuple(n for n in TRAIT_NAMES if n not in ("acquisition_cost", "interests", "lifestyle")
                and not n.startswith("consent_"))


def traits_of(event: ProfileEvent) -> dict[str, Any]:
    """The traits ``event`` sets, by trait name: only the fields it carries (``None`` for a field
    sent as null). Enums become their values and tag lists sorted sets; ``acquisition_cost`` is
    as sent, in the event's ``currency`` (:meth:`models.state.CustomerState.apply` values it)."""
    given = event.model_fields_set
    traits: dict[str, Any] = {}
    for name in _COPIED:
        if name in given:
            value = getattr(event, name)
            traits[name] = value.value if isinstance(value, Enum) else value
    for name in ("interests", "lifestyle"):
        if name in given:
            tags = getattr(event, name)
            traits[name] = None if tags is None else sorted(set(tags))
    if "acquisition_cost" in given:  # valued in the base currency by models.state (its rates)
        traits["acquisition_cost"] = event.acquisition_cost
    if "consent" in given:
        consent = event.consent
        for channel in CONSENT_CHANNELS:
            if consent is None:
                traits[f"consent_{channel}"] = None
            elif channel in consent.model_fields_set:
                traits[f"consent_{channel}"] = getattr(consent, channel)
    return traits


def merge_trait(held: dict[str, tuple[float, Any]], name: str, ts: float, value: Any) -> bool:
    """Keep ``value`` set at ``ts`` for trait ``name`` if it is newer than what ``held`` has (the
    latest timestamp wins; on a tie the larger canonical JSON). True when it was kept."""
    current = held.get(name)
    if current is not None and (ts, _order_key(value)) <= (current[0], _order_key(current[1])):
        return False
    held[name] = (ts, value)
    return True


def _order_key(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
