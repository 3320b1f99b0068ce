"""The recordings queue: S3 ``ObjectCreated`` notifications -> the join.

A message is deleted only after its effect is durable (the object half written and the
contact, if any, re-decided and emitted). A message that cannot be parsed is quarantined
with its body and sent to the dead-letter queue, then deleted; a transient failure leaves
the message in the queue, to come back after its visibility timeout (and to the DLQ by the
queue's redrive policy if it keeps failing).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from processor.adapters.aws import is_transient
from processor.adapters.dynamodb.quarantine import Quarantine
from processor.adapters.sqs.consumer import SqsConsumer
from processor.app.ctr_path import Clock
from processor.app.joiner import Joiner
from processor.core.ctr import format_instant
from processor.core.s3_events import ObjectCreated, parse_notification
from processor.platform.exceptions import InvalidInput
from processor.platform.fault_points import fault_point
from processor.platform.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger("processor.recordings")


@dataclass
class ConsumerStats:
    messages: int = 0
    objects: int = 0
    test_events: int = 0
    ignored_keys: int = 0
    quarantined: int = 0
    failures: int = 0


@dataclass
class RecordingEventConsumer(SqsConsumer):
    sqs: SQSClient
    queue_url: str
    dlq_url: str | None
    queue_name: str
    joiner: Joiner
    quarantine: Quarantine
    clock: Clock
    wait_seconds: int = 5  # long poll; short enough for SIGTERM to stop within 10 s
    stats: ConsumerStats = field(default_factory=ConsumerStats)
    label: ClassVar[str] = "recordings"
    attribute_names: ClassVar[tuple[str, ...]] = ("ApproximateReceiveCount",)

    def handle_batch(self, messages: list[dict[str, Any]]) -> None:
        """Handle a receive side by side: every object of every message in one batch of the
        join (headers read in parallel, halves written in bulk), then one DeleteMessageBatch
        for the messages whose objects are all durable. A message with an object that failed
        stays in the queue, to come back after its visibility timeout."""
        parsed: list[tuple[dict[str, Any], list[ObjectCreated]]] = []
        for message in messages:
            self.stats.messages += 1
            try:
                notification = parse_notification(message.get("Body", ""))
            except InvalidInput as exc:
                self._reject(message, exc)
                continue
            if notification.test_event:
                self.stats.test_events += 1
            self.stats.ignored_keys += notification.ignored
            parsed.append((message, list(notification.objects)))
        objects = [obj for _, objs in parsed for obj in objs]
        try:
            outcomes = self.joiner.on_objects(objects) if objects else []
        except Exception as exc:
            self.stats.failures += len(parsed)
            log.error(
                "recording notifications failed; left in the queue for redelivery",
                messages=len(parsed),
                error=type(exc).__name__,
                transient=is_transient(exc),
            )
            return
        done: list[dict[str, Any]] = []
        position = 0
        for message, objs in parsed:
            results = outcomes[position : position + len(objs)]
            position += len(objs)
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                self.stats.failures += 1
                log.error(
                    "recording notification failed; left in the queue for redelivery",
                    message_id=message.get("MessageId"),
                    error=type(failed[0]).__name__,
                    transient=is_transient(failed[0]),
                )
                continue
            self.stats.objects += len(objs)
            done.append(message)
        fault_point("before_delete", "sqs")  # the effects are durable; the messages are still in the queue
        self._delete_many(done)

    def handle(self, message: dict[str, Any]) -> bool:
        """Handle one message; True when it was deleted (done or quarantined)."""
        self.stats.messages += 1
        body = message.get("Body", "")
        try:
            notification = parse_notification(body)
        except InvalidInput as exc:
            self._reject(message, exc)
            return True
        if notification.test_event:
            self.stats.test_events += 1
        self.stats.ignored_keys += notification.ignored
        try:
            for obj in notification.objects:
                self.joiner.on_object(obj)
                self.stats.objects += 1
        except Exception as exc:
            self.stats.failures += 1
            log.error(
                "recording notification failed; left in the queue for redelivery",
                message_id=message.get("MessageId"),
                error=type(exc).__name__,
                transient=is_transient(exc),
            )
            return False
        fault_point("before_delete", "sqs")  # the effect is durable; the message is still in the queue
        self._delete(message)
        return True

    def _reject(self, message: dict[str, Any], error: InvalidInput) -> None:
        self._set_aside(message, error, format_instant(self.clock()), self.dlq_url)
        self.stats.quarantined += 1
        log.warning(
            "recording notification quarantined and dead-lettered",
            reason=error.reason,
            detail=error.detail,
            message_id=message.get("MessageId"),
        )


def run_sweeper(joiner: Joiner, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            report = joiner.sweep()
        except Exception as exc:
            log.warning("sweep failed; retrying at the next interval", error=type(exc).__name__)
            continue
        try:
            from processor.platform import metrics

            metrics.joins_pending.set(sum(joiner.joins.count_pending()))
        except Exception:  # noqa: S110 - a gauge must never stop the sweeper
            pass
        if report.reconciled or report.orphans:
            log.info(
                "join windows closed",
                reconciled=report.reconciled,
                recording_missing=report.missing,
                orphaned_recordings=report.orphans,
            )
