"""How the desktop talks to the server: its command queue, the results queue, S3.

Each behind a small Protocol; the SQS/S3 implementations use boto3 clients from
``AwsClients``. An upload with a pre-signed URL needs no AWS credentials at all.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from botocore.exceptions import ClientError

from processor.core.desktop_protocol import UploadTarget
from processor.platform.exceptions import QmIngestError, TransientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient


class UploadRejected(QmIngestError):
    """The upload URL refused the recording (expired or wrong signature): not retried as is."""


#: A command is in the journal milliseconds after it is received, and its message deleted
#: right after; a short visibility timeout lets a message taken by a long poll of a
#: process that died (a FIFO group is blocked while one is in flight) come back soon.
VISIBILITY_SECONDS = 10
_MISSING_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


@dataclass(frozen=True)
class QueuedCommand:
    body: bytes
    receipt: str
    message_id: str


class CommandQueue(Protocol):
    def receive(self, wait_seconds: int, max_messages: int = 10) -> list[QueuedCommand]: ...

    def delete(self, receipt: str) -> None: ...


class ResultSink(Protocol):
    def send(self, result: dict[str, Any]) -> None:
        """Durable on return (the server will see it)."""
        ...


class Uploader(Protocol):
    def put(self, target: UploadTarget, data: bytes) -> None: ...


class SqsQueue:
    """An SQS queue by name (URL resolved on first use: the server may create it later)."""

    def __init__(self, sqs: SQSClient, name: str) -> None:
        self._sqs = sqs
        self.name = name
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            try:
                self._url = self._sqs.get_queue_url(QueueName=self.name)["QueueUrl"]
            except ClientError as exc:
                if exc.response["Error"]["Code"] in _MISSING_QUEUE:
                    raise TransientError(f"queue {self.name} does not exist (yet)") from None
                raise
        return self._url


class SqsCommandQueue(SqsQueue):
    def receive(self, wait_seconds: int, max_messages: int = 10) -> list[QueuedCommand]:
        response = self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(10, max_messages)),
            WaitTimeSeconds=max(0, min(20, wait_seconds)),
            VisibilityTimeout=VISIBILITY_SECONDS,
        )
        return [
            QueuedCommand(m["Body"].encode(), m["ReceiptHandle"], m["MessageId"])
            for m in response.get("Messages", [])
        ]

    def delete(self, receipt: str) -> None:
        self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=receipt)


class SqsResultSink(SqsQueue):
    def send(self, result: dict[str, Any]) -> None:
        self._sqs.send_message(QueueUrl=self.url, MessageBody=orjson.dumps(result).decode())


class S3Uploader:
    """PUT to the pre-signed URL when the command has one, else PutObject with boto3."""

    def __init__(self, s3: S3Client | None, timeout: float = 120.0) -> None:
        self._s3 = s3
        self._timeout = timeout

    def put(self, target: UploadTarget, data: bytes) -> None:
        if target.url:
            self._put_url(target.url, data)
            return
        if self._s3 is None:
            raise TransientError("no pre-signed URL and no S3 client to upload with")
        self._s3.put_object(
            Bucket=target.bucket, Key=target.key, Body=data, ContentType="application/octet-stream"
        )

    def _put_url(self, url: str, data: bytes) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("pre-signed URL must be http(s)")
        headers = {"Content-Type": "application/octet-stream"}  # urllib's default is a form body
        request = urllib.request.Request(url, data=data, method="PUT", headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(300).decode(errors="replace")
            if exc.code >= 500 or exc.code == 429:
                raise TransientError(f"upload failed: HTTP {exc.code} {detail}") from None
            raise UploadRejected(f"upload refused: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise TransientError(f"upload failed: {exc}") from None


def ensure_agent_queue(sqs: SQSClient, agent: str) -> str:
    """The agent's FIFO command queue (the server side normally creates it); its URL."""
    from processor.core.agent_queue import agent_queue_name

    response = sqs.create_queue(
        QueueName=agent_queue_name(agent),
        Attributes={"FifoQueue": "true", "MessageRetentionPeriod": str(14 * 24 * 3600)},
    )
    return response["QueueUrl"]
