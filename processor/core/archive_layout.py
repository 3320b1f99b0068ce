"""Where Kinesis Firehose puts objects in S3, and which ones a date range needs. Pure.

Firehose writes each object under ``<prefix>YYYY/MM/DD/HH/`` (UTC, the time it delivered
the batch), so a date range needs only the hour folders it overlaps: a whole day is one
``YYYY/MM/DD/`` listing, a partial day one listing per hour. Keys that do not follow the
layout (Firehose's ``processing-failed/`` output, other tools' files) are not CTR
objects of this archive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_HOUR_PATH = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/(\d{2})/[^/]+$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class ArchiveLocation:
    """``s3://bucket/prefix``: the folder Firehose writes into."""

    bucket: str
    prefix: str  # "" or ending with "/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_s3_url(url: str) -> ArchiveLocation:
    """``s3://bucket[/prefix]`` -> location; the prefix is a folder (a trailing ``/`` is added)."""
    if not url.startswith("s3://"):
        raise ValueError(f"not an s3:// URL: {url!r}")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not bucket:
        raise ValueError(f"no bucket in {url!r}")
    prefix = prefix.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return ArchiveLocation(bucket, prefix)


def folder(prefix: str) -> str:
    """A settings prefix as a folder: "" or ending with "/"."""
    prefix = prefix.strip().lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def parse_date(text: str, *, end: bool = False) -> datetime:
    """``YYYY-MM-DD`` (a whole day) or an ISO 8601 instant; UTC unless it has an offset.

    With ``end``, a bare date means the end of that day (``--until 2026-03-01`` includes
    the 1st), an instant is taken as it is."""
    text = text.strip()
    if _DATE_ONLY.match(text):
        day = datetime.fromisoformat(text).replace(tzinfo=UTC)
        return day + DAY if end else day
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def floor_hour(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def object_hour(prefix: str, key: str) -> datetime | None:
    """The UTC hour folder of a Firehose object key below ``prefix`` (None: not one)."""
    if not key.startswith(prefix):
        return None
    match = _HOUR_PATH.match(key[len(prefix) :])
    if not match:
        return None
    year, month, day, hour = (int(g) for g in match.groups())
    try:
        return datetime(year, month, day, hour, tzinfo=UTC)
    except ValueError:
        return None


def listing_prefixes(prefix: str, since: datetime | None, until: datetime | None) -> list[str]:
    """The fewest S3 prefixes that cover the hours overlapping ``[since, until)``.

    Without ``since`` the whole prefix is listed (keys are filtered by their hour after);
    ``until`` is then applied to the keys."""
    if since is None:
        return [prefix]
    if until is None:
        raise ValueError("an open range needs an end (the caller passes now)")
    start = floor_hour(since)
    out: list[str] = []
    at = start
    while at < until:
        if at.hour == 0 and at + DAY <= until:
            out.append(f"{prefix}{at:%Y/%m/%d}/")
            at += DAY
        else:
            out.append(f"{prefix}{at:%Y/%m/%d/%H}/")
            at += HOUR
    return out


def in_range(hour: datetime, since: datetime | None, until: datetime | None) -> bool:
    """Whether an hour folder overlaps ``[since, until)``."""
    if since is not None and hour + HOUR <= since:
        return False
    return until is None or hour < until
