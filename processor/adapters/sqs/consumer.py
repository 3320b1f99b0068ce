"""What the service's SQS consumers share (recording notifications, Firehose archive
notifications, desktop results): one message template and one bad-input policy.

Receive a batch; for each message, :meth:`SqsConsumer.parse` its body and
:meth:`SqsConsumer.apply` it. Input that can never succeed (:class:`InvalidInput`, from
either step) is set aside: quarantined with its body and reason, copied to the dead-letter
queue when there is one, deleted. Any other failure leaves the message in the queue, to come
back after its visibility timeout (and reach the dead-letter queue after the redrive limit).
A message is deleted only once its effect is durable. An unreachable queue is polled again.

Subclasses are dataclasses that provide the attributes declared here, ``parse`` and ``apply``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from processor.adapters.aws import is_transient
from processor.adapters.dynamodb.quarantine import Quarantine
from processor.core.ctr import format_instant
from processor.platform.exceptions import InvalidInput, SourcePosition
from processor.platform.fault_points import fault_point
from processor.platform.logs import get_logger
from processor.platform.retry import retry_transient

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger("processor.sqs")

#: After a failed receive (the queue unreachable), the next try waits this long.
RETRY_PAUSE_S = 2.0

Parsed = TypeVar("Parsed")


@dataclass
class ConsumerStats:
    messages: int = 0
    quarantined: int = 0
    failures: int = 0


class SqsConsumer(Generic[Parsed]):
    sqs: SQSClient
    queue_url: str
    queue_name: str
    quarantine: Quarantine
    wait_seconds: int
    #: Where set-aside messages are copied (None: quarantined only).
    dlq_url: str | None
    clock: Callable[[], datetime]
    stats: ConsumerStats
    #: Names the queue in logs ("recordings", "archive", "results").
    label: ClassVar[str] = "sqs"
    #: Names one message in logs ("recording notification", ...).
    noun: ClassVar[str] = "message"
    #: Message attributes each receive asks for.
    attribute_names: ClassVar[tuple[str, ...]] = ()
    #: Whether the fault suite's ``before_delete`` point (effect durable, message not yet
    #: deleted) is armed in this consumer.
    fault_before_delete: ClassVar[bool] = False

    def parse(self, body: str) -> Parsed:
        """The message body as the consumer needs it; :class:`InvalidInput` if it is unusable."""
        raise NotImplementedError

    def apply(self, parsed: Parsed, message: dict[str, Any]) -> None:
        """The message's effect, durable on return; :class:`InvalidInput` if it can never
        succeed, any other exception to have it delivered again."""
        raise NotImplementedError

    def handle(self, message: dict[str, Any]) -> bool:
        """Handle one message; True when it was deleted (done or set aside)."""
        self.stats.messages += 1
        try:
            self.apply(self.parse(message.get("Body", "")), message)
        except InvalidInput as exc:
            self.reject(message, exc)
            return True
        except Exception as exc:
            self.failed([message], exc)
            return False
        if self.fault_before_delete:
            fault_point("before_delete", "sqs")  # the effect is durable; the message is still in the queue
        self._delete(message)
        return True

    def reject(self, message: dict[str, Any], error: InvalidInput) -> None:
        """Set aside a message that can never succeed (see :meth:`_set_aside`)."""
        self._set_aside(message, error, format_instant(self.clock()), self.dlq_url)
        self.stats.quarantined += 1
        log.warning(
            f"{self.noun} quarantined" + (" and dead-lettered" if self.dlq_url else ""),
            reason=error.reason,
            detail=error.detail,
            message_id=message.get("MessageId"),
        )

    def failed(self, messages: list[dict[str, Any]], exc: Exception) -> None:
        """Messages whose effect failed for a reason of the moment: left in the queue."""
        self.stats.failures += len(messages)
        log.error(
            f"{self.noun} failed; left in the queue for redelivery",
            messages=len(messages),
            message_id=messages[0].get("MessageId") if len(messages) == 1 else None,
            error=type(exc).__name__,
            transient=is_transient(exc),
        )

    def poll_once(self) -> int:
        """Receive one batch and handle it; returns how many messages were received."""
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MaxNumberOfMessages": 10,
            "WaitTimeSeconds": self.wait_seconds,
        }
        if self.attribute_names:
            request["AttributeNames"] = list(self.attribute_names)
        messages = self.sqs.receive_message(**request).get("Messages", [])
        if messages:
            self.handle_batch([dict(m) for m in messages])
        return len(messages)

    def handle_batch(self, messages: list[dict[str, Any]]) -> None:
        """Handle one receive; by default message by message."""
        for message in messages:
            self.handle(message)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:
                log.warning(f"{self.label} queue unavailable; retrying", error=type(exc).__name__)
                stop.wait(RETRY_PAUSE_S)

    def _delete(self, message: dict[str, Any]) -> None:
        receipt = message["ReceiptHandle"]
        retry_transient(
            lambda: self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt), "sqs.delete"
        )

    def _delete_many(self, messages: list[dict[str, Any]]) -> None:
        """Delete messages whose effects are durable, ten a request; one that failed to
        delete is tried again alone (it would otherwise come back and be handled twice,
        harmlessly, but for nothing)."""
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)]
            response = retry_transient(
                lambda e=entries: self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=e),  # type: ignore[misc]
                "sqs.delete_batch",
            )
            for failed in response.get("Failed", []):
                if failed.get("SenderFault"):
                    log.warning(f"{self.label} message could not be deleted", code=failed.get("Code"))
                    continue
                self._delete(chunk[int(failed["Id"])])

    def _set_aside(self, message: dict[str, Any], error: InvalidInput, at: str, dlq_url: str | None) -> None:
        """Quarantine the message with its body and reason, copy it to the dead-letter queue
        (when there is one), then delete it: it can never succeed, so it must not come back."""
        body = message.get("Body", "")
        position = SourcePosition(
            source="sqs", stream_or_queue=self.queue_name, sequence_number=message.get("MessageId")
        )
        located = error.at(position, error.payload if error.payload is not None else body.encode())
        retry_transient(lambda: self.quarantine.put(located, at), "quarantine.put")
        if dlq_url:
            retry_transient(
                lambda: self.sqs.send_message(
                    QueueUrl=dlq_url,
                    MessageBody=body or "(empty)",
                    MessageAttributes={"qm-reason": {"DataType": "String", "StringValue": error.reason}},
                ),
                "sqs.send_dlq",
            )
        self._delete(message)
