"""In-memory implementations of the ports, for application tests and tools that need no AWS.

Each keeps the contract of its AWS-backed counterpart, which one contract suite checks against
both (``tests/contract/test_ports.py``, ``test_port_stores.py``): the quarantine is idempotent
per position and payload and keeps the payload whole; the archive cursor counts an object as
done only at the ETag it was imported at; the audit log keeps every entry, a day's newest
first; the output stream keeps every record with its arrival time and finds them back from a
time on; the user directory answers the known users of a lookup; the join store keeps each
recording's halves and markers until they expire, and reports an orphan to one caller only; the
contact store writes a view only over the version it was decided from (or an older CTR
version), each transaction's group all or nothing, and lets one holder at a time claim a
pending emission; the lease table moves a checkpoint only over the lease as it was read; the
commands are recorded and sent once per command id, a result recorded once; an agent's state is
saved only over the last event read; the stream's progress is the minimum of its open shards'
notes, none while one has none; the media read a recording's header and opening as the S3 one
reads them. They are thread-safe, as the services call them from pools.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from botocore.exceptions import ClientError

from processor.adapters.dynamodb.bulk import CONDITION_FAILED, GroupOutcome
from processor.adapters.dynamodb.console_audit_log import AuditEntry
from processor.adapters.dynamodb.contacts import StoredContact, contact_item, stored_contact
from processor.adapters.dynamodb.join_store import DueItem, RecordingHalves, SeenObject
from processor.adapters.dynamodb.quarantine import MAX_DETAIL, QuarantineEntry, entry_id
from processor.adapters.kinesis.output import READ_BACK_SKEW
from processor.adapters.s3.archive import ArchiveObject, ObjectOutcome
from processor.adapters.s3.call_recordings import PROBE_READ, Duration, ObjectInfo, measure
from processor.adapters.sqs.commands import CommandRecord
from processor.core.agent_events import AgentRecording
from processor.core.checkpoints import Checkpoint, LeaseState
from processor.core.ctr import format_instant
from processor.core.emission import ClaimResult
from processor.core.join import ContactView, RecordingObject
from processor.core.user_directory import QmUser
from processor.platform.exceptions import InvalidInput


class MemoryQuarantine:
    """:class:`processor.adapters.dynamodb.quarantine.Quarantine` in a dict."""

    def __init__(self) -> None:
        self._entries: dict[str, QuarantineEntry] = {}
        self._lock = threading.Lock()

    def put(self, error: InvalidInput, at: str) -> str:
        qid = entry_id(error.position, error.payload)
        entry = QuarantineEntry(
            id=qid,
            reason=error.reason,
            detail=error.detail[:MAX_DETAIL],
            # Stored as the DynamoDB one stores it: a JSON document, read back as a dict.
            position=orjson.loads(orjson.dumps(error.position.as_dict() if error.position else {})),
            payload=error.payload,
            quarantined_at=at,
        )
        with self._lock:
            self._entries[qid] = entry
        return qid

    def list(self) -> Iterator[QuarantineEntry]:
        with self._lock:
            entries = list(self._entries.values())
        return iter(entries)

    def summaries(self) -> Iterator[tuple[str, str, str]]:
        for entry in self.list():
            yield entry.reason, str(entry.position.get("source", "unknown")), entry.status

    def mark_retried(self, entry_id: str) -> None:
        with self._lock:
            entry = self._entries.get(entry_id)
            if entry is not None:
                self._entries[entry_id] = replace(entry, status="retried")


class MemoryArchiveCursor:
    """:class:`processor.adapters.s3.archive.ArchiveCursor` in a dict."""

    def __init__(self) -> None:
        self._done: dict[str, tuple[str, ObjectOutcome, datetime]] = {}
        self._lock = threading.Lock()

    def done(self, objects: Iterable[ArchiveObject]) -> set[str]:
        with self._lock:
            return {o.location for o in objects if (d := self._done.get(o.location)) and d[0] == o.etag}

    def mark_done(self, obj: ArchiveObject, outcome: ObjectOutcome, now: datetime) -> None:
        with self._lock:
            self._done[obj.location] = (obj.etag, outcome, now)

    def count(self) -> int:
        with self._lock:
            return len(self._done)


class MemoryAuditLog:
    """The console's audit log in a list (with the console's ``recent``).

    Held to :class:`processor.adapters.dynamodb.console_audit_log.AuditLog`'s contract.
    """

    def __init__(self) -> None:
        self._entries: list[AuditEntry] = []
        self._lock = threading.Lock()

    def record(self, entry: AuditEntry) -> None:
        with self._lock:
            self._entries.append(entry)

    def recent(self, day: str, limit: int = 50) -> list[AuditEntry]:
        with self._lock:
            of_day = [e for e in self._entries if e.at[:10] == day]
        return sorted(of_day, key=lambda e: e.at, reverse=True)[:limit]


class MemoryOutput:
    """:class:`processor.app.ports.OutputPort` in a list: each record with its arrival time
    (from ``clock``), found back from ``since`` less the same skew the stream's read-back allows."""

    def __init__(self, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._clock = clock
        self._records: list[tuple[datetime, bytes]] = []
        self._lock = threading.Lock()

    def publish(self, doc: dict[str, Any]) -> str:
        data = orjson.dumps(doc)
        with self._lock:
            self._records.append((self._clock(), data))
            return str(len(self._records))

    def put_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        for doc in docs:
            self.publish(doc)
        return [True] * len(docs)

    def find(self, wanted: Mapping[str, str], since: datetime, timeout_s: float = 30.0) -> set[str]:
        start = since - READ_BACK_SKEW
        with self._lock:
            arrived = [data for at, data in self._records if at >= start]
        return {eid for eid in wanted if any(f'"emission_id":"{eid}"'.encode() in data for data in arrived)}

    def contains(self, contact_id: str, emission: str, since: datetime, timeout_s: float = 30.0) -> bool:
        return bool(self.find({emission: contact_id}, since, timeout_s))

    def records(self, *, timeout_s: float = 120.0) -> Iterator[dict[str, Any]]:
        with self._lock:
            snapshot = [data for _, data in self._records]
        for data in snapshot:
            yield orjson.loads(data)


class MemoryUserDirectory:
    """:class:`processor.app.ports.UserDirectory` in a dict, with ``put`` as the users table's."""

    def __init__(self) -> None:
        self._users: dict[str, QmUser] = {}
        self._lock = threading.Lock()

    def put(self, user: QmUser, synced_at: str | None = None) -> None:
        with self._lock:
            self._users[user.username] = user

    def get_many(self, usernames: Iterable[str]) -> dict[str, QmUser]:
        with self._lock:
            return {name: self._users[name] for name in usernames if name in self._users}


class MemoryJoinStore:
    """:class:`processor.app.ports.JoinStore` in a dict: ``link#``, ``obj#``, ``orphan#`` and
    ``ctr#`` entries as the join table's items, each with the instant it expires at (entries
    past it are absent, as the table's reads ignore expired items).

    Its transaction actions (``waiting_put``, ``waiting_delete``) are applied by
    :meth:`apply`, which the in-memory contact store calls inside its own transactions."""

    def __init__(self, retention: timedelta = timedelta(days=7)) -> None:
        self._retention = retention
        # pk -> (expires at, value): a contact id, a RecordingObject, or a due time
        self._items: dict[str, tuple[datetime, Any]] = {}
        self._lock = threading.RLock()

    def _live(self, pk: str, now: datetime) -> Any:
        entry = self._items.get(pk)
        if entry is None or entry[0] < now:
            return None
        return entry[1]

    def link_requests(
        self, links: Iterable[tuple[str, str]], now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("put", {"pk": f"link#{loc}", "value": cid, "expires": now + self._retention})
            for loc, cid in links
        ]

    def object_requests(
        self, seen: Iterable[tuple[SeenObject, datetime | None]], now: datetime
    ) -> list[tuple[str, dict[str, Any]]]:
        requests: list[tuple[str, dict[str, Any]]] = []
        for item, orphan_due in seen:
            obj = item.obj
            if obj.duration_seconds is not None:  # stored rounded, as the table stores it
                obj = replace(obj, duration_seconds=round(obj.duration_seconds, 6))
            requests.append(
                ("put", {"pk": f"obj#{obj.location}", "value": obj, "expires": now + self._retention})
            )
            if orphan_due is not None:
                requests.append(
                    (
                        "put",
                        {
                            "pk": f"orphan#{obj.location}",
                            "value": orphan_due,
                            "expires": max(orphan_due, now) + self._retention,
                        },
                    )
                )
        return requests

    def write(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> None:
        with self._lock:
            for op, request in requests:
                if op == "put":
                    self._items[request["pk"]] = (request["expires"], request["value"])
                else:
                    self._items.pop(request["pk"], None)

    def read_halves(
        self, locations: Iterable[str], now: datetime, *, links: bool = True, objects: bool = True
    ) -> dict[str, RecordingHalves]:
        with self._lock:
            result: dict[str, RecordingHalves] = {}
            for loc in dict.fromkeys(locations):
                link = self._live(f"link#{loc}", now) if links else None
                obj: RecordingObject | None = self._live(f"obj#{loc}", now) if objects else None
                result[loc] = RecordingHalves(loc, link, obj)
            return result

    def waiting_put(self, contact_id: str, deadline: datetime, now: datetime) -> dict[str, Any]:
        expires = max(deadline, now) + self._retention
        return {"MemoryJoin": ("put", {"pk": f"ctr#{contact_id}", "value": deadline, "expires": expires})}

    def waiting_delete(self, contact_id: str) -> dict[str, Any]:
        return {"MemoryJoin": ("delete", {"pk": f"ctr#{contact_id}"})}

    def apply(self, actions: Iterable[dict[str, Any]]) -> None:
        """Apply this store's transaction actions (those of ``waiting_put``/``waiting_delete``)."""
        self.write([action["MemoryJoin"] for action in actions])

    def clear_waiting(self, contact_ids: Iterable[str]) -> None:
        self.write([("delete", {"pk": f"ctr#{c}"}) for c in contact_ids])

    def settle_orphans(self, locations: Sequence[str], now: datetime) -> list[str]:
        reported: list[str] = []
        with self._lock:
            for loc in locations:
                claimed = self._live(f"link#{loc}", now) is not None
                if self._items.pop(f"orphan#{loc}", None) is not None and not claimed:
                    reported.append(loc)
        return reported

    def due(self, now: datetime, limit: int = 500) -> Iterator[DueItem]:
        with self._lock:
            due = [
                DueItem("contact" if kind == "ctr" else "recording", key, at)
                for pk, (_, at) in self._items.items()
                for kind, _, key in [pk.partition("#")]
                if kind in ("ctr", "orphan") and at <= now
            ]
        return iter(due)

    def count_pending(self) -> tuple[int, int]:
        with self._lock:
            contacts = sum(1 for pk in self._items if pk.startswith("ctr#"))
            recordings = sum(1 for pk in self._items if pk.startswith("orphan#"))
        return contacts, recordings


def _text(item: dict[str, Any] | None, name: str) -> str | None:
    value = (item or {}).get(name, {}).get("S")
    return str(value) if value is not None else None


class MemoryContactStore:
    """:class:`processor.app.ports.ContactStore` in a dict of the items the contacts table
    holds (built and read as :mod:`processor.adapters.dynamodb.contacts` builds and reads
    them), with its conditions checked here. A transaction's group may hold ``joins``'s
    actions too (a contact's sweeper marker): applied with the group, or not at all."""

    def __init__(self, joins: MemoryJoinStore | None = None) -> None:
        self._joins = joins
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.RLock()

    def load(self, contact_id: str) -> StoredContact | None:
        with self._lock:
            item = self._items.get(contact_id)
            return stored_contact(item) if item is not None else None

    def load_many(self, contact_ids: Iterable[str]) -> dict[str, StoredContact]:
        with self._lock:
            return {c: stored_contact(self._items[c]) for c in dict.fromkeys(contact_ids) if c in self._items}

    def contact_ids_of_agent(self, acd_id: str) -> Iterator[str]:
        with self._lock:
            ids = [c for c, item in self._items.items() if _text(item, "acd_id") == acd_id]
        return iter(ids)

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
        item = contact_item(view, replaces=replaces, raw_ctr=raw_ctr, now=now, claim_owner=claim_owner)
        if create_only:
            guard: tuple[str, str | None] = ("absent", None)
        elif replaces is None or replaces.last_update < view.contact.last_update:
            guard = ("older", view.contact.last_update)
        else:
            guard = ("version", replaces.version)
        return {"MemoryContacts": ("put", view.contact_id, item, guard)}

    def emitted_action(self, contact_id: str, version: str) -> dict[str, Any]:
        return {"MemoryContacts": ("emitted", contact_id, version)}

    def _holds(self, action: tuple[Any, ...]) -> bool:
        current = self._items.get(action[1])
        if action[0] == "emitted":
            return current is not None and _text(current, "emit_version") == action[2]
        kind, value = action[3]
        if kind == "absent":
            return current is None
        if kind == "older":
            return current is None or str(_text(current, "last_update")) < value
        return current is not None and _text(current, "version") == value

    def _apply(self, action: tuple[Any, ...]) -> None:
        if action[0] == "put":
            self._items[action[1]] = dict(action[2])
            return
        item = dict(self._items[action[1]])
        item["emit_state"] = {"S": "done"}
        for name in ("emit_claim", "emit_claimed_at", "emit_attempted_at"):
            item.pop(name, None)
        self._items[action[1]] = item

    def transact(self, groups: Sequence[Sequence[dict[str, Any]]]) -> list[GroupOutcome]:
        outcomes: list[GroupOutcome] = []
        with self._lock:
            for group in groups:
                own = [a["MemoryContacts"] for a in group if "MemoryContacts" in a]
                others = [a for a in group if "MemoryContacts" not in a]
                if others and self._joins is None:
                    raise ValueError("an action of another store, and no join store to apply it")
                if not all(self._holds(a) for a in own):
                    outcomes.append(GroupOutcome(written=False, reason=CONDITION_FAILED))
                    continue
                for action in own:
                    self._apply(action)
                if others and self._joins is not None:
                    self._joins.apply(others)
                outcomes.append(GroupOutcome(written=True))
        return outcomes

    def claim_emission(
        self, contact_id: str, version: str, owner: str, now: datetime, lease_s: float
    ) -> ClaimResult:
        stale = format_instant(datetime.fromtimestamp(now.timestamp() - lease_s, UTC))
        with self._lock:
            item = self._items.get(contact_id)
            if (
                item is None
                or _text(item, "emit_version") != version
                or _text(item, "emit_state") != "pending"
            ):
                return ClaimResult.DONE
            claimed_at = _text(item, "emit_claimed_at")
            if "emit_claim" in item and (claimed_at is None or claimed_at >= stale):
                return ClaimResult.BUSY
            self._items[contact_id] = {
                **item,
                "emit_claim": {"S": owner},
                "emit_claimed_at": {"S": format_instant(now)},
            }
            return ClaimResult.CLAIMED

    def note_attempt(self, contact_id: str, version: str, owner: str, now: datetime) -> str | None:
        """As the table's: a version replaced or a claim taken over is a failed condition."""
        with self._lock:
            item = self._items.get(contact_id)
            if item is None or _text(item, "emit_version") != version or _text(item, "emit_claim") != owner:
                raise ClientError(
                    {"Error": {"Code": "ConditionalCheckFailedException", "Message": "claim not held"}},
                    "UpdateItem",
                )
            self._items[contact_id] = {**item, "emit_attempted_at": {"S": format_instant(now)}}
            return _text(item, "emit_attempted_at")

    def mark_emitted(self, contact_id: str, version: str) -> None:
        with self._lock:
            action = ("emitted", contact_id, version)
            if self._holds(action):
                self._apply(action)


class MemoryLeaseTable:
    """:class:`processor.app.ports.LeaseTable` in a dict; ``put`` is the KCL's side (a
    worker taking, renewing or checkpointing a lease)."""

    def __init__(self, leases: Iterable[LeaseState] = (), *, exists: bool = True) -> None:
        self._exists = exists
        self._leases = {lease.shard_id: lease for lease in leases}
        self._lock = threading.Lock()

    def put(self, lease: LeaseState) -> None:
        with self._lock:
            self._exists = True
            self._leases[lease.shard_id] = lease

    def exists(self) -> bool:
        return self._exists

    def read(self) -> dict[str, LeaseState]:
        with self._lock:
            return dict(self._leases)

    def move(self, lease: LeaseState, target: Checkpoint) -> bool:
        with self._lock:
            current = self._leases.get(lease.shard_id)
            if (
                current is None
                or current.counter != lease.counter
                or current.checkpoint.sequence_number != lease.checkpoint.sequence_number
                or current.checkpoint_owner is not None
            ):
                return False
            self._leases[lease.shard_id] = replace(
                current, checkpoint=target, owner=None, counter=current.counter + 1
            )
            return True


class MemoryCommands:
    """The commands table and the publisher in one (:class:`processor.app.ports.CommandLog`
    and ``CommandSender``): each command recorded once, sent, then marked sent; ``sent``
    holds, per agent, every message sent, in order."""

    def __init__(self) -> None:
        self._records: dict[str, CommandRecord] = {}
        self.sent: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def record(self, body: dict[str, Any]) -> CommandRecord:
        with self._lock:
            existing = self._records.get(body["command_id"])
            if existing is not None:
                return existing
            record = CommandRecord(
                command_id=body["command_id"],
                agent=body["agent"],
                type=body["type"],
                issued_at=body["issued_at"],
                body=orjson.loads(orjson.dumps(body)),
                state="pending",
                contact_id=body.get("contact_id") or None,
                result=None,
            )
            self._records[record.command_id] = record
            return record

    def get(self, command_id: str) -> CommandRecord | None:
        with self._lock:
            return self._records.get(command_id)

    def mark_sent(self, command_id: str) -> None:
        with self._lock:
            self._records[command_id] = replace(self._records[command_id], state="sent")

    def mark_result(self, command_id: str, result: str, at: datetime) -> bool:
        with self._lock:
            record = self._records.get(command_id)
            if record is None or record.result == result:
                return False
            self._records[command_id] = replace(record, result=result)
            return True

    def of_agent(self, agent: str, since: datetime, type_: str | None = None) -> list[CommandRecord]:
        start = format_instant(since)
        with self._lock:
            found = [r for r in self._records.values() if r.agent == agent and r.issued_at >= start]
        found.sort(key=lambda r: r.issued_at)
        return [r for r in found if type_ is None or r.type == type_]

    def publish(self, body: dict[str, Any], *, resend: bool = False, resend_tag: str | None = None) -> bool:
        stored = self.record(body)
        if stored.state == "sent" and not resend:
            return False
        message = stored.body if stored.state == "sent" else body
        with self._lock:
            self.sent.setdefault(message["agent"], []).append(orjson.loads(orjson.dumps(message)))
        self.mark_sent(message["command_id"])
        return True


class MemoryAgentStates:
    """:class:`processor.app.ports.AgentStateStore` in a dict, instants kept as the agents
    table keeps them (milliseconds)."""

    def __init__(self) -> None:
        # agent -> (state, last event text, released before text)
        self._states: dict[str, tuple[AgentRecording, str | None, str | None]] = {}
        self._lock = threading.Lock()

    def load(self, agent: str) -> tuple[AgentRecording, str | None, str | None]:
        with self._lock:
            return self._states.get(agent, (AgentRecording(), None, None))

    def save(self, agent: str, state: AgentRecording, expected_last: str | None) -> bool:
        def ms(value: datetime) -> datetime:
            return datetime.fromisoformat(format_instant(value).replace("Z", "+00:00"))

        with self._lock:
            _, last, released = self._states.get(agent, (AgentRecording(), None, None))
            if last != expected_last:
                return False
            if state.last_event_at is not None:
                last = format_instant(state.last_event_at)
            kept = AgentRecording(
                recording=state.recording,
                last_event_at=ms(datetime.fromisoformat(last.replace("Z", "+00:00"))) if last else None,
                recent_contacts=tuple((ms(a), ms(b)) for a, b in state.recent_contacts),
            )
            self._states[agent] = (kept, last, released)
            return True

    def agents(self) -> list[str]:
        with self._lock:
            return sorted(self._states)

    def recording_agents(self) -> list[str]:
        with self._lock:
            return sorted(a for a, (state, _, _) in self._states.items() if state.recording)

    def set_released(self, agent: str, before: datetime) -> bool:
        value = format_instant(before)
        with self._lock:
            state, last, released = self._states.get(agent, (AgentRecording(), None, None))
            if released is not None and released >= value:
                return False
            self._states[agent] = (state, last, value)
            return True


class MemoryProgress:
    """:class:`processor.app.ports.StreamProgress` in a dict: ``note`` and ``forget`` as the
    record processors call them (without the table's write throttle); the open shards are
    ``open_shards`` (the Kinesis client given to :meth:`consumed_until` is not asked)."""

    def __init__(self, open_shards: Iterable[str]) -> None:
        self.open_shards = list(open_shards)
        self._notes: dict[str, str] = {}
        self._lock = threading.Lock()

    def note(self, shard_id: str, millis_behind_latest: int | None, now: datetime) -> None:
        if millis_behind_latest is None:
            return
        consumed = format_instant(now - timedelta(milliseconds=max(millis_behind_latest, 0)))
        with self._lock:
            if shard_id not in self._notes or self._notes[shard_id] < consumed:
                self._notes[shard_id] = consumed

    def forget(self, shard_id: str) -> None:
        with self._lock:
            self._notes.pop(shard_id, None)

    def consumed_until(self, kinesis: Any, stream: str) -> datetime | None:
        with self._lock:
            if not self.open_shards or any(s not in self._notes for s in self.open_shards):
                return None
            earliest = min(self._notes[s] for s in self.open_shards)
        return datetime.fromisoformat(earliest.replace("Z", "+00:00")).astimezone(UTC)


class MemoryMedia:
    """:class:`processor.app.ports.RecordingMedia` over recordings held in a dict (``put``),
    read as :class:`processor.adapters.s3.call_recordings.S3Media` reads them."""

    def __init__(self) -> None:
        self._objects: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.bytes_read = 0

    def put(self, location: str, body: bytes) -> str:
        """Store a recording (``bucket/key``); its eTag, as S3 gives a single-part upload."""
        with self._lock:
            self._objects[location] = body
        return hashlib.md5(body).hexdigest()  # noqa: S324 - S3's eTag, not a security use

    def probe(self, location: str) -> tuple[ObjectInfo, Duration] | None:
        with self._lock:
            body = self._objects.get(location)
        if body is None:
            return None
        info = ObjectInfo(size=len(body), etag=hashlib.md5(body).hexdigest())  # noqa: S324 - as S3's
        duration = measure(location, len(body), body[:PROBE_READ], lambda start, end: body[start : end + 1])
        with self._lock:
            self.bytes_read += duration.bytes_read
        return info, duration
