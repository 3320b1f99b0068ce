"""Ports the application owns: what the stream services need of the outside, as Protocols.

Each has an emulator-backed adapter under :mod:`processor.adapters` and an in-memory one in
:mod:`processor.adapters.memory`; ``tests/contract/test_ports.py`` holds both to one contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from processor.adapters.dynamodb.bulk import GroupOutcome
from processor.adapters.dynamodb.contacts import StoredContact
from processor.adapters.dynamodb.join_store import DueItem, RecordingHalves, SeenObject
from processor.adapters.s3.call_recordings import Duration, ObjectInfo
from processor.adapters.sqs.commands import CommandRecord
from processor.core.agent_events import AgentRecording
from processor.core.checkpoints import Checkpoint, LeaseState
from processor.core.emission import ClaimResult
from processor.core.join import ContactView
from processor.core.user_directory import QmUser

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

#: A write a store prepared for its own ``write`` (opaque to the application).
StoreWrite = tuple[str, dict[str, Any]]
#: One action of an atomic group the contact store writes (opaque to the application): the
#: contact store's and the join store's of one deployment go together.
TransactAction = dict[str, Any]


class OutputPort(Protocol):
    """The output stream: every final QM contact version, exactly once (with the emission
    protocol of :mod:`processor.core.emission`). Kinesis has no idempotent put, so the
    protocol needs to ask what arrived."""

    def publish(self, doc: dict[str, Any]) -> str:
        """Put one record (partition key: its ``contact_id``); its sequence number."""
        ...

    def put_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        """Put records together; True for each the stream took, False for each it refused
        (known not to be there). An exception means the answer is unknown."""
        ...

    def find(self, wanted: Mapping[str, str], since: datetime, timeout_s: float = 30.0) -> set[str]:
        """Which of ``wanted`` (emission id -> contact id) arrived since ``since``.
        :class:`TimeoutError` when that could not be read to the end: "not found" means absent."""
        ...

    def contains(self, contact_id: str, emission: str, since: datetime, timeout_s: float = 30.0) -> bool:
        """Whether ``emission`` of ``contact_id`` arrived since ``since`` (as :meth:`find`)."""
        ...

    def records(self, *, timeout_s: float = 120.0) -> Iterator[dict[str, Any]]:
        """Every record on the stream, each contact's in the order they arrived."""
        ...


class UserDirectory(Protocol):
    """QM users by username (= ACD ID): the first and last name a contact gets."""

    def get_many(self, usernames: Iterable[str]) -> dict[str, QmUser]:
        """The known users among ``usernames`` (unknown ones are absent)."""
        ...


class JoinStore(Protocol):
    """The join's recording halves (the CTR's link, the object's facts), the orphan markers
    of objects no CTR claimed, and the sweeper's work list. Expired items are absent."""

    def link_requests(self, links: Iterable[tuple[str, str]], now: datetime) -> list[StoreWrite]:
        """The writes of the CTR halves ((location, contact id) pairs), for :meth:`write`."""
        ...

    def object_requests(
        self, seen: Iterable[tuple[SeenObject, datetime | None]], now: datetime
    ) -> list[StoreWrite]:
        """The writes of object halves, each with its orphan marker due at the time given."""
        ...

    def write(self, requests: Sequence[StoreWrite]) -> None:
        """Write prepared halves and markers; durable on return (the last writer wins)."""
        ...

    def read_halves(
        self, locations: Iterable[str], now: datetime, *, links: bool = True, objects: bool = True
    ) -> dict[str, RecordingHalves]:
        """Both halves of each location (a write before is seen); an entry for every location."""
        ...

    def waiting_put(self, contact_id: str, deadline: datetime, now: datetime) -> TransactAction:
        """The action (in the contact's transaction) that marks it waiting, due at ``deadline``."""
        ...

    def waiting_delete(self, contact_id: str) -> TransactAction:
        """The action (in the contact's transaction) that removes its waiting marker."""
        ...

    def clear_waiting(self, contact_ids: Iterable[str]) -> None:
        """Remove the waiting markers of these contacts."""
        ...

    def settle_orphans(self, locations: Sequence[str], now: datetime) -> list[str]:
        """Of these orphan candidates, those no CTR claimed: each reported to one caller only
        (its marker removed); the claimed ones lose their marker unreported."""
        ...

    def due(self, now: datetime, limit: int = 500) -> Iterator[DueItem]:
        """The waiting contacts and orphan markers due at ``now``."""
        ...

    def count_pending(self) -> tuple[int, int]:
        """(waiting contacts, orphan markers) scheduled, due or not."""
        ...


class ContactStore(Protocol):
    """The current view of every contact with its emission outbox. Every write is guarded:
    a view replaces only the version it was decided from, or an older CTR version."""

    def load(self, contact_id: str) -> StoredContact | None:
        """The stored contact (a write before is seen); None: absent."""
        ...

    def load_many(self, contact_ids: Iterable[str]) -> dict[str, StoredContact]:
        """The stored contacts among ``contact_ids`` (absent ones are left out)."""
        ...

    def contact_ids_of_agent(self, acd_id: str) -> Iterator[str]:
        """The contacts of the agent with this ACD id."""
        ...

    def put_action(
        self,
        view: ContactView,
        *,
        replaces: StoredContact | None,
        raw_ctr: bytes | None,
        now: datetime,
        claim_owner: str | None = None,
        create_only: bool = False,
    ) -> TransactAction:
        """The guarded write of ``view``: it applies only if the stored contact is still
        ``replaces`` (or an older CTR version; ``create_only``: only if there is none). A
        final view is written with its emission pending, claimed by ``claim_owner``."""
        ...

    def emitted_action(self, contact_id: str, version: str) -> TransactAction:
        """The write that marks ``version`` emitted (refused once a newer one replaced it)."""
        ...

    def transact(self, groups: Sequence[Sequence[TransactAction]]) -> list[GroupOutcome]:
        """Write each group all or nothing; one outcome per group (a refused guard:
        ``reason == CONDITION_FAILED``, the others of the call are not held back by it)."""
        ...

    def claim_emission(
        self, contact_id: str, version: str, owner: str, now: datetime, lease_s: float
    ) -> ClaimResult:
        """The right to publish ``version``: one holder at a time, a claim older than
        ``lease_s`` is taken over; DONE when nothing of ``version`` is pending."""
        ...

    def note_attempt(self, contact_id: str, version: str, owner: str, now: datetime) -> str | None:
        """Note that ``owner``, holding the claim, is about to publish; the previous attempt's
        time. A claim not held raises ``ConditionalCheckFailedException`` (a ClientError)."""
        ...

    def mark_emitted(self, contact_id: str, version: str) -> None:
        """Mark ``version`` emitted (nothing when a newer version replaced it)."""
        ...


class LeaseTable(Protocol):
    """The KCL application's shard leases, as replay reads and moves them."""

    def exists(self) -> bool:
        """Whether the table exists (the KCL application has run)."""
        ...

    def read(self) -> dict[str, LeaseState]:
        """Every shard lease (a write before is seen), by shard id."""
        ...

    def move(self, lease: LeaseState, target: Checkpoint) -> bool:
        """Set the checkpoint of ``lease`` to ``target`` and release it, if the lease is as
        read (counter, checkpoint) and no hand-off is under way; False: read it again."""
        ...


class CommandLog(Protocol):
    """The record of every command sent to a desktop, by its (deterministic) command id."""

    def get(self, command_id: str) -> CommandRecord | None:
        """The recorded command; None: never published."""
        ...

    def mark_result(self, command_id: str, result: str, at: datetime) -> bool:
        """Record the desktop's result; False when it was already recorded (or no such command)."""
        ...

    def of_agent(self, agent: str, since: datetime, type_: str | None = None) -> list[CommandRecord]:
        """The agent's commands issued since ``since`` (of ``type_``), oldest first."""
        ...


class CommandSender(Protocol):
    """Publishing a command to its agent's desktop, once per command id."""

    def publish(self, body: dict[str, Any], *, resend: bool = False, resend_tag: str | None = None) -> bool:
        """Record and send ``body``; True when sent now, False when it was sent before.
        ``resend`` sends a recorded command again (recovery)."""
        ...


class AgentStateStore(Protocol):
    """Per agent, what the server last told the desktop, guarded by the last event applied."""

    def load(self, agent: str) -> tuple[AgentRecording, str | None, str | None]:
        """(state, its last event's time to guard the next save with, last release published)."""
        ...

    def save(self, agent: str, state: AgentRecording, expected_last: str | None) -> bool:
        """Save if the stored last event is still ``expected_last`` (None: none); False otherwise."""
        ...

    def agents(self) -> list[str]:
        """Every agent with a state, sorted."""
        ...

    def recording_agents(self) -> list[str]:
        """The agents last told to record, sorted."""
        ...

    def set_released(self, agent: str, before: datetime) -> bool:
        """Advance the release watermark; False when it would go backwards (or stay)."""
        ...


class StreamProgress(Protocol):
    """How far the CTR stream is consumed (the basis of segment release)."""

    def consumed_until(self, kinesis: KinesisClient, stream: str) -> datetime | None:
        """The instant before which every record of ``stream``'s open shards was handled: the
        minimum of their notes; None while an open shard has none."""
        ...


class RecordingMedia(Protocol):
    """The call recordings, as the join reads them: the header and the call's opening."""

    def probe(self, location: str) -> tuple[ObjectInfo, Duration] | None:
        """Size, eTag, duration and recorded parties of the recording; None: not there."""
        ...


if TYPE_CHECKING:  # mypy holds each in-memory port to its Protocol, as the wiring does the adapters
    from processor.adapters import memory

    _output: OutputPort = memory.MemoryOutput()
    _users: UserDirectory = memory.MemoryUserDirectory()
    _joins: JoinStore = memory.MemoryJoinStore()
    _contacts: ContactStore = memory.MemoryContactStore()
    _leases: LeaseTable = memory.MemoryLeaseTable()
    _command_log: CommandLog = memory.MemoryCommands()
    _sender: CommandSender = memory.MemoryCommands()
    _states: AgentStateStore = memory.MemoryAgentStates()
    _media: RecordingMedia = memory.MemoryMedia()
    _progress: StreamProgress = memory.MemoryProgress(["shardId-000000000000"])
