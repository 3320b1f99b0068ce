"""What the service's SQS consumers share (recording notifications, Firehose archive
notifications, desktop results): receive a batch, handle each message, delete a message
only once its effect is durable, set aside what cannot be parsed, and keep polling through
an unreachable queue.

Subclasses are dataclasses that provide the attributes declared here and ``handle``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, ClassVar

from processor.adapters.dynamodb.quarantine import Quarantine
from processor.platform.exceptions import InvalidInput, SourcePosition
from processor.platform.logs import get_logger
from processor.platform.retry import retry_transient

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = get_logger("processor.sqs")

#: After a failed receive (the queue unreachable), the next try waits this long.
RETRY_PAUSE_S = 2.0


class SqsConsumer:
    sqs: SQSClient
    queue_url: str
    queue_name: str
    quarantine: Quarantine
    wait_seconds: int
    #: Names the queue in logs ("recordings", "archive", "results").
    label: ClassVar[str] = "sqs"
    #: Message attributes each receive asks for.
    attribute_names: ClassVar[tuple[str, ...]] = ()

    def handle(self, message: dict[str, Any]) -> bool:
        """Handle one message; True when it was deleted (done or set aside)."""
        raise NotImplementedError

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
