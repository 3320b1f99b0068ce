"""The join table: recording halves and the work the sweeper must do when windows close.

Items (key ``pk``), each written by one side only, so that none needs a condition and all
are written in bulk (BatchWriteItem) and read in bulk (BatchGetItem):

``link#<bucket>/<key>``  the *CTR half*: the contact id that lists the recording.
``obj#<bucket>/<key>``   the *object half*: size, eTag, when it was seen, its duration
                          (read from the WAV header by the side that saw the object).
``orphan#<bucket>/<key>`` an object that no CTR had claimed when it was seen: due at the
                          end of its window, when the sweeper reports it unless claimed.
``ctr#<contact_id>``     a contact waiting for its recordings, due when its window closes
                          (written and removed in the same transaction as the contact).

The two halves meet by *write, then read*: each side writes its half, then reads the
other's with a strongly consistent read, so whichever comes second sees both (both may,
and the contacts table's conditional writes make that harmless).

Markers carry ``due_shard``/``due_at`` (a sparse index, ``by_due``). ``expires_at`` is the
table's TTL; DynamoDB deletes late, so reads ignore expired items.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from processor.adapters.dynamodb import bulk
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


@dataclass(frozen=True)
class SeenObject:
    """An object half to write: what the notification (or a probe) and the header said."""

    obj: RecordingObject
    etag: str | None


@dataclass(frozen=True)
class DueItem:
    kind: str  # "contact" | "recording"
    key: str  # contact id or recording location
    due_at: datetime


class DynamoJoinStore:
    def __init__(
        self,
        ddb: DynamoDBClient,
        table: str,
        retention: timedelta,
        pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self._ddb = ddb
        self._table = table
        self._retention = retention
        self._pool = pool
        bulk.register_key(table, "pk")

    @property
    def table(self) -> str:
        return self._table

    def _expires(self, now: datetime) -> dict[str, str]:
        return {"N": str(epoch(now + self._retention))}

    def _live(self, item: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
        if not item or int(item.get("expires_at", {}).get("N", "0")) < epoch(now):
            return None  # TTL deletes late: expired is absent
        return item

    # --- recording halves --------------------------------------------------------------
    def link_requests(
        self, links: Iterable[tuple[str, str]], now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        """BatchWriteItem requests writing the CTR halves ((location, contact id) pairs)."""
        return [
            (
                self._table,
                {
                    "PutRequest": {
                        "Item": {
                            "pk": {"S": f"link#{location}"},
                            "contact_id": {"S": contact_id},
                            "expires_at": self._expires(now),
                        }
                    }
                },
            )
            for location, contact_id in links
        ]

    def object_requests(
        self, seen: Iterable[tuple[SeenObject, datetime | None]], now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        """BatchWriteItem requests writing object halves; each with its orphan marker when
        given a due time (no CTR had claimed the object when it was seen)."""
        requests: list[tuple[str, dict[str, Any]]] = []
        for item, orphan_due in seen:
            obj = item.obj
            attrs: dict[str, Any] = {
                "pk": {"S": f"obj#{obj.location}"},
                "obj_size": {"N": str(obj.size)},
                "obj_etag": {"S": item.etag or ""},
                "obj_seen_at": {"S": format_instant(obj.seen_at)},
                "expires_at": self._expires(now),
            }
            if obj.duration_seconds is not None:
                attrs["duration_s"] = {"N": repr(round(obj.duration_seconds, 6))}
            if obj.duration_source:
                attrs["duration_source"] = {"S": obj.duration_source}
            if obj.recorded_parties:
                attrs["recorded_parties"] = {"S": obj.recorded_parties}
            if obj.copy_location:
                attrs["copy_location"] = {"S": obj.copy_location}
            if obj.copy_error:
                attrs["copy_error"] = {"S": obj.copy_error}
            requests.append((self._table, {"PutRequest": {"Item": attrs}}))
            if orphan_due is not None:
                pk = f"orphan#{obj.location}"
                requests.append(
                    (
                        self._table,
                        {
                            "PutRequest": {
                                "Item": {
                                    "pk": {"S": pk},
                                    "due_shard": {"S": _due_shard(pk)},
                                    "due_at": {"S": format_instant(orphan_due)},
                                    "expires_at": self._expires(max(orphan_due, now)),
                                }
                            }
                        },
                    )
                )
        return requests

    def write(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Write link/object/marker requests in bulk; durable on return."""
        if requests:
            bulk.batch_write(self._ddb, requests, pool=self._pool)

    def read_halves(
        self, locations: Iterable[str], now: datetime, *, links: bool = True, objects: bool = True
    ) -> dict[str, RecordingHalves]:
        """Both halves of each location (strongly consistent), in one wave of BatchGetItem."""
        wanted = list(dict.fromkeys(locations))
        keys: list[tuple[str, dict[str, Any]]] = []
        for location in wanted:
            if links:
                keys.append((self._table, {"pk": {"S": f"link#{location}"}}))
            if objects:
                keys.append((self._table, {"pk": {"S": f"obj#{location}"}}))
        found = bulk.batch_get(self._ddb, keys, pool=self._pool) if keys else {}
        result: dict[str, RecordingHalves] = {}
        for location in wanted:
            link = self._live(found.get(bulk.item_id(self._table, {"pk": {"S": f"link#{location}"}})), now)
            obj = self._live(found.get(bulk.item_id(self._table, {"pk": {"S": f"obj#{location}"}})), now)
            result[location] = RecordingHalves(
                location,
                link.get("contact_id", {}).get("S") if link else None,
                _object(location, obj) if obj else None,
            )
        return result

    # --- waiting contacts ----------------------------------------------------------------
    def waiting_put(self, contact_id: str, deadline: datetime, now: datetime) -> dict[str, Any]:
        """The TransactWriteItems action that marks a contact waiting (due at ``deadline``)."""
        pk = f"ctr#{contact_id}"
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    "pk": {"S": pk},
                    "due_shard": {"S": _due_shard(pk)},
                    "due_at": {"S": format_instant(deadline)},
                    "expires_at": self._expires(max(deadline, now)),
                },
            }
        }

    def waiting_delete(self, contact_id: str) -> dict[str, Any]:
        """The TransactWriteItems action that removes a contact's waiting marker."""
        return {"Delete": {"TableName": self._table, "Key": {"pk": {"S": f"ctr#{contact_id}"}}}}

    def clear_waiting(self, contact_ids: Iterable[str]) -> None:
        self.write(
            [(self._table, {"DeleteRequest": {"Key": {"pk": {"S": f"ctr#{c}"}}}}) for c in contact_ids]
        )

    # --- orphans -------------------------------------------------------------------------
    def settle_orphans(self, locations: Sequence[str], now: datetime) -> list[str]:
        """Orphan candidates whose window closed: those a CTR claimed since lose their marker;
        the others are reported once (the one caller that removes the marker reports it).
        Returns the locations to report."""
        halves = self.read_halves(locations, now, objects=False)
        claimed = [loc for loc in locations if halves[loc].contact_id is not None]
        self.write(
            [(self._table, {"DeleteRequest": {"Key": {"pk": {"S": f"orphan#{loc}"}}}}) for loc in claimed]
        )
        reported: list[str] = []
        for location in locations:
            if halves[location].contact_id is not None:
                continue
            try:
                self._ddb.delete_item(
                    TableName=self._table,
                    Key={"pk": {"S": f"orphan#{location}"}},
                    ConditionExpression="attribute_exists(pk)",
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                    continue
                raise
            reported.append(location)
        return reported

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
                    if kind not in ("ctr", "orphan"):
                        continue
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


def _object(location: str, item: dict[str, Any]) -> RecordingObject:
    duration = item.get("duration_s", {}).get("N")
    return RecordingObject(
        location=location,
        size=int(item["obj_size"]["N"]),
        seen_at=_instant(item["obj_seen_at"]["S"]),
        duration_seconds=float(duration) if duration is not None else None,
        duration_source=item.get("duration_source", {}).get("S"),
        recorded_parties=item.get("recorded_parties", {}).get("S"),
        copy_location=item.get("copy_location", {}).get("S"),
        copy_error=item.get("copy_error", {}).get("S"),
    )
