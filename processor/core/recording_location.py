"""Where a call recording may be read from: the configured buckets, Connect's key layout. Pure.

A CTR's ``Recording.Location`` / ``Recordings[].Location`` is untrusted text (anyone who can
write to the CTR stream or the Firehose archive chooses it), and the service and the console
read what it names with their own role. So a location is used only when it is

* in one of the configured recordings buckets (``QM_RECORDINGS_BUCKET`` and
  ``QM_RECORDINGS_EXTRA_BUCKETS``), and
* at a key of Connect's layout for call recordings,
  ``<prefix>/YYYY/MM/DD/<ContactId>_<YYYYMMDD>T<HH:MM>[:SS]_UTC.wav``, where the prefix is
  the configured one (``QM_RECORDINGS_KEY_PREFIX``; Connect's default
  ``connect/<instance alias>/CallRecordings``, written ``connect/*/CallRecordings``: ``*`` is
  one path segment), and the contact id in the file name is the contact's own.

Anything else is a :class:`Rejection` with a stable reason:

``foreign_bucket``     the bucket is not one of the configured ones
``not_connect_layout`` the key is not a Connect call-recording key under the prefix
``other_contact``      the file name carries another contact's id

:meth:`RecordingLocations.screen` takes the rejected recordings out of a CTR (the join never
expects them, nothing reads them); the contact carries ``recording_location_rejected``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from processor.core.ctr import ContactRecord, RecordingRef
from processor.core.mapping import FLAG_LOCATION_REJECTED, QmContact, s3_recordings

__all__ = ["CONNECT_PREFIX", "FLAG_LOCATION_REJECTED", "RecordingLocations", "Rejection", "flagged"]

#: Connect's default storage prefix for call recordings; ``*`` is the instance alias.
CONNECT_PREFIX = "connect/*/CallRecordings"

FOREIGN_BUCKET = "foreign_bucket"
NOT_CONNECT_LAYOUT = "not_connect_layout"
OTHER_CONTACT = "other_contact"

_DATE = (re.compile(r"^\d{4}$"), re.compile(r"^(0[1-9]|1[0-2])$"), re.compile(r"^(0[1-9]|[12]\d|3[01])$"))
_FILE = re.compile(r"^(?P<contact>[^\x00-\x1f\x7f/]{1,256})_\d{8}T\d{2}:\d{2}(?::\d{2})?_UTC\.wav$")
#: A path segment the prefix's ``*`` stands for: printable, no "/" and not "." or "..".
_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f/]{1,256}$")


@dataclass(frozen=True, slots=True)
class Rejection:
    """A recording location that is never read and never played, and why."""

    location: str
    bucket: str
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingLocations:
    """The buckets and the key layout a call recording may be read from."""

    buckets: frozenset[str]
    prefix: tuple[str, ...] = tuple(CONNECT_PREFIX.split("/"))

    @classmethod
    def of(cls, buckets: Iterable[str], prefix: str = CONNECT_PREFIX) -> RecordingLocations:
        named = frozenset(b.strip() for b in buckets if b and b.strip())
        if not named:
            raise ValueError("at least one recordings bucket is needed")
        parts = tuple(p for p in (prefix or CONNECT_PREFIX).strip().strip("/").split("/"))
        if not parts or any(not p or p in (".", "..") for p in parts):
            raise ValueError(f"not a key prefix: {prefix!r}")
        return cls(named, parts)

    def bucket_allowed(self, location: str) -> bool:
        bucket, sep, key = location.partition("/")
        return bool(sep and key) and bucket in self.buckets

    def check(self, location: str, contact_id: str | None) -> Rejection | None:
        """None when ``location`` (``bucket/key``) may be read for the contact ``contact_id``
        (None: any contact, for an object seen without its CTR)."""
        bucket, sep, key = location.partition("/")
        if not sep or bucket not in self.buckets:
            return Rejection(location, bucket, FOREIGN_BUCKET)
        owner = self._contact_of(key)
        if owner is None:
            return Rejection(location, bucket, NOT_CONNECT_LAYOUT)
        if contact_id is not None and owner != contact_id:
            return Rejection(location, bucket, OTHER_CONTACT)
        return None

    def _contact_of(self, key: str) -> str | None:
        """The contact id of a Connect call-recording key under the prefix; None: not one."""
        parts = key.split("/")
        n = len(self.prefix)
        if len(parts) != n + 4:
            return None
        for want, got in zip(self.prefix, parts[:n], strict=True):
            if got != want and (want != "*" or not _SEGMENT.match(got) or got in (".", "..")):
                return None
        if not all(pattern.match(part) for pattern, part in zip(_DATE, parts[n : n + 3], strict=True)):
            return None
        found = _FILE.match(parts[-1])
        return found.group("contact") if found else None

    def screen(self, record: ContactRecord) -> tuple[ContactRecord, tuple[Rejection, ...]]:
        """The CTR without the S3 recordings it may not use, and those it may not use.

        Recordings of other storage (Kinesis Video Streams) and locations that are not
        ``bucket/key`` at all are left to the mapping (which never reads them)."""
        rejected: list[Rejection] = []
        dropped: set[int] = set()
        usable = {id(ref) for ref in s3_recordings(record)}
        for ref in record.recordings:
            if id(ref) not in usable or ref.location is None:
                continue
            rejection = self.check(ref.location, record.contact_id)
            if rejection is not None:
                rejected.append(rejection)
                dropped.add(id(ref))
        if not rejected:
            return record, ()
        kept: tuple[RecordingRef, ...] = tuple(r for r in record.recordings if id(r) not in dropped)
        return replace(record, recordings=kept), tuple(rejected)

    def describe(self) -> str:
        return f"{', '.join(sorted(self.buckets))} under {'/'.join(self.prefix)}/YYYY/MM/DD/"


def flagged(contact: QmContact, rejected: Sequence[Rejection]) -> QmContact:
    """The QM contact of a CTR some of whose recordings were rejected, with its flag."""
    if not rejected or FLAG_LOCATION_REJECTED in contact.flags:
        return contact
    return replace(contact, flags=(*contact.flags, FLAG_LOCATION_REJECTED))
