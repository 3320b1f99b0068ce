"""The Firehose archive in S3: its objects (listed by hour folder, streamed chunk by chunk)
and the cursor of objects already imported (a DynamoDB table).

Cursor item, one per finished object: ``object`` (key: ``bucket/key``), ``etag``,
``size``, ``records``, ``imported``, ``quarantined``, ``finished_at``. An object counts as
done only with the same ETag: an object overwritten since is imported again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from processor.core.archive_layout import in_range, listing_prefixes, object_hour
from processor.core.ctr import format_instant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_s3 import S3Client

#: Bytes per read of an object's body: big enough for few calls, small enough to bound memory.
READ_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ArchiveObject:
    bucket: str
    key: str
    size: int
    etag: str
    hour: datetime | None = None  # the Firehose hour folder (None: unknown, e.g. a notification)

    @property
    def location(self) -> str:
        return f"{self.bucket}/{self.key}"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def list_archive(
    s3: S3Client, bucket: str, prefix: str, since: datetime | None, until: datetime | None
) -> list[ArchiveObject]:
    """The Firehose objects of ``[since, until)`` in delivery order (hour folder, then key:
    Firehose names objects after their delivery time). Only the hour folders the range
    overlaps are listed."""
    found: list[ArchiveObject] = []
    paginator = s3.get_paginator("list_objects_v2")
    for listing in listing_prefixes(prefix, since, until):
        for page in paginator.paginate(Bucket=bucket, Prefix=listing):
            for item in page.get("Contents", []):
                hour = object_hour(prefix, item["Key"])
                if hour is None or not in_range(hour, since, until):
                    continue
                found.append(ArchiveObject(bucket, item["Key"], int(item["Size"]), _etag(item["ETag"]), hour))
    found.sort(key=lambda o: (o.hour or datetime.min.replace(tzinfo=UTC), o.key))
    return found


def _etag(value: str) -> str:
    return value.strip('"')


def head_object(s3: S3Client, bucket: str, key: str) -> ArchiveObject | None:
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    return ArchiveObject(bucket, key, int(head["ContentLength"]), _etag(head["ETag"]))


def read_object(s3: S3Client, obj: ArchiveObject, chunk_size: int = READ_CHUNK) -> Iterator[bytes]:
    """The stored bytes of ``obj``, chunk by chunk (a streaming GET of the version listed:
    ``IfMatch`` its ETag, so an object replaced meanwhile fails instead of mixing)."""
    response = s3.get_object(Bucket=obj.bucket, Key=obj.key, IfMatch=f'"{obj.etag}"')
    body = response["Body"]
    try:
        yield from body.iter_chunks(chunk_size)
    finally:
        body.close()


@dataclass(frozen=True, slots=True)
class ObjectOutcome:
    records: int = 0
    imported: int = 0
    unchanged: int = 0
    quarantined: int = 0


class ArchiveCursor(Protocol):
    def done(self, objects: Iterable[ArchiveObject]) -> set[str]:
        """Locations of ``objects`` already imported (same ETag)."""
        ...

    def mark_done(self, obj: ArchiveObject, outcome: ObjectOutcome, now: datetime) -> None:
        """Record ``obj`` as imported; durable on return."""
        ...


class DynamoArchiveCursor:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def done(self, objects: Iterable[ArchiveObject]) -> set[str]:
        wanted = {o.location: o for o in objects}
        finished: set[str] = set()
        keys = list(wanted)
        for start in range(0, len(keys), 100):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"object": {"S": k}} for k in keys[start : start + 100]],
                    "ProjectionExpression": "#o, etag",
                    "ExpressionAttributeNames": {"#o": "object"},
                    "ConsistentRead": True,
                }
            }
            while request:
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    location = item["object"]["S"]
                    if item.get("etag", {}).get("S") == wanted[location].etag:
                        finished.add(location)
                request = dict(response.get("UnprocessedKeys") or {})
        return finished

    def mark_done(self, obj: ArchiveObject, outcome: ObjectOutcome, now: datetime) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "object": {"S": obj.location},
                "etag": {"S": obj.etag},
                "size": {"N": str(obj.size)},
                "records": {"N": str(outcome.records)},
                "imported": {"N": str(outcome.imported)},
                "quarantined": {"N": str(outcome.quarantined)},
                "finished_at": {"S": format_instant(now)},
            },
        )

    def count(self) -> int:
        total = 0
        for page in self._ddb.get_paginator("scan").paginate(TableName=self._table, Select="COUNT"):
            total += page.get("Count", 0)
        return total
