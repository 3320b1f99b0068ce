"""``qm-ingest quarantine retry``: run quarantined input again, after a fix.

CTRs go through the same CTR path (parse, tenant check, join, emission), recording
notifications through the same join; both are idempotent, so retrying something that
was meanwhile imported another way changes nothing. An entry that still fails stays
open with its (possibly new) reason; one that succeeds is marked ``retried``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.quarantine import QuarantineEntry
from processor.app.wiring import build_ingest, build_joiner, build_quarantine
from processor.core.batch import StreamRecord
from processor.core.s3_events import parse_notification
from processor.platform.exceptions import InvalidInput, SourcePosition
from processor.platform.settings import Settings


@dataclass
class RetryReport:
    retried: int = 0
    still_failing: int = 0
    skipped: int = 0


def retry_entries(
    settings: Settings,
    aws: AwsClients,
    *,
    ids: Iterable[str] = (),
    reason: str | None = None,
    everything: bool = False,
) -> RetryReport:
    quarantine = build_quarantine(settings, aws)
    wanted = set(ids)
    entries: list[QuarantineEntry] = [
        e
        for e in quarantine.list()
        if e.status == "open"
        and (everything or e.id in wanted or (reason is not None and e.reason == reason))
    ]
    report = RetryReport()
    ingest = build_ingest(settings, aws)
    joiner = build_joiner(settings, aws)
    try:
        for entry in entries:
            if entry.payload is None:
                report.skipped += 1
                continue
            position = SourcePosition(**entry.position) if entry.position else SourcePosition("unknown")
            if position.source == "sqs":
                try:
                    for obj in parse_notification(entry.payload).objects:
                        joiner.on_object(obj)
                except InvalidInput as exc:
                    quarantine.put(exc.at(position, entry.payload), entry.quarantined_at)
                    report.still_failing += 1
                    continue
            else:
                result = ingest.process([StreamRecord(entry.payload, position)])
                if result.quarantined:
                    report.still_failing += 1
                    continue
            quarantine.mark_retried(entry.id)
            report.retried += 1
    finally:
        ingest.close()
    return report
