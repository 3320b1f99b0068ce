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
from typing import TYPE_CHECKING, Any

from processor.adapters.aws import is_transient
from processor.adapters.quarantine import Quarantine
from processor.core.ctr import format_instant
from processor.core.s3_events import parse_notification
from processor.exceptions import InvalidInput, SourcePosition
from processor.faults import fault_point
from processor.joiner import Joiner
from processor.logs import get_logger
from processor.pipeline import Clock
from processor.retry import retry_transient

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
class RecordingEventConsumer:
    sqs: SQSClient
    queue_url: str
    dlq_url: str | None
    queue_name: str
    joiner: Joiner
    quarantine: Quarantine
    clock: Clock
    wait_seconds: int = 5  # long poll; short enough for SIGTERM to stop within 10 s
    stats: ConsumerStats = field(default_factory=ConsumerStats)

    def poll_once(self) -> int:
        """Receive one batch and handle it; returns how many messages were received."""
        response = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=self.wait_seconds,
            AttributeNames=["ApproximateReceiveCount"],
        )
        messages = response.get("Messages", [])
        for message in messages:
            self.handle(dict(message))
        return len(messages)

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
        position = SourcePosition(
            source="sqs", stream_or_queue=self.queue_name, sequence_number=message.get("MessageId")
        )
        located = error.at(
            position, error.payload if error.payload is not None else message.get("Body", "").encode()
        )
        at = format_instant(self.clock())
        retry_transient(lambda: self.quarantine.put(located, at), "quarantine.put")
        if self.dlq_url:
            dlq_url = self.dlq_url
            retry_transient(
                lambda: self.sqs.send_message(
                    QueueUrl=dlq_url,
                    MessageBody=message.get("Body", "") or "(empty)",
                    MessageAttributes={"qm-reason": {"DataType": "String", "StringValue": error.reason}},
                ),
                "sqs.send_dlq",
            )
        self._delete(message)
        self.stats.quarantined += 1
        log.warning(
            "recording notification quarantined and dead-lettered",
            reason=error.reason,
            detail=error.detail,
            message_id=message.get("MessageId"),
        )

    def _delete(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        retry_transient(
            lambda: self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt), "sqs.delete"
        )

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                log.warning("recordings queue unavailable; retrying", error=type(exc).__name__)
                stop.wait(2.0)


def run_sweeper(joiner: Joiner, interval: float, stop: threading.Event) -> None:
    while not stop.wait(interval):
        try:
            report = joiner.sweep()
        except Exception as exc:
            log.warning("sweep failed; retrying at the next interval", error=type(exc).__name__)
            continue
        try:
            from processor import metrics

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
