"""The CTR path, composed: parse -> tenant check -> join (map, enrich, emit); bad input -> quarantine.

Guarantee: :meth:`CtrIngest.process` returns only after every effect of the batch is
durable (contacts written, bad records quarantined). The caller may then checkpoint.
A transient AWS failure is retried until it succeeds (the batch is never skipped);
an :class:`InvalidInput` is quarantined exactly once and never retried.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from processor.adapters.aws import fails_the_batch
from processor.adapters.dynamodb.quarantine import Quarantine
from processor.core.batch import BatchResult, StreamRecord
from processor.core.ctr import AcceptedInstances, ContactRecord, check_instance, format_instant, parse_ctr
from processor.platform.exceptions import InvalidInput
from processor.platform.fault_points import fault_point
from processor.platform.logs import get_logger
from processor.platform.retry import retry_transient

log = get_logger("processor.app.ctr_path")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Parsed:
    record: ContactRecord
    source: StreamRecord


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

    def close(self) -> None:
        return None  # the join's pools are the join's (shared by every batch)

    def parse(self, record: StreamRecord, accepted: AcceptedInstances | None = None) -> ContactRecord:
        parsed = parse_ctr(record.data, max_bytes=self._max_bytes)
        check_instance(parsed, accepted or self._instances())
        return parsed

    def process(self, records: Sequence[StreamRecord]) -> BatchResult:
        result = BatchResult(read=len(records))
        newest: dict[str, _Parsed] = {}
        accepted = self._instances()  # once a batch: the console's instance is read within seconds
        for record in records:
            try:
                parsed = self.parse(record, accepted)
            except InvalidInput as exc:
                self._quarantine_one(exc.at(record.position, record.data), result)
                continue
            current = newest.get(parsed.contact_id)
            # Within a batch only the newest version of a contact matters (newest wins anyway).
            if current is None or parsed.last_update > current.record.last_update:
                newest[parsed.contact_id] = _Parsed(parsed, record)
        if not newest:
            return result
        items = list(newest.values())
        outcomes = self._joiner.on_ctrs([(item.record, item.source.data) for item in items])
        for item, outcome in zip(items, outcomes, strict=True):
            if isinstance(outcome, Exception):
                self._quarantine_one(self._record_failure(item, outcome), result)
            elif outcome == "created":
                result.created += 1
            elif outcome == "updated":
                result.updated += 1
            else:
                result.unchanged += 1
            if not isinstance(outcome, Exception):
                log.debug("contact", contact_id=item.record.contact_id, outcome=str(outcome))
        return result

    def _record_failure(self, item: _Parsed, exc: Exception) -> InvalidInput:
        """A CTR whose join failed. A failure of the surroundings (access denied, a missing
        table: :func:`fails_the_batch`) fails the batch, to be read again from the checkpoint;
        any other failure is this record's alone: it is quarantined with its payload and the
        reason, and the shard moves on (``quarantine retry`` runs it again after a fix)."""
        if fails_the_batch(exc):
            raise exc
        log.error(
            "CTR could not be processed; quarantined",
            contact_id=item.record.contact_id,
            error=type(exc).__name__,
            **item.source.position.as_dict(),
        )
        return InvalidInput.processing_error(exc, item.source.data, item.source.position)

    def reject(self, error: InvalidInput, result: BatchResult) -> None:
        """Quarantine input a source found unusable before it became a record (corrupt bytes
        in an archive object), exactly as a bad record; durable on return."""
        result.read += 1
        self._quarantine_one(error, result)

    def _quarantine_one(self, error: InvalidInput, result: BatchResult) -> None:
        at = format_instant(self._clock())
        qid = retry_transient(lambda: self._quarantine.put(error, at), "quarantine.put")
        fault_point("after_quarantine")
        result.count_quarantined(error.reason)
        log.warning(
            "record quarantined",
            reason=error.reason,
            detail=error.detail,
            quarantine_id=qid,
            **(error.position.as_dict() if error.position else {}),
        )
