"""Commands to desktops: durable record, per-agent FIFO queues, idempotent publishing.

SQS FIFO deduplication alone does not make publishing idempotent (5 minutes on AWS; the
emulator only deduplicates messages still queued), so every command is first recorded in
the commands table (key ``command_id``, deterministic per command), then sent with that id
as its deduplication id, then marked ``sent``. Publishing a command again (a retried batch,
a crash between the send and the mark, a replay of the stream) sends nothing once it is
marked; a crash before the mark resends it, and the desktop, which journals every
``command_id`` it handled, ignores the duplicate.

The agents table holds, per agent, what the server last told its desktop (recording or
not, the last agent event applied) and the last ``release_segments_before`` published.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from processor.core.agent_events import AgentRecording
from processor.core.agent_queue import agent_queue_name
from processor.core.ctr import format_instant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_sqs import SQSClient

QUEUE_RETENTION_SECONDS = 14 * 24 * 3600  # the maximum: commands wait while the PC is off


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class CommandRecord:
    command_id: str
    agent: str
    type: str
    issued_at: str
    body: dict[str, Any]
    state: str  # pending | sent
    contact_id: str | None
    result: str | None  # the desktop's result type, once reported


class AgentQueues:
    """Per-agent FIFO queues, created on demand (URLs cached)."""

    def __init__(self, sqs: SQSClient) -> None:
        self._sqs = sqs
        self._urls: dict[str, str] = {}
        self._lock = threading.Lock()

    def url(self, agent: str) -> str:
        with self._lock:
            cached = self._urls.get(agent)
        if cached:
            return cached
        url = self._sqs.create_queue(
            QueueName=agent_queue_name(agent),
            Attributes={
                "FifoQueue": "true",
                "MessageRetentionPeriod": str(QUEUE_RETENTION_SECONDS),
                "VisibilityTimeout": "60",
            },
            tags={"qm-ingest:agent": agent[:256]},
        )["QueueUrl"]
        with self._lock:
            self._urls[agent] = url
        return url

    def depth(self, agent: str) -> int:
        attrs = self._sqs.get_queue_attributes(
            QueueUrl=self.url(agent), AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attrs.get("ApproximateNumberOfMessages", "0"))


class CommandStore:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def record(self, body: dict[str, Any]) -> CommandRecord:
        """Record the command (once); returns what is stored (possibly an earlier record)."""
        item: dict[str, Any] = {
            "command_id": {"S": body["command_id"]},
            "agent": {"S": body["agent"]},
            "type": {"S": body["type"]},
            "issued_at": {"S": body["issued_at"]},
            "body": {"S": orjson.dumps(body).decode()},
            "state": {"S": "pending"},
        }
        if body.get("contact_id"):
            item["contact_id"] = {"S": body["contact_id"]}
        try:
            self._ddb.put_item(
                TableName=self._table, Item=item, ConditionExpression="attribute_not_exists(command_id)"
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            existing = self.get(body["command_id"])
            assert existing is not None
            return existing
        return _record(item)

    def get(self, command_id: str) -> CommandRecord | None:
        item = self._ddb.get_item(
            TableName=self._table, Key={"command_id": {"S": command_id}}, ConsistentRead=True
        ).get("Item")
        return _record(item) if item else None

    def mark_sent(self, command_id: str) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key={"command_id": {"S": command_id}},
            UpdateExpression="SET #s = :sent",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":sent": {"S": "sent"}},
        )

    def mark_result(self, command_id: str, result: str, at: datetime) -> bool:
        """Record the desktop's result once; False when it was already recorded."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"command_id": {"S": command_id}},
                UpdateExpression="SET #r = :r, result_at = :at",
                ConditionExpression="attribute_exists(command_id) AND (attribute_not_exists(#r) OR #r <> :r)",
                ExpressionAttributeNames={"#r": "result"},
                ExpressionAttributeValues={":r": {"S": result}, ":at": {"S": format_instant(at)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def of_agent(self, agent: str, since: datetime, type_: str | None = None) -> list[CommandRecord]:
        """The agent's commands issued since ``since`` (the ``by_agent`` index), oldest first."""
        out: list[CommandRecord] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": "by_agent",
            "KeyConditionExpression": "agent = :a AND issued_at >= :s",
            "ExpressionAttributeValues": {":a": {"S": agent}, ":s": {"S": format_instant(since)}},
        }
        while True:
            page = self._ddb.query(**kwargs)
            out += [_record(item) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        out.sort(key=lambda r: r.issued_at)
        return [r for r in out if type_ is None or r.type == type_]


def _record(item: dict[str, Any]) -> CommandRecord:
    return CommandRecord(
        command_id=item["command_id"]["S"],
        agent=item["agent"]["S"],
        type=item["type"]["S"],
        issued_at=item["issued_at"]["S"],
        body=orjson.loads(item["body"]["S"]),
        state=item.get("state", {}).get("S", "pending"),
        contact_id=item.get("contact_id", {}).get("S"),
        result=item.get("result", {}).get("S"),
    )


class AgentStates:
    """Per-agent recording state (what the desktop was last told)."""

    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def load(self, agent: str) -> tuple[AgentRecording, str | None, str | None]:
        """(state, its stored last_event_at for the conditional save, last release published)."""
        item = self._ddb.get_item(
            TableName=self._table, Key={"agent": {"S": agent}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return AgentRecording(), None, None
        last = item.get("last_event_at", {}).get("S")
        return (
            AgentRecording(
                recording=bool(item.get("recording", {}).get("BOOL", False)),
                last_event_at=_instant(last),
                recent_contacts=tuple(
                    (_start, _seen)
                    for _start, _seen in (
                        (_instant(c[0]), _instant(c[1]))
                        for c in orjson.loads(item.get("contacts", {}).get("S", "[]"))
                    )
                    if _start is not None and _seen is not None
                ),
            ),
            last,
            item.get("released_before", {}).get("S"),
        )

    def save(self, agent: str, state: AgentRecording, expected_last: str | None) -> bool:
        """Save if no newer event was applied meanwhile (another worker, a lease move)."""
        names = {"#r": "recording", "#l": "last_event_at"}
        values: dict[str, Any] = {":r": {"BOOL": state.recording}}
        sets = ["#r = :r"]
        if state.last_event_at is not None:
            values[":l"] = {"S": format_instant(state.last_event_at)}
            sets.append("#l = :l")
        values[":c"] = {
            "S": orjson.dumps(
                [[format_instant(a), format_instant(b)] for a, b in state.recent_contacts]
            ).decode()
        }
        sets.append("contacts = :c")
        if expected_last is None:
            condition = "attribute_not_exists(#l)"
        else:
            condition = "#l = :expected"
            values[":expected"] = {"S": expected_last}
        expression = "SET " + ", ".join(sets)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"agent": {"S": agent}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _scan(self, filter_expression: str | None = None, values: dict[str, Any] | None = None) -> list[str]:
        names = {"#a": "agent", "#r": "recording"} if filter_expression else {"#a": "agent"}
        extra: dict[str, Any] = {"ExpressionAttributeNames": names}
        if filter_expression:
            extra.update(FilterExpression=filter_expression, ExpressionAttributeValues=values)
        agents: list[str] = []
        for page in self._ddb.get_paginator("scan").paginate(
            TableName=self._table, ProjectionExpression="#a", ConsistentRead=True, **extra
        ):
            agents += [item["agent"]["S"] for item in page.get("Items", [])]
        return sorted(agents)

    def agents(self) -> list[str]:
        """Every agent with a recording state: each one's desktop may hold segments."""
        return self._scan()

    def recording_agents(self) -> list[str]:
        """The agents whose desktops were last told to record."""
        return self._scan("#r = :t", {":t": {"BOOL": True}})

    def set_released(self, agent: str, before: datetime) -> bool:
        """Advance the published release watermark (never backwards)."""
        value = format_instant(before)
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"agent": {"S": agent}},
                UpdateExpression="SET released_before = :b",
                ConditionExpression="attribute_not_exists(released_before) OR released_before < :b",
                ExpressionAttributeValues={":b": {"S": value}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


class CommandPublisher:
    """Record, send (FIFO, one message group per agent), mark: idempotent by ``command_id``."""

    def __init__(self, store: CommandStore, queues: AgentQueues, sqs: SQSClient) -> None:
        self._store = store
        self._queues = queues
        self._sqs = sqs

    def publish(self, body: dict[str, Any], *, resend: bool = False, resend_tag: str | None = None) -> bool:
        """Publish ``body`` once; True when it was sent now. ``resend`` sends a recorded
        command again (recovery) with a fresh deduplication id."""
        stored = self._store.record(body)
        if stored.state == "sent" and not resend:
            return False
        message = stored.body if stored.state == "sent" else body
        dedup = message["command_id"] if not resend else f"{message['command_id']}#{resend_tag or 'r'}"
        self._sqs.send_message(
            QueueUrl=self._queues.url(message["agent"]),
            MessageBody=orjson.dumps(message).decode(),
            MessageGroupId="commands",
            MessageDeduplicationId=_dedup_id(dedup),
        )
        self._store.mark_sent(message["command_id"])
        return True


def _dedup_id(value: str) -> str:
    """SQS deduplication ids: at most 128 characters of [A-Za-z0-9] and punctuation."""
    import hashlib

    if len(value) <= 128 and all(c.isalnum() or c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~" for c in value):
        return value
    return hashlib.sha256(value.encode()).hexdigest()
