"""What the console's Contacts page asks for: filters, page cursors, the detail's checks.

Contacts are listed newest first through the contacts table's indexes (``by_date``:
one partition per day; ``by_agent``: one per ACD ID, sorted by ``connected_at``), one
bounded page at a time; a cursor is the index key of the last contact shown. Pure: the
caller passes "today".
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import orjson

from processor.core.local_time import utc_bounds
from processor.platform.exceptions import InvalidInput

DIRECTIONS = ("inbound", "outbound")
#: Default listing window when no date is given: the last week.
DEFAULT_DAYS = 7
#: Longest date range one listing may walk (one index query per day at most).
MAX_RANGE_DAYS = 366
MAX_CURSOR_CHARS = 2048
_DATE_KEY = ("contact_id", "contact_date", "connected_at")
_AGENT_KEY = ("contact_id", "acd_id", "connected_at")


@dataclass(frozen=True)
class ContactFilter:
    """Dates are the contact centre's local dates (``zone``); the indexes hold UTC."""

    date_from: date
    date_to: date
    agent: str | None = None
    direction: str | None = None
    flag: str | None = None
    zone: tzinfo = UTC

    @property
    def utc_range(self) -> tuple[str, str]:
        """``connected_at`` bounds (UTC, as stored) of the local days asked for."""
        lo, hi = utc_bounds(self.date_from, self.date_to, self.zone)
        return _iso(lo), _iso(hi)

    def holds(self, connected_at: str | None) -> bool:
        """Whether a contact of a UTC day partition is on one of the local days asked for."""
        if not connected_at:
            return True
        lo, hi = self.utc_range
        return lo <= connected_at <= hi

    @property
    def index(self) -> str:
        return "by_agent" if self.agent else "by_date"

    @property
    def key_attributes(self) -> tuple[str, ...]:
        return _AGENT_KEY if self.agent else _DATE_KEY

    def days_descending(self, start: date | None = None) -> Iterator[date]:
        """The UTC day partitions that hold the local days asked for, newest first."""
        lo, hi = utc_bounds(self.date_from, self.date_to, self.zone)
        day = min(start or hi.date(), hi.date())
        while day >= lo.date():
            yield day
            day -= timedelta(days=1)

    def as_query(self) -> dict[str, str]:
        """The filter as URL query parameters (for paging links)."""
        out = {"from": self.date_from.isoformat(), "to": self.date_to.isoformat()}
        for name in ("agent", "direction", "flag"):
            value = getattr(self, name)
            if value:
                out[name] = value
        return out


def _iso(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


def _date(value: str | None, name: str) -> date | None:
    if not value or not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput("filter", f"{name}: not a date (YYYY-MM-DD): {value[:40]!r}") from None


def parse_filter(
    params: Mapping[str, str], today: date, known_flags: frozenset[str], zone: tzinfo = UTC
) -> ContactFilter:
    """A filter from query parameters ``from``, ``to``, ``agent``, ``direction``, ``flag``."""
    date_to = _date(params.get("to"), "to") or today
    date_from = _date(params.get("from"), "from") or date_to - timedelta(days=DEFAULT_DAYS - 1)
    if date_from > date_to:
        raise InvalidInput("filter", "the start date is after the end date")
    if (date_to - date_from).days >= MAX_RANGE_DAYS:
        raise InvalidInput("filter", f"the date range is longer than {MAX_RANGE_DAYS} days")
    agent = (params.get("agent") or "").strip() or None
    direction = (params.get("direction") or "").strip().lower() or None
    if direction is not None and direction not in DIRECTIONS:
        raise InvalidInput("filter", f"direction must be inbound or outbound, not {direction[:20]!r}")
    flag = (params.get("flag") or "").strip() or None
    if flag is not None and flag not in known_flags:
        raise InvalidInput("filter", f"unknown flag {flag[:40]!r}")
    return ContactFilter(date_from, date_to, agent, direction, flag, zone)


@dataclass(frozen=True)
class Cursor:
    day: date | None
    key: dict[str, str]


def encode_cursor(cursor: Cursor) -> str:
    raw = orjson.dumps({"d": cursor.day.isoformat() if cursor.day else None, "k": cursor.key})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str | None, flt: ContactFilter) -> Cursor | None:
    """The cursor of a paging link; anything that is not one of ours is refused."""
    if not text:
        return None
    if len(text) > MAX_CURSOR_CHARS:
        raise InvalidInput("cursor", "cursor too long")
    try:
        loaded = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise InvalidInput("cursor", "not a cursor") from None
    if not isinstance(loaded, dict) or not isinstance(loaded.get("k"), dict):
        raise InvalidInput("cursor", "not a cursor")
    key = loaded["k"]
    if set(key) != set(flt.key_attributes) or not all(isinstance(v, str) for v in key.values()):
        raise InvalidInput("cursor", "the cursor belongs to another filter")
    if flt.agent and key["acd_id"] != flt.agent:
        raise InvalidInput("cursor", "the cursor belongs to another agent")
    day = _date(loaded.get("d"), "cursor") if loaded.get("d") else None
    if flt.agent is None and day is None:
        raise InvalidInput("cursor", "the cursor has no day")
    return Cursor(day, {k: str(v) for k, v in key.items()})


@dataclass(frozen=True)
class DurationCheck:
    """The call duration (from the media file) against what the CTR says it should be."""

    media_seconds: float | None
    expected_seconds: float | None
    #: "talk + hold" (from the CTR's agent times, as the join checks it) or "connected interval".
    basis: str
    difference_seconds: float | None
    verdict: str  # "consistent", "recording shorter", "recording longer", "not comparable"


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration_check(
    doc: Mapping[str, Any],
    expected_seconds: float | None = None,
    *,
    tolerance_seconds: float = 5.0,
    tolerance_ratio: float = 0.0,
) -> DurationCheck:
    """The join's expectation (talk + hold time) when known, else the connected interval:
    Connect records from the agent's connection to the disconnect."""
    media = doc.get("call_duration_seconds")
    media_seconds = float(media) if isinstance(media, int | float) else None
    basis = "talk + hold"
    if expected_seconds is None:
        basis = "connected interval"
        start, end = _instant(doc.get("connected_at")), _instant(doc.get("disconnect_at"))
        expected_seconds = (end - start).total_seconds() if start and end and end >= start else None
    if media_seconds is None or expected_seconds is None:
        return DurationCheck(media_seconds, expected_seconds, basis, None, "not comparable")
    difference = round(media_seconds - expected_seconds, 1)
    slack = max(tolerance_seconds, tolerance_ratio * expected_seconds)
    verdict = (
        "consistent"
        if abs(difference) <= slack
        else "recording shorter"
        if difference < 0
        else "recording longer"
    )
    return DurationCheck(media_seconds, expected_seconds, basis, difference, verdict)
