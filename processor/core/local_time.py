"""The contact centre's local time, for the seed's Date and Time as QM shows them. Pure.

Storage and the output stream keep UTC (``connected_at``, and ``date``/``time`` of that UTC
instant); what people read (the console, ``contacts list``) is in the centre's time zone
(``QM_TIME_ZONE``, an IANA name), so an evening call in New York shows on its own day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def zone(name: str) -> tzinfo:
    """The time zone of an IANA name ("UTC", "America/New_York"); ValueError when unknown."""
    if name.strip().upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name.strip())
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"not an IANA time zone name: {name!r}") from exc


def shown_date_time(doc: dict[str, Any], tz: tzinfo) -> tuple[str | None, str | None]:
    """A contact's Date and Time in ``tz`` (from its UTC ``connected_at``)."""
    connected = doc.get("connected_at")
    if not isinstance(connected, str) or not connected:
        return doc.get("date"), doc.get("time")
    try:
        instant = datetime.fromisoformat(connected.replace("Z", "+00:00"))
    except ValueError:
        return doc.get("date"), doc.get("time")
    local = instant.astimezone(tz)
    return local.strftime("%Y-%m-%d"), local.strftime("%H:%M:%S")


def utc_bounds(first: date, last: date, tz: tzinfo) -> tuple[datetime, datetime]:
    """The UTC instants from ``first``'s local midnight to the end of ``last`` in ``tz``."""
    lo = datetime.combine(first, time(0), tzinfo=tz).astimezone(UTC)
    hi = datetime.combine(last + timedelta(days=1), time(0), tzinfo=tz).astimezone(UTC)
    return lo, hi - timedelta(milliseconds=1)
