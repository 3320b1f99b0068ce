"""How many commands wait for an agent's desktop: the depth of the agent's SQS FIFO queue."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from processor.core.agent_queue import agent_queue_name

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

_MISSING = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")


class AgentQueueDepths:
    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs
        self._urls: dict[str, str] = {}

    def depth(self, username: str) -> int | None:
        """Messages waiting or in flight on the agent's queue; None when it has no queue yet."""
        url = self._urls.get(username)
        try:
            if url is None:
                url = self._sqs.get_queue_url(QueueName=agent_queue_name(username))["QueueUrl"]
                self._urls[username] = url
            attributes = self._sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
            )["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in _MISSING:
                self._urls.pop(username, None)
                return None
            raise
        return int(attributes.get("ApproximateNumberOfMessages", "0")) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", "0")
        )
