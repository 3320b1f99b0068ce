"""The quarantine: bad input kept with its payload, where it came from and why.

One DynamoDB item per bad input, keyed by a hash of its position and payload, so that
quarantining the same record again (a replay, a retried batch) is idempotent. Payloads
are stored zlib-compressed; one that does not fit in an item (400 KB) goes to S3 under
``quarantine/<id>`` in the quarantine bucket and the item points at it.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from processor.platform.exceptions import InvalidInput, SourcePosition

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

MAX_INLINE_PAYLOAD = 300_000
#: Characters of an input's problem kept with it.
MAX_DETAIL = 2000


@dataclass(frozen=True)
class QuarantineEntry:
    id: str
    reason: str
    detail: str
    position: dict[str, Any]
    payload: bytes | None
    quarantined_at: str
    status: str = "open"  # open | retried


def entry_id(position: SourcePosition | None, payload: bytes | None) -> str:
    digest = hashlib.sha256()
    digest.update(orjson.dumps(position.as_dict() if position else {}, option=orjson.OPT_SORT_KEYS))
    digest.update(b"\0")
    digest.update(payload or b"")
    return digest.hexdigest()[:32]


class Quarantine(Protocol):
    def put(self, error: InvalidInput, at: str) -> str:
        """Store ``error`` (with its payload and position); durable on return. Returns its id."""
        ...

    def list(self) -> Iterator[QuarantineEntry]: ...

    def mark_retried(self, entry_id: str) -> None: ...


class DynamoQuarantine:
    def __init__(
        self, ddb: DynamoDBClient, table: str, s3: S3Client | None = None, bucket: str | None = None
    ) -> None:
        self._ddb = ddb
        self._table = table
        self._s3 = s3
        self._bucket = bucket

    def put(self, error: InvalidInput, at: str) -> str:
        qid = entry_id(error.position, error.payload)
        item: dict[str, Any] = {
            "id": {"S": qid},
            "reason": {"S": error.reason},
            "detail": {"S": error.detail[:MAX_DETAIL]},
            "position": {"S": orjson.dumps(error.position.as_dict() if error.position else {}).decode()},
            "quarantined_at": {"S": at},
            "status": {"S": "open"},
        }
        if error.payload is not None:
            packed = zlib.compress(error.payload, 6)
            item["payload_bytes"] = {"N": str(len(error.payload))}
            if len(packed) <= MAX_INLINE_PAYLOAD or self._s3 is None or self._bucket is None:
                item["payload"] = {"B": packed[:MAX_INLINE_PAYLOAD]}
                if len(packed) > MAX_INLINE_PAYLOAD:
                    item["payload_truncated"] = {"BOOL": True}
            else:
                key = f"quarantine/{qid}"
                self._s3.put_object(Bucket=self._bucket, Key=key, Body=packed)
                item["payload_s3"] = {"S": f"{self._bucket}/{key}"}
        self._ddb.put_item(TableName=self._table, Item=item)
        return qid

    def list(self) -> Iterator[QuarantineEntry]:
        paginator = self._ddb.get_paginator("scan")
        for page in paginator.paginate(TableName=self._table):
            for item in page.get("Items", []):
                yield self._entry(item)

    def summaries(self) -> Iterator[tuple[str, str, str]]:
        """``(reason, source, status)`` of every entry, without reading payloads (audits)."""
        paginator = self._ddb.get_paginator("scan")
        for page in paginator.paginate(
            TableName=self._table,
            ProjectionExpression="reason, #p, #s",
            ExpressionAttributeNames={"#p": "position", "#s": "status"},
        ):
            for item in page.get("Items", []):
                position = orjson.loads(item["position"]["S"]) if "position" in item else {}
                status = item.get("status", {}).get("S", "open")
                yield item["reason"]["S"], str(position.get("source", "unknown")), status

    def mark_retried(self, entry_id: str) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key={"id": {"S": entry_id}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "retried"}},
        )

    def _entry(self, item: dict[str, Any]) -> QuarantineEntry:
        payload: bytes | None = None
        if "payload" in item:
            blob = item["payload"]["B"]
            payload = zlib.decompressobj().decompress(blob)
        elif "payload_s3" in item and self._s3 is not None:
            bucket, _, key = item["payload_s3"]["S"].partition("/")
            payload = zlib.decompress(self._s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return QuarantineEntry(
            id=item["id"]["S"],
            reason=item["reason"]["S"],
            detail=item["detail"]["S"],
            position=orjson.loads(item["position"]["S"]),
            payload=payload,
            quarantined_at=item["quarantined_at"]["S"],
            status=item.get("status", {}).get("S", "open"),
        )
