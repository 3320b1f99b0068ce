"""The contacts table: one item per contact, the newest version wins.

Item layout (DynamoDB):

``contact_id`` (S, key), ``last_update`` (S, the version: sortable UTC instant),
``doc`` (S, the QM contact as JSON, see ``schemas/qm-contact.schema.json``),
``ctr`` (B, the raw CTR, zlib-compressed, for audit), ``acd_id``, ``contact_date`` and
``connected_at`` (keys of the ``by_date`` and ``by_agent`` indexes), ``direction``,
``imported_at``.

Writes are conditional: a version is written only if the item does not exist or holds
an older ``last_update``. Replays, duplicates and out-of-order deliveries therefore
change nothing, whatever the interleaving of writers.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import orjson
from botocore.exceptions import ClientError

from processor.core.mapping import QmContact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# A DynamoDB item holds at most 400 KB; raw CTRs above this are kept by reference only.
MAX_INLINE_CTR_BYTES = 300_000


class WriteOutcome(StrEnum):
    CREATED = "created"  # first version of this contact
    UPDATED = "updated"  # a newer version replaced an older one
    UNCHANGED = "unchanged"  # same or older version: nothing written


@dataclass(frozen=True)
class StoredContact:
    doc: dict[str, Any]
    last_update: str
    imported_at: str | None
    ctr: bytes | None

    @property
    def contact_id(self) -> str:
        return str(self.doc["contact_id"])


class ContactStore(Protocol):
    def put_if_newer(self, contact: QmContact, raw_ctr: bytes | None, imported_at: str) -> WriteOutcome:
        """Write ``contact`` unless a same-or-newer version is stored. Durable on return."""
        ...

    def get(self, contact_id: str) -> StoredContact | None: ...

    def scan(self) -> Iterator[StoredContact]: ...


class DynamoContactStore:
    def __init__(self, client: DynamoDBClient, table: str) -> None:
        self._ddb = client
        self._table = table

    def put_if_newer(self, contact: QmContact, raw_ctr: bytes | None, imported_at: str) -> WriteOutcome:
        doc = contact.to_dict()
        doc["imported_at"] = imported_at
        item: dict[str, Any] = {
            "contact_id": {"S": contact.contact_id},
            "last_update": {"S": contact.last_update},
            "doc": {"S": orjson.dumps(doc).decode()},
            "imported_at": {"S": imported_at},
        }
        if contact.acd_id:
            item["acd_id"] = {"S": contact.acd_id}
        if contact.date and contact.connected_at:
            # Keys of the by_date / by_agent indexes (listing and filtering in the console).
            item["contact_date"] = {"S": contact.date}
            item["connected_at"] = {"S": contact.connected_at}
        item["direction"] = {"S": contact.direction}
        if raw_ctr is not None:
            packed = zlib.compress(raw_ctr, 6)
            if len(packed) <= MAX_INLINE_CTR_BYTES:
                item["ctr"] = {"B": packed}
        try:
            response = self._ddb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(contact_id) OR last_update < :v",
                ExpressionAttributeValues={":v": {"S": contact.last_update}},
                ReturnValues="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return WriteOutcome.UNCHANGED
            raise
        return WriteOutcome.UPDATED if response.get("Attributes") else WriteOutcome.CREATED

    def get(self, contact_id: str) -> StoredContact | None:
        response = self._ddb.get_item(
            TableName=self._table, Key={"contact_id": {"S": contact_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return _stored(item) if item else None

    def scan(self) -> Iterator[StoredContact]:
        paginator = self._ddb.get_paginator("scan")
        for page in paginator.paginate(TableName=self._table):
            for item in page.get("Items", []):
                yield _stored(item)


def _stored(item: dict[str, Any]) -> StoredContact:
    ctr = item.get("ctr", {}).get("B")
    return StoredContact(
        doc=orjson.loads(item["doc"]["S"]),
        last_update=item["last_update"]["S"],
        imported_at=item.get("imported_at", {}).get("S"),
        ctr=zlib.decompress(ctr) if ctr else None,
    )
