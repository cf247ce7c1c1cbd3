"""Read CDNOW-style transaction files (the BTYD literature's standard data set).

Format: whitespace-separated ``<master id> <customer id> <YYYYMMDD> <quantity> <amount>`` per line,
as in ``CDNOW_sample.txt`` (Fader & Hardie; shipped in the ``lifetimes`` wheel, MIT). Each line
becomes a contract purchase event (customer id ``cdnow-<id>``, midnight UTC of the date).

>>> line = b" 00004 0001 19970101  2   29.33"
>>> event = transaction_to_event(line, line_number=1)
>>> event["customer_id"], event["timestamp"], event["amount"], event["quantity"]
('cdnow-0001', '1997-01-01T00:00:00+00:00', 29.33, 2)
"""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Iterator

from datetime import datetime, timezone

from schemas.errors import ContractError

#: The CDNOW sample (2,357 customers, 1997-98), shipped in the package (resources/cdnow, with its licence).
SAMPLE = Path(__file__).resolve().parent / "resources" / "cdnow" / "CDNOW_sample.txt"


def transaction_to_event(line: bytes | str, line_number: int) -> dict[str, Any]:
    parts = (line.decode() if isinstance(line, bytes) else line).split()
    if len(parts) != 5:
        raise ContractError(f"line {line_number}: expected 5 columns, got {len(parts)}")
    _, customer, date, quantity, amount = parts
    ts = datetime.strptime(date, "%Y%m%d").replace(tzinfo=timezone.utc)
    event: dict[str, Any] = {
        "type": "purchase",
        "event_id": f"cdnow-{customer}-{line_number}",
        "customer_id": f"cdnow-{customer}",
        "timestamp": ts.isoformat(),
        "amount": float(amount),
        "currency": "USD",
    }
    if int(quantity) >= 1:
        event["quantity"] = int(quantity)
    return event


def read_transactions(path: Path = SAMPLE) -> Iterator[dict[str, Any]]:
    """The file's transactions as purchase events; a UTF-8 byte order mark at its start is dropped."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            line = line.removeprefix(codecs.BOM_UTF8) if number == 1 else line
            if line.strip():
                yield transaction_to_event(line, number)


def is_cdnow_file(path: Path) -> bool:
    """True when the first non-empty line looks like a CDNOW transaction (after a UTF-8 byte
    order mark at the start of the file, if there is one)."""
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            line = line.removeprefix(codecs.BOM_UTF8) if number == 1 else line
            if line.strip():
                parts = line.split()
                return len(parts) == 5 and parts[2].isdigit() and len(parts[2]) == 8
    return False
