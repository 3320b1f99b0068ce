"""One bad-input policy for every stream consumer: the CTR path (KCL, replay, backfill,
quarantine retry) and the agent-event path.

A batch goes through three steps, whatever its records are:

1. :meth:`Intake.parse_all`: each record is parsed; :class:`InvalidInput` (malformed, wrong
   type, too big, another tenant's) quarantines that record with its payload, position and
   reason, and the batch goes on.
2. The consumer handles what parsed, and answers per item: an outcome, or the exception that
   item alone caused.
3. :meth:`Intake.settle`: an exception that is the surroundings' fault (access denied, a
   missing table: :func:`fails_the_batch`) fails the batch, to be read again from the
   checkpoint; any other is that record's alone: quarantined as ``processing_error``
   (``quarantine retry`` runs it again after a fix), and the shard moves on.

A transient AWS failure is retried inside the handlers (the batch waits, never skips), so
it never reaches here. The quarantine write is durable before the batch returns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from processor.adapters.aws import fails_the_batch
from processor.adapters.dynamodb.quarantine import Quarantine
from processor.core.batch import BatchResult, StreamRecord
from processor.core.ctr import format_instant
from processor.platform.exceptions import InvalidInput
from processor.platform.fault_points import fault_point
from processor.platform.logs import get_logger
from processor.platform.retry import retry_transient

log = get_logger("processor.app.intake")

Item = TypeVar("Item")
Outcome = TypeVar("Outcome")


class Intake:
    def __init__(
        self,
        quarantine: Quarantine,
        clock: Callable[[], Any],
        *,
        noun: str,
        describe: Callable[[Any], dict[str, Any]] = lambda _item: {},
    ) -> None:
        """``noun`` names a record in logs ("CTR", "agent event"); ``describe`` gives the
        fields that name a parsed item in logs (never personal data)."""
        self._quarantine = quarantine
        self._clock = clock
        self.noun = noun
        self._describe = describe

    def parse_all(
        self, records: Iterable[StreamRecord], parse: Callable[[StreamRecord], Item], result: BatchResult
    ) -> list[tuple[Item, StreamRecord]]:
        parsed = []
        for record in records:
            try:
                parsed.append((parse(record), record))
            except InvalidInput as exc:
                self.quarantine(exc.at(record.position, record.data), result)
        return parsed

    def settle(
        self,
        items: Sequence[tuple[Item, StreamRecord]],
        outcomes: Sequence[Outcome | Exception],
        result: BatchResult,
    ) -> list[tuple[Item, Outcome]]:
        """The items that succeeded with their outcomes; the failed ones quarantined (or the
        batch failed, see the module's text)."""
        done = []
        for (item, record), outcome in zip(items, outcomes, strict=True):
            if not isinstance(outcome, Exception):
                done.append((item, outcome))
                continue
            if fails_the_batch(outcome):
                raise outcome
            log.error(
                f"{self.noun} could not be processed; quarantined",
                error=type(outcome).__name__,
                **self._describe(item),
                **record.position.as_dict(),
            )
            self.quarantine(InvalidInput.processing_error(outcome, record.data, record.position), result)
        return done

    def quarantine(self, error: InvalidInput, result: BatchResult) -> None:
        at = format_instant(self._clock())
        qid = retry_transient(lambda: self._quarantine.put(error, at), "quarantine.put")
        fault_point("after_quarantine")
        result.count_quarantined(error.reason)
        log.warning(
            "record quarantined",
            kind=self.noun,
            reason=error.reason,
            detail=error.detail,
            quarantine_id=qid,
            **(error.position.as_dict() if error.position else {}),
        )


def each(
    handle: Callable[[Item], Outcome], items: Sequence[tuple[Item, StreamRecord]]
) -> list[Outcome | Exception]:
    """A handler of one item at a time, answered per item as :meth:`Intake.settle` takes it;
    a failure of the surroundings stops the batch at once (the rest would fail alike)."""
    outcomes: list[Outcome | Exception] = []
    for item, _ in items:
        try:
            outcomes.append(handle(item))
        except Exception as exc:
            if fails_the_batch(exc):
                raise
            outcomes.append(exc)
    return outcomes
