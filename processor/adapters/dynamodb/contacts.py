"""The contacts table: the current QM view of every contact, with its join state and outbox.

Item layout (DynamoDB), one item per contact:

``contact_id`` (key); ``last_update``, ``revision``, ``version`` (``<last_update>#<revision>``,
sortable); ``doc`` (the QM contact JSON, ``schemas/qm-contact.schema.json``); the join
state (``state``, ``first_seen``, ``deadline``, ``expected``, ``expected_media_seconds``,
``recording_durations``); ``ctr`` (the raw CTR, zlib-compressed, for audit);
``acd_id``, ``contact_date`` and ``connected_at`` (keys of the ``by_date`` and ``by_agent``
indexes), ``direction``, ``imported_at`` (first import of the contact).

Outbox: a final view is written with ``emit_version`` = its version and
``emit_state = pending`` in the same conditional write; the emitter claims it, publishes
it to the output stream, then marks it ``done``. A crash anywhere leaves ``pending``,
which the next visit of the contact (replayed batch, redelivered message, sweeper)
completes: see :mod:`processor.adapters.kinesis.output`.

Every write is conditional: a new CTR version only replaces an older one, any other
change only applies to the exact version it was computed from.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import orjson
from botocore.exceptions import ClientError

from processor.adapters.dynamodb import bulk
from processor.core.ctr import format_instant
from processor.core.emission import ClaimResult
from processor.core.join import ContactView, ExpectedRecording, JoinState
from processor.core.mapping import QmContact

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# A DynamoDB item holds at most 400 KB; raw CTRs above this are kept by reference only.
MAX_INLINE_CTR_BYTES = 300_000


class WriteOutcome(StrEnum):
    CREATED = "created"  # first version of this contact
    UPDATED = "updated"  # a newer version or revision replaced the stored one
    UNCHANGED = "unchanged"  # same or older version: nothing written


@dataclass(frozen=True)
class StoredContact:
    view: ContactView
    doc: dict[str, Any]
    imported_at: str | None
    ctr: bytes | None
    emit_version: str | None
    emit_state: str | None
    emit_attempted_at: str | None

    @property
    def contact_id(self) -> str:
        return self.view.contact_id

    @property
    def last_update(self) -> str:
        return self.view.last_update

    @property
    def version(self) -> str:
        return self.view.version

    @property
    def emission_pending(self) -> bool:
        return self.emit_state == "pending" and self.emit_version == self.version


def view_doc(view: ContactView, imported_at: str | None) -> dict[str, Any]:
    doc = view.contact.to_dict()
    doc["recording_durations"] = dict(view.recording_durations)
    doc["imported_at"] = imported_at
    doc["revision"] = view.revision
    doc["version"] = view.version
    return doc


def _instant(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def _expected_to_json(expected: tuple[ExpectedRecording, ...]) -> bytes:
    return orjson.dumps(
        [
            {
                "location": e.location,
                "deleted": e.deleted,
                "participant": e.participant,
                "start": format_instant(e.start) if e.start else None,
                "stop": format_instant(e.stop) if e.stop else None,
            }
            for e in expected
        ]
    )


def _expected_from_json(raw: str) -> tuple[ExpectedRecording, ...]:
    return tuple(
        ExpectedRecording(
            location=e["location"],
            deleted=e["deleted"],
            participant=e.get("participant"),
            start=_instant(e.get("start")),
            stop=_instant(e.get("stop")),
        )
        for e in orjson.loads(raw)
    )


def _contact_from_doc(doc: dict[str, Any]) -> QmContact:
    fields: dict[str, Any] = {name: doc.get(name) for name in QmContact.__dataclass_fields__}
    fields["recordings"] = tuple(doc.get("recordings") or ())
    fields["flags"] = tuple(doc.get("flags") or ())
    return QmContact(**fields)


def contact_item(
    view: ContactView,
    *,
    replaces: StoredContact | None,
    raw_ctr: bytes | None,
    now: datetime,
    claim_owner: str | None = None,
) -> dict[str, Any]:
    """The item :meth:`DynamoContactStore.put_action` writes for ``view`` (see the module)."""
    now_text = format_instant(now)
    imported_at = replaces.imported_at if replaces and replaces.imported_at else now_text
    contact = view.contact
    item: dict[str, Any] = {
        "contact_id": {"S": contact.contact_id},
        "last_update": {"S": contact.last_update},
        "revision": {"N": str(view.revision)},
        "version": {"S": view.version},
        "doc": {"S": orjson.dumps(view_doc(view, imported_at)).decode()},
        "state": {"S": view.state.value},
        "first_seen": {"S": format_instant(view.first_seen)},
        "expected": {"S": _expected_to_json(view.expected).decode()},
        "imported_at": {"S": imported_at},
        "direction": {"S": contact.direction},
    }
    if view.deadline is not None:
        item["deadline"] = {"S": format_instant(view.deadline)}
    if view.expected_media_seconds is not None:
        item["expected_media_seconds"] = {"N": repr(view.expected_media_seconds)}
    if contact.acd_id:
        item["acd_id"] = {"S": contact.acd_id}
    if contact.date and contact.connected_at:
        # Keys of the by_date / by_agent indexes (listing and filtering in the console).
        item["contact_date"] = {"S": contact.date}
        item["connected_at"] = {"S": contact.connected_at}
    ctr = raw_ctr if raw_ctr is not None else (replaces.ctr if replaces else None)
    if ctr is not None:
        packed = zlib.compress(ctr, 6)
        if len(packed) <= MAX_INLINE_CTR_BYTES:
            item["ctr"] = {"B": packed}
    if view.emittable:
        item["emit_version"] = {"S": view.version}
        item["emit_state"] = {"S": "pending"}
        if claim_owner is not None:
            # The writer publishes next: its claim and attempt ride on this write, so a
            # crash before the put is recovered by a read-back from this instant.
            item["emit_claim"] = {"S": claim_owner}
            item["emit_claimed_at"] = {"S": now_text}
            item["emit_attempted_at"] = {"S": now_text}
    return item


class DynamoContactStore:
    def __init__(self, client: DynamoDBClient, table: str, pool: ThreadPoolExecutor | None = None) -> None:
        self._ddb = client
        self._table = table
        self._pool = pool
        bulk.register_key(table, "contact_id")

    @property
    def table(self) -> str:
        return self._table

    def load_many(self, contact_ids: Iterable[str]) -> dict[str, StoredContact]:
        """The stored contacts among ``contact_ids`` (strongly consistent), in one wave."""
        keys = [(self._table, {"contact_id": {"S": c}}) for c in dict.fromkeys(contact_ids)]
        found = bulk.batch_get(self._ddb, keys, pool=self._pool) if keys else {}
        return {item["contact_id"]["S"]: stored_contact(item) for item in found.values()}

    # --- reads -------------------------------------------------------------------------
    def load(self, contact_id: str) -> StoredContact | None:
        response = self._ddb.get_item(
            TableName=self._table, Key={"contact_id": {"S": contact_id}}, ConsistentRead=True
        )
        item = response.get("Item")
        return stored_contact(item) if item else None

    def get(self, contact_id: str) -> StoredContact | None:
        return self.load(contact_id)

    def scan(self) -> Iterator[StoredContact]:
        paginator = self._ddb.get_paginator("scan")
        for page in paginator.paginate(TableName=self._table):
            for item in page.get("Items", []):
                yield stored_contact(item)

    # --- writes ------------------------------------------------------------------------
    def put_action(
        self,
        view: ContactView,
        *,
        replaces: StoredContact | None,
        raw_ctr: bytes | None,
        now: datetime,
        claim_owner: str | None = None,
        create_only: bool = False,
    ) -> dict[str, Any]:
        """The conditional put of ``view`` (a TransactWriteItems ``Put`` action): it applies
        only if the stored item is still ``replaces`` (or older). With ``claim_owner``, a final
        view's emission is claimed (and its attempt noted) in the same write; ``create_only``
        writes only if the contact does not exist at all."""
        item = contact_item(view, replaces=replaces, raw_ctr=raw_ctr, now=now, claim_owner=claim_owner)
        contact = view.contact
        values: dict[str, Any] = {}
        if create_only:
            condition = "attribute_not_exists(contact_id)"
        elif replaces is None or replaces.last_update < contact.last_update:
            condition = "attribute_not_exists(contact_id) OR last_update < :lu"
            values = {":lu": {"S": contact.last_update}}
        else:
            condition = "version = :v"
            values = {":v": {"S": replaces.version}}
        request: dict[str, Any] = {"TableName": self._table, "Item": item, "ConditionExpression": condition}
        if values:
            request["ExpressionAttributeValues"] = values
        return {"Put": request}

    def write(
        self,
        view: ContactView,
        *,
        replaces: StoredContact | None,
        raw_ctr: bytes | None,
        now: datetime,
        claim_owner: str | None = None,
        create_only: bool = False,
    ) -> bool:
        """Write one view (see :meth:`put_action`); False when its condition failed."""
        request = self.put_action(
            view,
            replaces=replaces,
            raw_ctr=raw_ctr,
            now=now,
            claim_owner=claim_owner,
            create_only=create_only,
        )["Put"]
        try:
            self._ddb.put_item(**request)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def emitted_action(self, contact_id: str, version: str) -> dict[str, Any]:
        """The TransactWriteItems ``Update`` that marks ``version`` emitted (its condition
        fails, and nothing more is needed, when a newer version has replaced it)."""
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"contact_id": {"S": contact_id}},
                "UpdateExpression": (
                    "SET emit_state = :done REMOVE emit_claim, emit_claimed_at, emit_attempted_at"
                ),
                "ConditionExpression": "emit_version = :v",
                "ExpressionAttributeValues": {":done": {"S": "done"}, ":v": {"S": version}},
            }
        }

    def transact(self, groups: Sequence[Sequence[dict[str, Any]]]) -> list[bulk.GroupOutcome]:
        """Write groups of actions (this table's and others', e.g. a contact's sweeper marker),
        each group atomically, in one wave (see :func:`bulk.transact_groups`)."""
        return bulk.transact_groups(self._ddb, groups, pool=self._pool)

    def claim_emission(
        self, contact_id: str, version: str, owner: str, now: datetime, lease_s: float
    ) -> ClaimResult:
        """Take the right to publish ``version``; a claim older than ``lease_s`` is stale."""
        stale = format_instant(datetime.fromtimestamp(now.timestamp() - lease_s, UTC))
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"contact_id": {"S": contact_id}},
                UpdateExpression="SET emit_claim = :o, emit_claimed_at = :now",
                ConditionExpression=(
                    "emit_version = :v AND emit_state = :pending AND "
                    "(attribute_not_exists(emit_claim) OR emit_claimed_at < :stale)"
                ),
                ExpressionAttributeValues={
                    ":o": {"S": owner},
                    ":now": {"S": format_instant(now)},
                    ":v": {"S": version},
                    ":pending": {"S": "pending"},
                    ":stale": {"S": stale},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            current = self.load(contact_id)
            if current is None or current.emit_version != version or current.emit_state != "pending":
                return ClaimResult.DONE
            return ClaimResult.BUSY
        return ClaimResult.CLAIMED

    def note_attempt(self, contact_id: str, version: str, owner: str, now: datetime) -> str | None:
        """Record that ``owner`` is about to publish; returns the previous attempt's time."""
        response = self._ddb.update_item(
            TableName=self._table,
            Key={"contact_id": {"S": contact_id}},
            UpdateExpression="SET emit_attempted_at = :now",
            ConditionExpression="emit_version = :v AND emit_claim = :o",
            ExpressionAttributeValues={
                ":now": {"S": format_instant(now)},
                ":v": {"S": version},
                ":o": {"S": owner},
            },
            ReturnValues="ALL_OLD",
        )
        previous = response.get("Attributes", {}).get("emit_attempted_at", {}).get("S")
        return str(previous) if previous else None

    def mark_emitted(self, contact_id: str, version: str) -> None:
        try:
            self._ddb.update_item(
                TableName=self._table,
                Key={"contact_id": {"S": contact_id}},
                UpdateExpression=(
                    "SET emit_state = :done REMOVE emit_claim, emit_claimed_at, emit_attempted_at"
                ),
                ConditionExpression="emit_version = :v",
                ExpressionAttributeValues={":done": {"S": "done"}, ":v": {"S": version}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def contact_ids_of_agent(self, acd_id: str) -> Iterator[str]:
        paginator = self._ddb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            IndexName="by_agent",
            KeyConditionExpression="acd_id = :a",
            ExpressionAttributeValues={":a": {"S": acd_id}},
            ProjectionExpression="contact_id",
        ):
            for item in page.get("Items", []):
                yield item["contact_id"]["S"]


def stored_contact(item: dict[str, Any]) -> StoredContact:
    ctr = item.get("ctr", {}).get("B")
    doc = orjson.loads(item["doc"]["S"])
    durations = doc.get("recording_durations") or {}
    view = ContactView(
        contact=_contact_from_doc(doc),
        revision=int(item.get("revision", {}).get("N", "0")),
        first_seen=_instant(
            item.get("first_seen", {}).get("S") or doc.get("imported_at") or doc["last_update"]
        )
        or datetime.min.replace(tzinfo=UTC),
        expected=_expected_from_json(item["expected"]["S"]) if "expected" in item else (),
        state=JoinState(
            item.get("state", {}).get("S", doc.get("join_state") or JoinState.NO_RECORDING_EXPECTED)
        ),
        deadline=_instant(item.get("deadline", {}).get("S")),
        expected_media_seconds=float(item["expected_media_seconds"]["N"])
        if "expected_media_seconds" in item
        else None,
        recording_durations=durations,
    )
    return StoredContact(
        view=view,
        doc=doc,
        imported_at=item.get("imported_at", {}).get("S"),
        ctr=zlib.decompress(ctr) if ctr else None,
        emit_version=item.get("emit_version", {}).get("S"),
        emit_state=item.get("emit_state", {}).get("S"),
        emit_attempted_at=item.get("emit_attempted_at", {}).get("S"),
    )
