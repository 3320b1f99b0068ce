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

from processor.adapters.dynamodb.quarantine import Quarantine
from processor.adapters.sqs.consumer import ConsumerStats, SqsConsumer
from processor.app.ctr_path import Clock
from processor.app.joiner import Joiner
from processor.core.s3_events import ObjectCreated, S3Notification, parse_notification
from processor.platform.exceptions import InvalidInput
from processor.platform.fault_points import fault_point
from processor.platform.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger("processor.recordings")


@dataclass
class RecordingConsumerStats(ConsumerStats):
    objects: int = 0
    test_events: int = 0
    ignored_keys: int = 0


@dataclass
class RecordingEventConsumer(SqsConsumer[S3Notification]):
    sqs: SQSClient
    queue_url: str
    dlq_url: str | None
    queue_name: str
    joiner: Joiner
    quarantine: Quarantine
    clock: Clock
    wait_seconds: int = 5  # long poll; short enough for SIGTERM to stop within 10 s
    stats: RecordingConsumerStats = field(default_factory=RecordingConsumerStats)
    label: ClassVar[str] = "recordings"
    noun: ClassVar[str] = "recording notification"
    fault_before_delete: ClassVar[bool] = True
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
                notification = self.parse(message.get("Body", ""))
            except InvalidInput as exc:
                self.reject(message, exc)
                continue
            parsed.append((message, list(notification.objects)))
        objects = [obj for _, objs in parsed for obj in objs]
        try:
            outcomes = self.joiner.on_objects(objects) if objects else []
        except Exception as exc:
            self.failed([m for m, _ in parsed], exc)
            return
        done: list[dict[str, Any]] = []
        position = 0
        for message, objs in parsed:
            results = outcomes[position : position + len(objs)]
            position += len(objs)
            failed = [r for r in results if isinstance(r, Exception)]
            if failed:
                self.failed([message], failed[0])
                continue
            self.stats.objects += len(objs)
            done.append(message)
        fault_point("before_delete", "sqs")  # the effects are durable; the messages are still in the queue
        self._delete_many(done)

    def parse(self, body: str) -> S3Notification:
        notification = parse_notification(body)
        if notification.test_event:
            self.stats.test_events += 1
        self.stats.ignored_keys += notification.ignored
        return notification

    def apply(self, parsed: S3Notification, message: dict[str, Any]) -> None:
        for obj in parsed.objects:
            self.joiner.on_object(obj)
            self.stats.objects += 1


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
