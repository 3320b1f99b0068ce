"""The join table: recording halves and the work the sweeper must do when windows close.

Items (key ``pk``):

``rec#<bucket>/<key>``  one per recording location: the *object half* (size, eTag, when it
                         was seen, its duration once read) and the *CTR half* (the contact
                         id that lists it). Written with ``UpdateItem`` on disjoint
                         attributes, so the two halves never overwrite each other, whoever
                         comes first; ``ReturnValues=ALL_NEW`` tells each writer what the
                         other half holds.
``ctr#<contact_id>``    a contact waiting for its recordings, due when its window closes.

Items carry ``due_shard``/``due_at`` (a sparse index, ``by_due``) while the sweeper has work
with them: a waiting contact, or an object that no CTR has claimed (an orphan candidate).
``expires_at`` is the table's TTL; DynamoDB deletes late, so reads ignore expired items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from processor.core.ctr import format_instant
from processor.core.join import RecordingObject
from processor.core.s3_events import epoch

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

DUE_SHARDS = 8
DUE_INDEX = "by_due"


def _due_shard(key: str) -> str:
    return f"due#{int(hashlib.sha1(key.encode()).hexdigest()[:4], 16) % DUE_SHARDS}"  # noqa: S324 - bucketing only


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class RecordingHalves:
    location: str
    contact_id: str | None
    obj: RecordingObject | None
    orphan_reported: bool


@dataclass(frozen=True)
class DueItem:
    kind: str  # "contact" | "recording"
    key: str  # contact id or recording location
    due_at: datetime


class DynamoJoinStore:
    def __init__(self, ddb: DynamoDBClient, table: str, retention: timedelta) -> None:
        self._ddb = ddb
        self._table = table
        self._retention = retention

    # --- recording halves --------------------------------------------------------------
    def _halves(self, item: dict[str, Any] | None, location: str, now: datetime) -> RecordingHalves:
        if not item or int(item.get("expires_at", {}).get("N", "0")) < epoch(now):
            return RecordingHalves(location, None, None, False)  # TTL deletes late: expired is absent
        obj = None
        if "obj_size" in item:
            duration = item.get("duration_s", {}).get("N")
            obj = RecordingObject(
                location=location,
                size=int(item["obj_size"]["N"]),
                seen_at=_instant(item["obj_seen_at"]["S"]),
                duration_seconds=float(duration) if duration is not None else None,
                duration_source=item.get("duration_source", {}).get("S"),
            )
        return RecordingHalves(
            location,
            item.get("contact_id", {}).get("S"),
            obj,
            "orphan_reported_at" in item,
        )

    def link_contact(self, location: str, contact_id: str, now: datetime) -> RecordingHalves:
        """Write the CTR half; the recording is no orphan candidate any more."""
        response = self._ddb.update_item(
            TableName=self._table,
            Key={"pk": {"S": f"rec#{location}"}},
            UpdateExpression="SET contact_id = :c, expires_at = :exp REMOVE due_shard, due_at",
            ExpressionAttributeValues={
                ":c": {"S": contact_id},
                ":exp": {"N": str(epoch(now + self._retention))},
            },
            ReturnValues="ALL_NEW",
        )
        return self._halves(response.get("Attributes"), location, now)

    def record_object(
        self,
        location: str,
        size: int,
        etag: str | None,
        now: datetime,
        *,
        orphan_due: datetime,
        duration: tuple[float, str] | None = None,
    ) -> RecordingHalves:
        """Write the object half (with its duration when already read). Returns both halves;
        without a CTR half the object becomes an orphan candidate, due at ``orphan_due``."""
        values: dict[str, Any] = {
            ":size": {"N": str(size)},
            ":seen": {"S": format_instant(now)},
            ":exp": {"N": str(epoch(now + self._retention))},
            ":etag": {"S": etag or ""},
        }
        if duration is not None:
            values[":d"] = {"N": repr(round(duration[0], 6))}
            values[":ds"] = {"S": duration[1]}
            duration_update = "duration_s = :d, duration_source = :ds"
        else:
            duration_update = ""
        try:
            # A new eTag (the object was overwritten) invalidates the cached duration.
            response = self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"rec#{location}"}},
                UpdateExpression=(
                    "SET obj_size = :size, obj_etag = :etag, "
                    "obj_seen_at = if_not_exists(obj_seen_at, :seen), expires_at = :exp"
                    + (f", {duration_update}" if duration_update else " REMOVE duration_s, duration_source")
                ),
                ConditionExpression="attribute_not_exists(obj_etag) OR obj_etag <> :etag",
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
            )
            halves = self._halves(response.get("Attributes"), location, now)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            halves = self.read(location, now)  # the same object again: nothing to change
        if halves.contact_id is None and not halves.orphan_reported:
            self._set_due_if_unclaimed(f"rec#{location}", orphan_due)
        return halves

    def _set_due_if_unclaimed(self, pk: str, due: datetime) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": pk}},
                UpdateExpression="SET due_shard = :s, due_at = :d",
                ConditionExpression="attribute_not_exists(contact_id) AND attribute_not_exists(due_at)",
                ExpressionAttributeValues={":s": {"S": _due_shard(pk)}, ":d": {"S": format_instant(due)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def set_duration(self, location: str, duration: float, source: str) -> None:
        self._ddb.update_item(
            TableName=self._table,
            Key={"pk": {"S": f"rec#{location}"}},
            UpdateExpression="SET duration_s = :d, duration_source = :s",
            ExpressionAttributeValues={":d": {"N": repr(round(duration, 6))}, ":s": {"S": source}},
        )

    def read(self, location: str, now: datetime) -> RecordingHalves:
        item = self._ddb.get_item(
            TableName=self._table, Key={"pk": {"S": f"rec#{location}"}}, ConsistentRead=True
        ).get("Item")
        return self._halves(item, location, now)

    def mark_orphan_reported(self, location: str, now: datetime) -> bool:
        """Report an orphan once: True for the caller that reports it."""
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"pk": {"S": f"rec#{location}"}},
                UpdateExpression="SET orphan_reported_at = :n REMOVE due_shard, due_at",
                ConditionExpression=(
                    "attribute_not_exists(contact_id) AND attribute_not_exists(orphan_reported_at)"
                ),
                ExpressionAttributeValues={":n": {"S": format_instant(now)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                self.clear_due(f"rec#{location}")
                return False
            raise
        return True

    # --- waiting contacts ----------------------------------------------------------------
    def mark_waiting(self, contact_id: str, deadline: datetime, now: datetime) -> None:
        pk = f"ctr#{contact_id}"
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "pk": {"S": pk},
                "due_shard": {"S": _due_shard(pk)},
                "due_at": {"S": format_instant(deadline)},
                "expires_at": {"N": str(epoch(max(deadline, now) + self._retention))},
            },
        )

    def clear_waiting(self, contact_id: str) -> None:
        self._ddb.delete_item(TableName=self._table, Key={"pk": {"S": f"ctr#{contact_id}"}})

    def clear_due(self, pk: str) -> None:
        self._ddb.update_item(
            TableName=self._table, Key={"pk": {"S": pk}}, UpdateExpression="REMOVE due_shard, due_at"
        )

    # --- the sweeper's work list ---------------------------------------------------------
    def due(self, now: datetime, limit: int = 500) -> Iterator[DueItem]:
        cutoff = format_instant(now)
        for shard in range(DUE_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": DUE_INDEX,
                "KeyConditionExpression": "due_shard = :s AND due_at <= :now",
                "ExpressionAttributeValues": {":s": {"S": f"due#{shard}"}, ":now": {"S": cutoff}},
                "Limit": limit,
            }
            while True:
                page = self._ddb.query(**kwargs)
                for item in page.get("Items", []):
                    pk = item["pk"]["S"]
                    kind, _, key = pk.partition("#")
                    yield DueItem(
                        "contact" if kind == "ctr" else "recording", key, _instant(item["due_at"]["S"])
                    )
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def count_pending(self) -> tuple[int, int]:
        """(waiting contacts, unclaimed recordings) with work scheduled; for metrics."""
        contacts = recordings = 0
        for shard in range(DUE_SHARDS):
            kwargs: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": DUE_INDEX,
                "KeyConditionExpression": "due_shard = :s",
                "ExpressionAttributeValues": {":s": {"S": f"due#{shard}"}},
                "ProjectionExpression": "pk",
            }
            while True:
                page = self._ddb.query(**kwargs)
                for item in page.get("Items", []):
                    if item["pk"]["S"].startswith("ctr#"):
                        contacts += 1
                    else:
                        recordings += 1
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return contacts, recordings
