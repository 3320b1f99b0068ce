"""The audit: what QM holds, judged against what a scenario sent. Pure.

The one judge of every fault scenario (``qm-ingest audit --expect FILE``). Inputs are the
expectation (``schemas/audit-expect.schema.json``), the contacts table, every record of the
output stream and the quarantine; the result counts, per the contract
``schemas/audit-report.schema.json``:

* **imported**: an expected contact stored at its newest version, final, in the expected
  join state, whose stored version is on the output stream exactly once;
* **lost**: missing from the table, stored at an older version, still waiting for its
  recording, or its stored version never reached the output stream;
* **duplicated**: a contact version (``contact_id`` + ``version``) found more than once on
  the output stream;
* **mismatched**: another join state than expected, or a newer version than sent;
* **unexpected**: stored or emitted although the scenario never sent it (e.g. a CTR of
  another tenant that should have been quarantined).

A report is ``ok`` only without any of these, and with the quarantine count expected (when
the expectation gives one).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from processor.core.ctr import format_instant, parse_instant
from processor.core.schemas import SchemaViolation, validate
from processor.platform.exceptions import InvalidInput

#: Problems listed per kind in the text report (the JSON report lists them all).
SHOWN_PER_KIND = 10


@dataclass(frozen=True, slots=True)
class ExpectedContact:
    contact_id: str
    last_update: str  # canonical form (format_instant)
    join_state: str | None = None


@dataclass(frozen=True)
class Expectation:
    contacts: dict[str, ExpectedContact]
    quarantined_total: int | None = None
    quarantined_by_reason: dict[str, int] | None = None
    quarantined_by_source: dict[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        contacts = {
            c.contact_id: {"last_update": c.last_update, "join_state": c.join_state}
            for c in self.contacts.values()
        }
        out: dict[str, Any] = {"contacts": contacts}
        quarantined: dict[str, Any] = {}
        if self.quarantined_total is not None:
            quarantined["total"] = self.quarantined_total
        if self.quarantined_by_reason is not None:
            quarantined["by_reason"] = dict(self.quarantined_by_reason)
        if self.quarantined_by_source is not None:
            quarantined["by_source"] = dict(self.quarantined_by_source)
        if quarantined:
            out["quarantined"] = quarantined
        return out


@dataclass(frozen=True, slots=True)
class StoredContactState:
    """One item of the contacts table, as far as the audit cares."""

    contact_id: str
    last_update: str
    version: str
    join_state: str
    final: bool


@dataclass(frozen=True, slots=True)
class OutputRecord:
    """One record of the output stream."""

    contact_id: str
    version: str


@dataclass(frozen=True, slots=True)
class QuarantinedItem:
    reason: str
    source: str


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str
    contact_id: str | None
    detail: str


LOST_KINDS = frozenset({"missing", "stale", "not_final", "not_emitted"})
MISMATCH_KINDS = frozenset({"wrong_state", "newer_than_expected"})


@dataclass
class AuditReport:
    expected: int = 0
    imported: int = 0
    output_records: int = 0
    per_version: dict[str, int] = field(default_factory=lambda: {"0": 0, "1": 0, ">1": 0})
    quarantined_total: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    quarantined_by_source: dict[str, int] = field(default_factory=dict)
    quarantined_expected: int | None = None
    problems: list[Problem] = field(default_factory=list)

    def _count(self, kinds: frozenset[str] | set[str]) -> int:
        return len({(p.kind, p.contact_id) for p in self.problems if p.kind in kinds})

    @property
    def lost(self) -> int:
        return len({p.contact_id for p in self.problems if p.kind in LOST_KINDS})

    @property
    def duplicated(self) -> int:
        return sum(1 for p in self.problems if p.kind == "duplicated")

    @property
    def mismatched(self) -> int:
        return len({p.contact_id for p in self.problems if p.kind in MISMATCH_KINDS})

    @property
    def unexpected(self) -> int:
        return self._count({"unexpected"})

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "expected": self.expected,
            "imported": self.imported,
            "lost": self.lost,
            "duplicated": self.duplicated,
            "mismatched": self.mismatched,
            "unexpected": self.unexpected,
            "quarantined": {
                "total": self.quarantined_total,
                "by_reason": dict(sorted(self.quarantined_by_reason.items())),
                "by_source": dict(sorted(self.quarantined_by_source.items())),
                "expected": self.quarantined_expected,
            },
            "output_records": self.output_records,
            "records_per_version": dict(self.per_version),
            "problems": [
                {"kind": p.kind, "contact_id": p.contact_id, "detail": p.detail} for p in self.problems
            ],
        }

    def render(self) -> str:
        """The report for people: the counts, then the problems (a few of each kind)."""

        def counts(values: dict[str, int]) -> str:
            return ", ".join(f"{k} {v}" for k, v in sorted(values.items())) or "-"

        expected_q = "" if self.quarantined_expected is None else f" (expected {self.quarantined_expected})"
        per = self.per_version
        lines = [
            f"contacts expected     {self.expected}",
            f"imported              {self.imported}",
            f"lost                  {self.lost}",
            f"duplicated            {self.duplicated}",
            f"mismatched            {self.mismatched}",
            f"unexpected            {self.unexpected}",
            f"quarantined           {self.quarantined_total}{expected_q}",
            f"  by reason           {counts(self.quarantined_by_reason)}",
            f"  by source           {counts(self.quarantined_by_source)}",
            f"output records        {self.output_records}",
            f"records per version   0: {per['0']}   1: {per['1']}   >1: {per['>1']}",
        ]
        shown: Counter[str] = Counter()
        for problem in self.problems:
            shown[problem.kind] += 1
            if shown[problem.kind] <= SHOWN_PER_KIND:
                who = f" {problem.contact_id}" if problem.contact_id else ""
                lines.append(f"  {problem.kind}{who}: {problem.detail}")
        for kind, count in sorted(shown.items()):
            if count > SHOWN_PER_KIND:
                lines.append(f"  ... and {count - SHOWN_PER_KIND} more {kind}")
        lines.append("OK: nothing lost, nothing duplicated" if self.ok else "FAILED")
        return "\n".join(lines)


def canonical_instant(value: str, what: str) -> str:
    """Any ISO 8601 form of an instant -> the stored form, so that equal instants compare equal."""
    instant: datetime | None = parse_instant(value, what)
    if instant is None:
        raise InvalidInput("schema", f"{what}: no instant")
    return format_instant(instant)


def parse_expectation(payload: bytes) -> Expectation:
    """Read an expectation file. Raises :class:`InvalidInput` naming what is wrong."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("bad_json", f"not JSON: {exc}") from None
    try:
        validate("audit-expect", doc)
    except SchemaViolation as exc:
        raise InvalidInput("schema", f"not an audit expectation: {exc}") from None
    full_form = "contacts" in doc
    contacts_doc: dict[str, Any] = doc["contacts"] if full_form else doc
    quarantined = doc.get("quarantined") if full_form else None
    contacts: dict[str, ExpectedContact] = {}
    for contact_id, value in contacts_doc.items():
        if isinstance(value, str):
            contacts[contact_id] = ExpectedContact(contact_id, canonical_instant(value, contact_id))
        else:
            contacts[contact_id] = ExpectedContact(
                contact_id,
                canonical_instant(value["last_update"], f"{contact_id}.last_update"),
                value.get("join_state"),
            )
    return Expectation(
        contacts=contacts,
        quarantined_total=quarantined.get("total") if quarantined else None,
        quarantined_by_reason=quarantined.get("by_reason") if quarantined else None,
        quarantined_by_source=quarantined.get("by_source") if quarantined else None,
    )


def audit(
    expectation: Expectation,
    stored: Iterable[StoredContactState],
    output: Iterable[OutputRecord],
    quarantined: Iterable[QuarantinedItem],
) -> AuditReport:
    """Judge what QM holds (``stored``, ``output``, ``quarantined``) against ``expectation``."""
    report = AuditReport(expected=len(expectation.contacts))
    table = {s.contact_id: s for s in stored}
    emitted: Counter[tuple[str, str]] = Counter((r.contact_id, r.version) for r in output)
    report.output_records = sum(emitted.values())
    problems = report.problems

    for (contact_id, version), count in sorted(emitted.items()):
        report.per_version["1" if count == 1 else ">1"] += 1
        if count > 1:
            problems.append(Problem("duplicated", contact_id, f"version {version} emitted {count} times"))
    emitted_contacts = {contact_id for contact_id, _ in emitted}
    for contact_id in sorted((set(table) | emitted_contacts) - set(expectation.contacts)):
        where = "stored" if contact_id in table else "emitted"
        problems.append(Problem("unexpected", contact_id, f"{where}, but never sent"))

    for contact_id, want in sorted(expectation.contacts.items()):
        have = table.get(contact_id)
        if have is None:
            problems.append(
                Problem("missing", contact_id, f"not in the contacts table (sent {want.last_update})")
            )
            continue
        if have.last_update < want.last_update:
            problems.append(
                Problem("stale", contact_id, f"stored {have.last_update}, newest sent {want.last_update}")
            )
            continue
        if have.last_update > want.last_update:
            problems.append(
                Problem(
                    "newer_than_expected", contact_id, f"stored {have.last_update}, sent {want.last_update}"
                )
            )
            continue
        if not have.final:
            problems.append(Problem("not_final", contact_id, f"still {have.join_state}"))
            continue
        times = emitted.get((contact_id, have.version), 0)
        if times == 0:
            report.per_version["0"] += 1
            problems.append(
                Problem("not_emitted", contact_id, f"version {have.version} not on the output stream")
            )
            continue
        if want.join_state is not None and have.join_state != want.join_state:
            problems.append(
                Problem("wrong_state", contact_id, f"{have.join_state}, expected {want.join_state}")
            )
            continue
        if times == 1:
            report.imported += 1

    by_reason: Counter[str] = Counter()
    by_source: Counter[str] = Counter()
    for item in quarantined:
        by_reason[item.reason] += 1
        by_source[item.source] += 1
    report.quarantined_total = sum(by_reason.values())
    report.quarantined_by_reason = dict(by_reason)
    report.quarantined_by_source = dict(by_source)
    report.quarantined_expected = expectation.quarantined_total
    _check_quarantine(expectation, report)
    return report


def _check_quarantine(expectation: Expectation, report: AuditReport) -> None:
    checks: list[tuple[str, dict[str, int], dict[str, int]]] = []
    total = expectation.quarantined_total
    if total is not None and total != report.quarantined_total:
        report.problems.append(
            Problem(
                "quarantine_count",
                None,
                f"{report.quarantined_total} quarantined, expected {total}",
            )
        )
    if expectation.quarantined_by_reason is not None:
        checks.append(("reason", expectation.quarantined_by_reason, report.quarantined_by_reason))
    if expectation.quarantined_by_source is not None:
        checks.append(("source", expectation.quarantined_by_source, report.quarantined_by_source))
    for label, want, have in checks:
        for key in sorted(set(want) | set(have)):
            if want.get(key, 0) != have.get(key, 0):
                report.problems.append(
                    Problem(
                        "quarantine_count",
                        None,
                        f"{label} {key}: {have.get(key, 0)} quarantined, expected {want.get(key, 0)}",
                    )
                )
