"""The code lists profile traits are checked against: ISO 3166-1 alpha-2 countries and ISO 3166-2
subdivisions (``pycountry``, which packages the Debian iso-codes lists) and IANA time zones
(``tzdata``, the IANA database as a Python package, so the list is the same on every machine).

The exported JSON Schemas carry these lists as enums: both packages are pinned in pyproject.toml
so that a published schema and the runtime agree (tests/test_schema_files.py). A new release of
either, taken deliberately, is a new schema export.

>>> "DE" in COUNTRIES, "DE-BY" in REGIONS, "Europe/Berlin" in TIME_ZONES, "XX" in COUNTRIES
(True, True, True, False)
"""

from __future__ import annotations

from importlib import resources

import pycountry

__all__ = ["COUNTRIES", "REGIONS", "TIME_ZONES"]

COUNTRIES: tuple[str, ...] = tuple(sorted(c.alpha_2 for c in pycountry.countries))
REGIONS: tuple[str, ...] = tuple(sorted(s.code for s in pycountry.subdivisions))
# tzdata's own list of the zones it ships (zoneinfo.available_timezones() would also read the
# machine's /usr/share/zoneinfo, which differs between machines).
TIME_ZONES: tuple[str, ...] = tuple(sorted(resources.files("tzdata").joinpath("zones").read_text().split()))
