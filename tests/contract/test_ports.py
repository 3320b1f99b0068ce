"""One contract per port, run against the emulator-backed adapter (DynamoDB, S3, SQS, Kinesis)
and the in-memory one (processor/adapters/memory.py): application tests that use the in-memory
one rely on exactly what these tests hold for both. The join store and the contact store have
theirs in tests/contract/test_port_stores.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from processor.adapters.dynamodb.console_audit_log import AuditEntry, DynamoAuditLog
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
from processor.core.user_directory import QmUser
from processor.devtools.simulated_centre import wav_bytes
from processor.platform.exceptions import InvalidInput, SourcePosition

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
