"""The console's audit log: every change and every reveal of a phone number, who and when.

One DynamoDB item per entry (``id`` = instant + random suffix), never updated or deleted
by qm-ingest; the ``by_day`` index lists a day's entries newest first. The detail holds
identifiers (contact id, field, usernames, changed settings), never a phone number.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


@dataclass(frozen=True)
class AuditEntry:
    at: str
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


class AuditLog(Protocol):
    def record(self, entry: AuditEntry) -> None:
        """Durable on return: a change is reported done only after its entry is written."""
        ...


class DynamoAuditLog:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def record(self, entry: AuditEntry) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "id": {"S": f"{entry.at}#{uuid.uuid4().hex[:12]}"},
                "day": {"S": entry.at[:10]},
                "at": {"S": entry.at},
                "actor": {"S": entry.actor},
                "action": {"S": entry.action},
                "target": {"S": entry.target},
                "detail": {"S": orjson.dumps(entry.detail).decode()},
            },
            ConditionExpression="attribute_not_exists(id)",
        )

    def recent(self, day: str, limit: int = 50) -> list[AuditEntry]:
        response = self._ddb.query(
            TableName=self._table,
            IndexName="by_day",
            KeyConditionExpression="#d = :d",
            ExpressionAttributeNames={"#d": "day"},
            ExpressionAttributeValues={":d": {"S": day}},
            ScanIndexForward=False,
            Limit=limit,
        )
        return [
            AuditEntry(
                at=item["at"]["S"],
                actor=item["actor"]["S"],
                action=item["action"]["S"],
                target=item["target"]["S"],
                detail=orjson.loads(item["detail"]["S"]),
            )
            for item in response.get("Items", [])
        ]
