"""The CTR path, composed: parse -> tenant check -> join (map, enrich, emit); bad input -> quarantine.

Guarantee: :meth:`CtrIngest.process` returns only after every effect of the batch is
durable (contacts written, bad records quarantined). The caller may then checkpoint.
A transient AWS failure is retried until it succeeds (the batch is never skipped); bad
input follows the one policy of :mod:`processor.app.intake`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from processor.adapters.dynamodb.quarantine import Quarantine
from processor.app.intake import Intake
from processor.core.batch import BatchResult, StreamRecord
from processor.core.ctr import AcceptedInstances, ContactRecord, check_instance, parse_ctr
from processor.platform.exceptions import InvalidInput
from processor.platform.logs import get_logger

log = get_logger("processor.app.ctr_path")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class CtrJoin(Protocol):
    def on_ctrs(self, batch: Sequence[tuple[ContactRecord, bytes]]) -> Sequence[str | Exception]:
        """Join and emit CTR versions (one per contact); for each, created/updated/unchanged
        or the exception that CTR alone caused. Durable on return."""
        ...


class CtrIngest:
    def __init__(
        self,
        *,
        joiner: CtrJoin,
        quarantine: Quarantine,
        instances: AcceptedInstances | Callable[[], AcceptedInstances],
        max_record_bytes: int,
        clock: Clock = utc_now,
    ) -> None:
        self._joiner = joiner
        self._quarantine = quarantine
        self._instances = instances if callable(instances) else (lambda: instances)
        self._max_bytes = max_record_bytes
        self._clock = clock
        self._intake = Intake(
            quarantine, clock, noun="CTR", describe=lambda parsed: {"contact_id": parsed.contact_id}
        )

    def close(self) -> None:
        return None  # the join's pools are the join's (shared by every batch)

    def parse(self, record: StreamRecord, accepted: AcceptedInstances | None = None) -> ContactRecord:
        parsed = parse_ctr(record.data, max_bytes=self._max_bytes)
        check_instance(parsed, accepted or self._instances())
        return parsed

    def process(self, records: Sequence[StreamRecord]) -> BatchResult:
        result = BatchResult(read=len(records))
        accepted = self._instances()  # once a batch: the console's instance is read within seconds
        newest: dict[str, tuple[ContactRecord, StreamRecord]] = {}
        for parsed, record in self._intake.parse_all(records, lambda r: self.parse(r, accepted), result):
            current = newest.get(parsed.contact_id)
            # Within a batch only the newest version of a contact matters (newest wins anyway).
            if current is None or parsed.last_update > current[0].last_update:
                newest[parsed.contact_id] = (parsed, record)
        if not newest:
            return result
        items = list(newest.values())
        outcomes = self._joiner.on_ctrs([(parsed, record.data) for parsed, record in items])
        for parsed, outcome in self._intake.settle(items, outcomes, result):
            if outcome == "created":
                result.created += 1
            elif outcome == "updated":
                result.updated += 1
            else:
                result.unchanged += 1
            log.debug("contact", contact_id=parsed.contact_id, outcome=str(outcome))
        return result

    def reject(self, error: InvalidInput, result: BatchResult) -> None:
        """Quarantine input a source found unusable before it became a record (corrupt bytes
        in an archive object), exactly as a bad record; durable on return."""
        result.read += 1
        self._intake.quarantine(error, result)
