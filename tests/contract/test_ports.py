"""One contract per port, run against the DynamoDB-backed adapter (on the emulator) and the
in-memory one (processor/adapters/memory.py): application tests that use the in-memory one
rely on exactly what these tests hold for both."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from processor.adapters.dynamodb import bulk
from processor.adapters.dynamodb.console_audit_log import AuditEntry, DynamoAuditLog
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.join_store import DynamoJoinStore, SeenObject
from processor.adapters.dynamodb.leases import KclLeaseTable
from processor.adapters.dynamodb.progress import ShardProgress
from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.adapters.kinesis.output import OutputStream, emission_id
from processor.adapters.memory import (
    MemoryAgentStates,
    MemoryArchiveCursor,
    MemoryAuditLog,
    MemoryCommands,
    MemoryContactStore,
    MemoryJoinStore,
    MemoryLeaseTable,
    MemoryMedia,
    MemoryOutput,
    MemoryProgress,
    MemoryQuarantine,
    MemoryUserDirectory,
)
from processor.adapters.s3.archive import ArchiveObject, DynamoArchiveCursor, ObjectOutcome
from processor.adapters.s3.call_recordings import PROBE_READ, S3Media
from processor.adapters.sqs.commands import AgentQueues, AgentStates, CommandPublisher, CommandStore
from processor.core.agent_events import AgentRecording
from processor.core.checkpoints import Checkpoint, LeaseState
from processor.core.emission import ClaimResult
from processor.core.join import RecordingObject
from processor.core.user_directory import QmUser
from processor.devtools.simulated_centre import wav_bytes
from processor.platform.exceptions import InvalidInput, SourcePosition
from tests.contract.test_stores import view_of

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


def _port(
    request: pytest.FixtureRequest, memory: Callable[[], Any], emulated: Callable[[Any, Any], Any]
) -> Any:
    """The in-memory port, or the DynamoDB adapter on freshly bootstrapped emulator tables."""
    if request.param == "memory":
        return memory()
    return emulated(request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws"))


@pytest.fixture(params=["dynamodb", "memory"])
def quarantine(request: pytest.FixtureRequest) -> Any:
    return _port(
        request,
        MemoryQuarantine,
        lambda s, aws: DynamoQuarantine(aws.dynamodb, s.quarantine_table, aws.s3, s.quarantine_bucket),
    )


@pytest.fixture(params=["dynamodb", "memory"])
def cursor(request: pytest.FixtureRequest) -> Any:
    return _port(
        request, MemoryArchiveCursor, lambda s, aws: DynamoArchiveCursor(aws.dynamodb, s.archive_cursor_table)
    )


@pytest.fixture(params=["dynamodb", "memory"])
def audit_log(request: pytest.FixtureRequest) -> Any:
    return _port(request, MemoryAuditLog, lambda s, aws: DynamoAuditLog(aws.dynamodb, s.audit_table))


def test_quarantine_keeps_each_bad_input_once_with_its_payload_position_and_reason(quarantine: Any) -> None:
    position = SourcePosition("kinesis", "qm-ctr", "shardId-000000000000", "42")
    bad = InvalidInput("bad_json", "not JSON", payload=b"{oops", position=position)
    large = bytes(range(256)) * 8000  # ~2 MB, hardly compressible: the DynamoDB one keeps it in S3
    big = InvalidInput(
        "oversized", "x" * 5000, payload=large, position=SourcePosition("archive", "b", object_key="k")
    )

    first = quarantine.put(bad, "2026-06-01T12:00:00.000Z")
    assert quarantine.put(bad, "2026-06-01T12:00:09.000Z") == first  # a redelivery: the same entry
    other = quarantine.put(big, "2026-06-01T12:00:01.000Z")
    assert other != first

    entries = {e.id: e for e in quarantine.list()}
    assert set(entries) == {first, other}
    assert (entries[first].reason, entries[first].detail, entries[first].payload) == (
        "bad_json",
        "not JSON",
        b"{oops",
    )
    assert entries[first].position == position.as_dict()
    assert entries[first].status == "open"
    assert entries[other].payload == large
    assert entries[other].detail == "x" * 2000  # details are bounded


def test_quarantine_marks_an_entry_retried_and_summarises_without_payloads(quarantine: Any) -> None:
    kept = quarantine.put(
        InvalidInput("bad_json", "a", payload=b"a", position=SourcePosition("kinesis", "s")), "t"
    )
    retried = quarantine.put(
        InvalidInput("bad_event", "b", payload=b"b", position=SourcePosition("sqs", "q")), "t"
    )
    quarantine.mark_retried(retried)
    assert {e.id: e.status for e in quarantine.list()} == {kept: "open", retried: "retried"}
    assert sorted(quarantine.summaries()) == [
        ("bad_event", "sqs", "retried"),
        ("bad_json", "kinesis", "open"),
    ]


def objects(n: int, etag: Callable[[int], str] = lambda i: f"e{i}") -> list[ArchiveObject]:
    return [
        ArchiveObject("archive", f"ctr/2026/06/01/12/part-{i:04d}.gz", 100 + i, etag(i)) for i in range(n)
    ]


def test_the_archive_cursor_counts_an_object_done_only_at_the_etag_it_was_imported_at(cursor: Any) -> None:
    first = objects(3)
    assert cursor.done(first) == set()
    cursor.mark_done(first[0], ObjectOutcome(records=10, imported=9, quarantined=1), NOW)
    cursor.mark_done(first[1], ObjectOutcome(), NOW)
    assert cursor.done(first) == {first[0].location, first[1].location}
    rewritten = objects(3, etag=lambda i: f"e{i}-rewritten")  # the same keys, written again
    assert cursor.done(rewritten) == set()
    cursor.mark_done(rewritten[0], ObjectOutcome(records=10), NOW)
    assert cursor.done(first + rewritten[:1]) == {first[1].location, rewritten[0].location}
    assert cursor.count() == 2


def test_the_archive_cursor_answers_for_more_objects_than_one_read_holds(cursor: Any) -> None:
    many = objects(250)  # BatchGetItem reads 100 keys at a time
    for obj in many[::2]:
        cursor.mark_done(obj, ObjectOutcome(records=1, imported=1), NOW)
    assert cursor.done(many) == {o.location for o in many[::2]}


def test_the_audit_log_keeps_every_entry_and_lists_a_day_newest_first(audit_log: Any) -> None:
    def entry(at: str, action: str) -> AuditEntry:
        return AuditEntry(at=at, actor="admin", action=action, target="jane", detail={"field": "role"})

    audit_log.record(entry("2026-06-01T09:00:00.000Z", "user.update"))
    audit_log.record(entry("2026-06-01T11:00:00.000Z", "user.update"))
    audit_log.record(entry("2026-06-01T11:00:00.000Z", "user.update"))  # the same change twice: both kept
    audit_log.record(entry("2026-06-01T10:00:00.000Z", "config.save"))
    audit_log.record(entry("2026-06-02T08:00:00.000Z", "user.create"))
    day = audit_log.recent("2026-06-01")
    assert [(e.at[11:16], e.action) for e in day] == [
        ("11:00", "user.update"),
        ("11:00", "user.update"),
        ("10:00", "config.save"),
        ("09:00", "user.update"),
    ]
    assert day[0].detail == {"field": "role"}
    assert [e.action for e in audit_log.recent("2026-06-01", limit=2)] == ["user.update", "user.update"]
    assert [e.action for e in audit_log.recent("2026-06-02")] == ["user.create"]


@pytest.fixture(params=["kinesis", "memory"])
def output(request: pytest.FixtureRequest) -> Any:
    return _port(request, MemoryOutput, lambda s, aws: OutputStream(aws.kinesis, s.output_stream))


def _doc(contact_id: str, version: str) -> dict[str, Any]:
    return {"contact_id": contact_id, "version": version, "emission_id": emission_id(contact_id, version)}


def test_output_finds_what_arrived_since_a_time_and_nothing_else(output: Any) -> None:
    """The read-back the emission protocol relies on: a record put is found from a time
    before its put on, a record never put is not, and nothing is found from a time after
    every put (less the allowed skew)."""
    before = datetime.now(UTC)
    assert output.put_many([_doc("c-1", "v1"), _doc("c-2", "v1")]) == [True, True]
    output.publish(_doc("c-1", "v2"))
    wanted = {
        emission_id("c-1", "v1"): "c-1",
        emission_id("c-1", "v2"): "c-1",
        emission_id("c-3", "v1"): "c-3",
    }
    assert output.find(wanted, before) == {emission_id("c-1", "v1"), emission_id("c-1", "v2")}
    assert output.contains("c-2", emission_id("c-2", "v1"), before)
    assert not output.contains("c-2", emission_id("c-2", "v2"), before)
    later = datetime.now(UTC) + timedelta(hours=1)
    assert output.find(wanted, later) == set()
    assert output.put_many([]) == []
    records = list(output.records(timeout_s=60))
    assert [(r["contact_id"], r["version"]) for r in records if r["contact_id"] == "c-1"] == [
        ("c-1", "v1"),
        ("c-1", "v2"),
    ]
    assert sorted(r["emission_id"] for r in records) == sorted(
        [emission_id("c-1", "v1"), emission_id("c-1", "v2"), emission_id("c-2", "v1")]
    )


@pytest.fixture(params=["dynamodb", "memory"])
def users(request: pytest.FixtureRequest) -> Any:
    return _port(
        request,
        MemoryUserDirectory,
        lambda s, aws: DynamoUserDirectory(aws.dynamodb, s.users_table, cache_seconds=0),
    )


def test_user_directory_answers_the_known_users_of_a_lookup(users: Any) -> None:
    ann = QmUser("ann.lee", "Ann", "Lee", agent_arn="arn:aws:connect:us-east-1:1:instance/x/agent/a")
    users.put(ann)
    users.put(QmUser("bo", "Bo", None))
    assert users.get_many([]) == {}
    found = users.get_many(["ann.lee", "nobody", "bo"])
    assert set(found) == {"ann.lee", "bo"}
    assert (found["ann.lee"].first_name, found["ann.lee"].last_name) == ("Ann", "Lee")
    assert found["bo"].last_name is None
    users.put(QmUser("ann.lee", "Anne", "Lee"))  # a sync renames her
    assert users.get_many(["ann.lee"])["ann.lee"].first_name == "Anne"


Transact = Callable[[list[dict[str, Any]]], None]


@pytest.fixture(params=["dynamodb", "memory"])
def joins(request: pytest.FixtureRequest) -> tuple[Any, Transact]:
    """The join store, and how a contact's transaction applies the store's actions."""
    if request.param == "memory":
        memory = MemoryJoinStore(retention=timedelta(days=7))
        return memory, memory.apply
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")
    store = DynamoJoinStore(aws.dynamodb, settings.join_table, timedelta(days=7))

    def transact(actions: list[dict[str, Any]]) -> None:
        assert [o.written for o in bulk.transact_groups(aws.dynamodb, [actions])] == [True]

    return store, transact


def _seen(location: str, size: int = 960_044, duration: float | None = 30.0) -> SeenObject:
    return SeenObject(RecordingObject(location, size, NOW, duration, "header", "both"), f"etag-{size}")


def test_join_store_reads_back_each_half_written_and_absent_ones_as_absent(
    joins: tuple[Any, Transact],
) -> None:
    store, _ = joins
    a, b, c = "rec/connect/a.wav", "rec/connect/b.wav", "rec/connect/c.wav"
    assert store.read_halves([], NOW) == {}
    store.write(store.link_requests([(a, "c-1"), (b, "c-2")], NOW))
    store.write(store.object_requests([(_seen(a), None), (_seen(c, duration=12.3456789), None)], NOW))
    halves = store.read_halves([a, b, c, "rec/none.wav", a], NOW)
    assert list(halves) == [a, b, c, "rec/none.wav"]
    assert (halves[a].contact_id, halves[b].contact_id, halves[c].contact_id) == ("c-1", "c-2", None)
    assert halves[a].obj == _seen(a).obj
    assert halves[b].obj is None and halves["rec/none.wav"] == type(halves[a])("rec/none.wav", None, None)
    assert halves[c].obj is not None and halves[c].obj.duration_seconds == 12.345679
    only_objects = store.read_halves([a], NOW, links=False)[a]
    assert (only_objects.contact_id, only_objects.obj) == (None, _seen(a).obj)
    assert store.read_halves([a], NOW, objects=False)[a].obj is None
    store.write(store.object_requests([(_seen(a, size=2_000_044, duration=62.5), None)], NOW))  # overwritten
    assert store.read_halves([a], NOW)[a].obj == _seen(a, size=2_000_044, duration=62.5).obj
    expired = NOW + timedelta(days=8)  # past the retention: absent, whether or not deleted yet
    assert store.read_halves([a, b], expired) == {
        a: type(halves[a])(a, None, None),
        b: type(halves[a])(b, None, None),
    }


def test_join_store_lists_due_waiting_contacts_until_their_marker_is_removed(
    joins: tuple[Any, Transact],
) -> None:
    store, transact = joins
    transact([store.waiting_put("c-due", NOW + timedelta(minutes=5), NOW)])
    transact([store.waiting_put("c-later", NOW + timedelta(hours=1), NOW)])
    transact([store.waiting_put("c-gone", NOW + timedelta(minutes=1), NOW)])
    transact([store.waiting_delete("c-gone")])
    assert store.count_pending() == (2, 0)
    assert list(store.due(NOW)) == []
    due = list(store.due(NOW + timedelta(minutes=10)))
    assert [(d.kind, d.key, d.due_at) for d in due] == [("contact", "c-due", NOW + timedelta(minutes=5))]
    transact([store.waiting_put("c-due", NOW + timedelta(minutes=20), NOW)])  # its window moved
    assert list(store.due(NOW + timedelta(minutes=10))) == []
    store.clear_waiting(["c-due", "c-later", "c-never-waited"])
    assert store.count_pending() == (0, 0)
    assert list(store.due(NOW + timedelta(days=1))) == []


def test_join_store_reports_an_unclaimed_orphan_once_and_a_claimed_one_never(
    joins: tuple[Any, Transact],
) -> None:
    store, _ = joins
    lone, claimed = "rec/connect/lone.wav", "rec/connect/claimed.wav"
    due_at = NOW + timedelta(minutes=5)
    store.write(store.object_requests([(_seen(lone), due_at), (_seen(claimed), due_at)], NOW))
    assert store.count_pending() == (0, 2)
    assert list(store.due(NOW)) == []
    assert sorted((d.kind, d.key, d.due_at) for d in store.due(due_at)) == [
        ("recording", claimed, due_at),
        ("recording", lone, due_at),
    ]
    store.write(store.link_requests([(claimed, "c-1")], NOW))  # its CTR came within the window
    assert store.settle_orphans([lone, claimed], due_at) == [lone]
    assert (
        store.settle_orphans([lone, claimed], due_at) == []
    )  # reported once: a second sweeper is told nothing
    assert store.count_pending() == (0, 0)
    assert list(store.due(due_at)) == []
    assert store.read_halves([lone], due_at)[lone].obj == _seen(lone).obj  # the object half stays


@pytest.fixture(params=["dynamodb", "memory"])
def stores(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """The contact store and the join store whose actions its transactions carry."""
    if request.param == "memory":
        joins = MemoryJoinStore()
        return MemoryContactStore(joins), joins
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")
    return (
        DynamoContactStore(aws.dynamodb, settings.contacts_table),
        DynamoJoinStore(aws.dynamodb, settings.join_table, timedelta(days=7)),
    )


def test_contact_store_writes_a_view_only_over_the_version_it_was_decided_from(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, _ = stores
    old, old_raw = view_of(samples_dir, "2022-01-05T17:48:35Z")
    new, new_raw = view_of(samples_dir, "2022-01-11T03:41:32Z")
    cid = new.contact_id
    assert contacts.load(cid) is None and contacts.load_many([cid, "nobody"]) == {}

    def put(view: Any, replaces: Any, raw: bytes | None, **kw: Any) -> tuple[bool, str | None]:
        [outcome] = contacts.transact(
            [[contacts.put_action(view, replaces=replaces, raw_ctr=raw, now=NOW, **kw)]]
        )
        return outcome.written, outcome.reason

    assert put(new, None, new_raw, create_only=True) == (True, None)
    assert put(new, None, new_raw, create_only=True) == (False, bulk.CONDITION_FAILED)  # exists
    assert put(old, None, old_raw) == (False, bulk.CONDITION_FAILED)  # an older CTR version
    assert put(new, None, new_raw) == (False, bulk.CONDITION_FAILED)  # the same one
    stored = contacts.load(cid)
    assert stored is not None and stored.last_update == "2022-01-11T03:41:32.000Z"
    assert (stored.imported_at, stored.ctr, stored.emission_pending) == (
        "2026-06-01T12:00:00.000Z",
        new_raw,
        True,
    )
    assert stored.doc["contact_id"] == cid and stored.view.state is new.state
    revised = replace(stored.view, revision=1)
    assert put(revised, None, None)[0] is False  # a revision needs the version it replaces
    assert put(revised, stored, None) == (True, None)
    assert put(replace(revised, revision=2), stored, None) == (False, bulk.CONDITION_FAILED)  # stale base
    again = contacts.load_many([cid, "nobody"])
    assert list(again) == [cid]
    assert again[cid].version.endswith("#000001") and again[cid].ctr == new_raw
    assert again[cid].imported_at == "2026-06-01T12:00:00.000Z"  # the first import's
    assert list(contacts.contact_ids_of_agent(str(new.contact.acd_id))) == [cid]
    assert list(contacts.contact_ids_of_agent("nobody")) == []


def test_contact_store_writes_each_group_whole_with_its_sweeper_marker_or_not_at_all(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, joins = stores
    first, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="g-1")
    other, other_raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="g-2")
    due = NOW + timedelta(minutes=5)
    assert contacts.transact([]) == []
    outcomes = contacts.transact(
        [
            [
                contacts.put_action(first, replaces=None, raw_ctr=raw, now=NOW),
                joins.waiting_put("g-1", due, NOW),
            ],
            [],  # nothing to write: written
            [contacts.put_action(other, replaces=None, raw_ctr=other_raw, now=NOW)],
        ]
    )
    assert [o.written for o in outcomes] == [True, True, True]
    stale = contacts.load("g-1")
    assert stale is not None
    assert contacts.transact(
        [[contacts.put_action(replace(first, revision=1), replaces=stale, raw_ctr=None, now=NOW)]]
    )[0].written
    refused, written = contacts.transact(
        [
            [
                contacts.put_action(replace(first, revision=2), replaces=stale, raw_ctr=None, now=NOW),
                joins.waiting_delete("g-1"),
            ],
            [contacts.emitted_action("g-2", other.version), joins.waiting_put("g-2", due, NOW)],
        ]
    )
    assert (refused.written, refused.reason, written.written) == (False, bulk.CONDITION_FAILED, True)
    assert sorted(d.key for d in joins.due(due)) == ["g-1", "g-2"]  # g-1's marker kept: its group refused
    assert contacts.load("g-1").view.revision == 1  # type: ignore[union-attr]
    done = contacts.load("g-2")
    assert done is not None and not done.emission_pending
    assert not contacts.transact([[contacts.emitted_action("g-1", first.version)]])[
        0
    ].written  # replaced since


def test_contact_store_lets_one_holder_claim_an_emission_and_a_lapsed_claim_be_taken_over(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, _ = stores
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="claim-1")
    assert contacts.claim_emission("claim-1", view.version, "a", NOW, 30) is ClaimResult.DONE  # no contact
    assert contacts.transact([[contacts.put_action(view, replaces=None, raw_ctr=raw, now=NOW)]])[0].written
    assert contacts.claim_emission("claim-1", view.version, "a", NOW, 30) is ClaimResult.CLAIMED
    assert contacts.claim_emission("claim-1", view.version, "b", NOW, 30) is ClaimResult.BUSY
    assert (
        contacts.claim_emission("claim-1", "2000-01-01T00:00:00.000Z#000000", "b", NOW, 30)
        is ClaimResult.DONE
    )
    later = NOW + timedelta(seconds=31)
    assert contacts.claim_emission("claim-1", view.version, "b", later, 30) is ClaimResult.CLAIMED
    with pytest.raises(ClientError) as taken:
        contacts.note_attempt("claim-1", view.version, "a", later)  # a's claim was taken over
    assert taken.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert contacts.note_attempt("claim-1", view.version, "b", later) is None
    assert contacts.note_attempt("claim-1", view.version, "b", later) == "2026-06-01T12:00:31.000Z"
    contacts.mark_emitted("claim-1", "2000-01-01T00:00:00.000Z#000000")  # another version: nothing
    assert contacts.load("claim-1").emission_pending  # type: ignore[union-attr]
    contacts.mark_emitted("claim-1", view.version)
    assert not contacts.load("claim-1").emission_pending  # type: ignore[union-attr]
    assert contacts.claim_emission("claim-1", view.version, "c", later, 30) is ClaimResult.DONE


def test_contact_store_claimed_on_write_is_busy_to_others(stores: tuple[Any, Any], samples_dir: Path) -> None:
    contacts, _ = stores
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="claim-2")
    action = contacts.put_action(view, replaces=None, raw_ctr=raw, now=NOW, claim_owner="w1")
    assert contacts.transact([[action]])[0].written
    assert contacts.claim_emission("claim-2", view.version, "w2", NOW, 30) is ClaimResult.BUSY
    assert contacts.note_attempt("claim-2", view.version, "w1", NOW) == "2026-06-01T12:00:00.000Z"


def test_contact_store_lets_one_of_concurrent_creators_win(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, _ = stores
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="race-1")

    def create(_: int) -> bool:
        action = contacts.put_action(view, replaces=None, raw_ctr=raw, now=NOW, create_only=True)
        return bool(contacts.transact([[action]])[0].written)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(create, range(16))).count(True) == 1


@pytest.fixture(params=["dynamodb", "memory"])
def leases(request: pytest.FixtureRequest) -> tuple[Any, Callable[[LeaseState], None]]:
    """The lease table, and how the KCL writes a lease (take, renew, checkpoint, hand-off)."""
    if request.param == "memory":
        memory = MemoryLeaseTable(exists=False)
        return memory, memory.put
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")
    table = f"{settings.application_name}-leases-contract"

    def put(lease: LeaseState) -> None:
        if not KclLeaseTable(aws.dynamodb, table).exists():
            aws.dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        item: dict[str, Any] = {
            "leaseKey": {"S": lease.shard_id},
            "checkpoint": {"S": lease.checkpoint.sequence_number},
            "checkpointSubSequenceNumber": {"N": str(lease.checkpoint.sub_sequence_number)},
            "leaseCounter": {"N": str(lease.counter)},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
        }
        if lease.owner:
            item["leaseOwner"] = {"S": lease.owner}
        if lease.checkpoint_owner:
            item["checkpointOwner"] = {"S": lease.checkpoint_owner}
        aws.dynamodb.put_item(TableName=table, Item=item)

    return KclLeaseTable(aws.dynamodb, table), put


def test_lease_table_moves_a_checkpoint_only_over_the_lease_as_read(
    leases: tuple[Any, Callable[[LeaseState], None]],
) -> None:
    table, put = leases
    assert not table.exists()
    put(LeaseState("shardId-000000000000", Checkpoint("100"), "w1", 5))
    put(LeaseState("shardId-000000000001", Checkpoint("200", 3), None, 7))
    put(LeaseState("shardId-000000000002", Checkpoint("300"), "w1", 2, checkpoint_owner="w2"))  # a hand-off
    assert table.exists()
    read = table.read()
    assert sorted(read) == ["shardId-000000000000", "shardId-000000000001", "shardId-000000000002"]
    assert read["shardId-000000000001"] == LeaseState("shardId-000000000001", Checkpoint("200", 3), None, 7)
    assert read["shardId-000000000002"].checkpoint_owner == "w2"
    first = read["shardId-000000000000"]
    put(LeaseState(first.shard_id, first.checkpoint, "w1", 6))  # the worker renewed since the read
    assert not table.move(first, Checkpoint("TRIM_HORIZON"))
    renewed = table.read()[first.shard_id]
    assert table.move(renewed, Checkpoint("TRIM_HORIZON"))
    moved = table.read()[first.shard_id]
    assert (moved.checkpoint, moved.owner, moved.counter) == (Checkpoint("TRIM_HORIZON"), None, 7)  # released
    assert not table.move(renewed, Checkpoint("50"))  # the move itself changed the lease
    assert not table.move(read["shardId-000000000002"], Checkpoint("TRIM_HORIZON"))  # never during a hand-off
    assert table.read()["shardId-000000000002"].checkpoint == Checkpoint("300")
    assert not table.move(
        LeaseState("shardId-000000000009", Checkpoint("1"), None, 0), Checkpoint("TRIM_HORIZON")
    )


@pytest.fixture(params=["dynamodb", "memory"])
def commands(request: pytest.FixtureRequest) -> tuple[Any, Any, Callable[[str], list[dict[str, Any]]]]:
    """The command log, the sender, and what reached an agent's desktop queue."""
    if request.param == "memory":
        memory = MemoryCommands()
        return memory, memory, lambda agent: memory.sent.get(agent, [])
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")
    store = CommandStore(aws.dynamodb, settings.commands_table)
    queues = AgentQueues(aws.sqs)

    def sent(agent: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        while True:
            page = aws.sqs.receive_message(
                QueueUrl=queues.url(agent), MaxNumberOfMessages=10, WaitTimeSeconds=0
            )
            if not page.get("Messages"):
                return out
            for message in page["Messages"]:
                out.append(orjson.loads(message["Body"]))
                aws.sqs.delete_message(QueueUrl=queues.url(agent), ReceiptHandle=message["ReceiptHandle"])

    return store, CommandPublisher(store, queues, aws.sqs), sent


def _command(
    n: int, agent: str = "ann", type_: str = "extract_screen", at: str = "12:00:00"
) -> dict[str, Any]:
    return {
        "command_id": f"cmd-{agent}-{n}",
        "agent": agent,
        "type": type_,
        "issued_at": f"2026-06-01T{at}.000Z",
        "contact_id": f"c-{n}",
    }


def test_commands_are_recorded_and_sent_once_per_command_id(commands: Any) -> None:
    log, sender, sent = commands
    assert log.get("cmd-ann-1") is None
    assert sender.publish(_command(1)) is True
    assert sender.publish(_command(1)) is False  # published again (a retried batch): nothing sent
    assert sender.publish(_command(2, at="12:00:05")) is True
    assert sender.publish(_command(1), resend=True, resend_tag="sync-1") is True  # recovery: sent again
    assert [m["command_id"] for m in sent("ann")] == ["cmd-ann-1", "cmd-ann-2", "cmd-ann-1"]
    record = log.get("cmd-ann-1")
    assert record is not None
    assert (record.agent, record.type, record.state, record.contact_id, record.result) == (
        "ann",
        "extract_screen",
        "sent",
        "c-1",
        None,
    )
    assert record.body == _command(1)


def test_command_results_are_recorded_once_and_listed_per_agent(commands: Any) -> None:
    log, sender, _ = commands
    sender.publish(_command(2, at="12:00:05"))
    sender.publish(_command(1, at="12:00:01"))
    sender.publish(_command(3, type_="stop_recording", at="12:00:09"))
    sender.publish(_command(1, agent="bo", at="12:00:02"))
    assert log.mark_result("cmd-ann-1", "screen_uploaded", NOW) is True
    assert log.mark_result("cmd-ann-1", "screen_uploaded", NOW) is False  # a redelivered result
    assert log.mark_result("cmd-ann-1", "screen_failed", NOW) is True
    assert log.mark_result("cmd-nobody", "screen_failed", NOW) is False
    assert log.get("cmd-ann-1").result == "screen_failed"  # type: ignore[union-attr]
    since = datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC)
    assert [r.command_id for r in log.of_agent("ann", since)] == ["cmd-ann-1", "cmd-ann-2", "cmd-ann-3"]
    assert [r.command_id for r in log.of_agent("ann", since, "extract_screen")] == ["cmd-ann-1", "cmd-ann-2"]
    assert [r.command_id for r in log.of_agent("ann", since + timedelta(seconds=1))] == [
        "cmd-ann-2",
        "cmd-ann-3",
    ]
    assert [r.command_id for r in log.of_agent("bo", since)] == ["cmd-bo-1"]
    assert log.of_agent("cy", since) == []


@pytest.fixture(params=["dynamodb", "memory"])
def agent_states(request: pytest.FixtureRequest) -> Any:
    return _port(request, MemoryAgentStates, lambda s, aws: AgentStates(aws.dynamodb, s.agents_table))


def test_agent_state_is_saved_only_over_the_last_event_read(agent_states: Any) -> None:
    assert agent_states.load("ann") == (AgentRecording(), None, None)
    assert agent_states.agents() == []
    t1, t2 = NOW, NOW + timedelta(seconds=5)
    recording = AgentRecording(recording=True, last_event_at=t1, recent_contacts=((t1, t1),))
    assert agent_states.save("ann", recording, None)
    assert not agent_states.save("ann", recording, None)  # another worker applied an event first
    state, last, released = agent_states.load("ann")
    assert (state, last, released) == (recording, "2026-06-01T12:00:00.000Z", None)
    stopped = AgentRecording(recording=False, last_event_at=t2)
    assert not agent_states.save("ann", stopped, "2026-06-01T11:59:00.000Z")  # stale
    assert agent_states.save("ann", stopped, last)
    assert agent_states.load("ann")[0] == stopped
    assert agent_states.save("bo", AgentRecording(recording=True, last_event_at=t2), None)
    assert agent_states.agents() == ["ann", "bo"]
    assert agent_states.recording_agents() == ["bo"]
    assert agent_states.set_released("ann", t2)
    assert not agent_states.set_released("ann", t1)  # never backwards
    assert not agent_states.set_released("ann", t2)
    assert agent_states.load("ann")[2] == "2026-06-01T12:00:05.000Z"
    assert agent_states.load("ann")[1] == "2026-06-01T12:00:05.000Z"  # the state kept its guard


@pytest.fixture(params=["dynamodb", "memory"])
def progress(request: pytest.FixtureRequest) -> tuple[Any, ...]:
    """The stream's progress; how a shard's record processor notes and forgets (a fresh
    processor each time, so the table's write throttle lets every note through); the Kinesis
    client and stream to ask; the stream's open shards."""
    if request.param == "memory":
        shards = ["shardId-000000000000", "shardId-000000000001"]
        memory = MemoryProgress(shards)
        return memory, memory.note, memory.forget, None, "ctr", shards
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")

    def fresh() -> ShardProgress:
        return ShardProgress(aws.dynamodb, settings.join_table, settings.application_name)

    shards = [s["ShardId"] for s in aws.kinesis.list_shards(StreamName=settings.ctr_stream)["Shards"]]
    return (
        fresh(),
        lambda shard, behind, now: fresh().note(shard, behind, now),
        lambda shard: fresh().forget(shard),
        aws.kinesis,
        settings.ctr_stream,
        shards,
    )


def test_progress_is_the_earliest_open_shard_note_and_never_goes_back(progress: Any) -> None:
    store, note, forget, kinesis, stream, shards = progress
    assert store.consumed_until(kinesis, stream) is None
    for index, shard in enumerate(shards[:-1]):
        note(shard, 1000 * index, NOW)
    assert store.consumed_until(kinesis, stream) is None  # a shard without a note holds everything back
    note(shards[-1], None, NOW)  # nothing known of its lag: no note
    assert store.consumed_until(kinesis, stream) is None
    note(shards[-1], 60_000, NOW)
    assert store.consumed_until(kinesis, stream) == NOW - timedelta(minutes=1)
    note(shards[-1], 120_000, NOW)  # a note behind the last: ignored
    assert store.consumed_until(kinesis, stream) == NOW - timedelta(minutes=1)
    for shard in shards:
        note(shard, -5, NOW + timedelta(minutes=2))  # ahead of latest counts as caught up
    assert store.consumed_until(kinesis, stream) == NOW + timedelta(minutes=2)
    forget(shards[0])  # forgotten while still open: held back again
    assert store.consumed_until(kinesis, stream) is None


@pytest.fixture(params=["s3", "memory"])
def media(request: pytest.FixtureRequest) -> tuple[Any, Callable[[str, bytes], str], str]:
    """The call recordings, how one is uploaded (its eTag), and the recordings bucket."""
    if request.param == "memory":
        memory = MemoryMedia()
        return memory, memory.put, "recordings"
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")

    def upload(location: str, body: bytes) -> str:
        bucket, _, key = location.partition("/")
        return str(aws.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"'))

    bucket = settings.recordings_bucket
    return S3Media(aws.s3, own_buckets=[bucket]), upload, bucket


def test_media_probes_a_recording_from_its_header_and_opening_and_absent_ones_as_absent(
    media: tuple[Any, Callable[[str, bytes], str], str],
) -> None:
    recordings, upload, bucket = media
    call, broken, missing = (
        f"{bucket}/connect/call.wav",
        f"{bucket}/connect/broken.wav",
        f"{bucket}/connect/no.wav",
    )
    body = wav_bytes(30.0)
    etag = upload(call, body)
    assert recordings.probe(missing) is None
    probed = recordings.probe(call)
    assert probed is not None
    info, duration = probed
    assert (info.size, info.etag) == (len(body), etag)
    assert (round(duration.seconds, 3), duration.source) == (30.0, "header")
    assert PROBE_READ <= duration.bytes_read < len(body)  # the opening, never the file
    assert duration.parties is not None and duration.parties.parties.value == "both"
    bad = wav_bytes(30.0, corrupt_header=True)
    upload(broken, bad)
    probed = recordings.probe(broken)
    assert probed is not None
    assert probed[1].source == "size" and probed[1].seconds > 0  # unreadable header: from the size
    assert probed[1].parties is not None and probed[1].parties.parties.value == "unknown"
