"""What a source holds against what was imported: the gap report. Pure.

A source (the Firehose archive for a date range, or the CTR stream from a position) is
reduced to the newest version of each contact it holds; the contacts table gives the
imported version of each. Then, per contact:

``missing``  the source has it, the contacts table does not
``stale``    the contacts table has an older version than the source's newest
``ahead``    the contacts table has a newer version (it came from the stream after the
             archived one: not a gap)
``ok``       same version
``extra``    imported with a version from the range, but the source does not hold the
             contact at all (the archive lost it, or it came from elsewhere)

Versions compare as the contacts table stores them: ``LastUpdateTimestamp`` formatted by
:func:`processor.core.ctr.format_instant` (string order is time order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class SourceVersion:
    """The newest version of one contact in a source, and where that version is."""

    contact_id: str
    last_update: str
    where: str  # "s3://bucket/key @ byte 1234" or "shard shardId-000 @ 4960..."


@dataclass
class GapReport:
    missing: list[SourceVersion] = field(default_factory=list)
    stale: list[tuple[SourceVersion, str]] = field(default_factory=list)  # (source, imported)
    extra: list[tuple[str, str]] = field(default_factory=list)  # (contact id, imported)
    ok: int = 0
    ahead: int = 0
    unreadable: int = 0  # source records that are not valid CTRs (quarantine material)

    @property
    def gaps(self) -> int:
        return len(self.missing) + len(self.stale)

    @property
    def clean(self) -> bool:
        return not self.missing and not self.stale and not self.extra

    def to_dict(self, *, limit: int | None = None) -> dict[str, Any]:
        def cut(items: list[Any]) -> list[Any]:
            return items if limit is None else items[:limit]

        return {
            "missing": len(self.missing),
            "stale": len(self.stale),
            "extra": len(self.extra),
            "ok": self.ok,
            "ahead": self.ahead,
            "unreadable": self.unreadable,
            "missing_contacts": [
                {"contact_id": s.contact_id, "last_update": s.last_update, "where": s.where}
                for s in cut(self.missing)
            ],
            "stale_contacts": [
                {
                    "contact_id": s.contact_id,
                    "source_last_update": s.last_update,
                    "imported_last_update": imported,
                    "where": s.where,
                }
                for s, imported in cut(self.stale)
            ],
            "extra_contacts": [
                {"contact_id": cid, "imported_last_update": imported} for cid, imported in cut(self.extra)
            ],
        }


class NewestVersions:
    """Accumulates the newest version of each contact seen in a source."""

    def __init__(self) -> None:
        self.versions: dict[str, SourceVersion] = {}
        self.unreadable = 0

    def add(self, contact_id: str, last_update: str, where: str) -> None:
        current = self.versions.get(contact_id)
        if current is None or last_update > current.last_update:
            self.versions[contact_id] = SourceVersion(contact_id, last_update, where)

    def __len__(self) -> int:
        return len(self.versions)


def compare(
    source: Mapping[str, SourceVersion],
    imported: Mapping[str, str],
    *,
    imported_in_range: Iterable[tuple[str, str]] = (),
    seen_anywhere: frozenset[str] | set[str] = frozenset(),
    unreadable: int = 0,
) -> GapReport:
    """The gap report.

    ``imported`` maps the source's contact ids to their imported version (absent: not
    imported). ``imported_in_range`` lists imported contacts whose version lies in the
    source's range; those the source does not hold (nor ``seen_anywhere``, the source
    read with some slack around the range) are ``extra``.
    """
    report = GapReport(unreadable=unreadable)
    for contact_id in sorted(source):
        version = source[contact_id]
        have = imported.get(contact_id)
        if have is None:
            report.missing.append(version)
        elif have < version.last_update:
            report.stale.append((version, have))
        elif have > version.last_update:
            report.ahead += 1
        else:
            report.ok += 1
    for contact_id, have in sorted(imported_in_range):
        if contact_id not in source and contact_id not in seen_anywhere:
            report.extra.append((contact_id, have))
    return report
