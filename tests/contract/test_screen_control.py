"""Screen-recording control on the emulator: per-agent queues, commands once, results on contacts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.progress import ShardProgress
from processor.adapters.dynamodb.runtime_config import RuntimeConfigStore
from processor.adapters.dynamodb.users_table import DynamoUserAdmin, DynamoUserDirectory
from processor.adapters.screen_keys import generate_server_key
from processor.adapters.sqs.commands import AgentStates, CommandStore
from processor.app.ctr_path import utc_now
from processor.app.screen_control import AgentEventIngest
from processor.app.screen_results import ScreenResultConsumer
from processor.app.wiring import build_joiner, build_quarantine, build_screen_control
from processor.core.agent_queue import agent_queue_name
from processor.core.batch import StreamRecord
from processor.core.ctr import ctr_from_object
from processor.core.desktop_protocol import ResultType, build_result, parse_command
from processor.core.user_directory import QmUser
from processor.platform.exceptions import SourcePosition
from tests.contract.test_joiner import output_records

SAMPLE_ARN = (
    "arn:aws:connect:us-east-1:236630710668:instance/6e3230e5-2dd2-4464-ade8-b032cdd0abef/agent/"
    "dfe8970a-ee78-4fa2-b79b-b6b3e92d35c0"
)


@pytest.fixture
def screen_settings(bootstrapped, aws, tmp_path: Path):  # type: ignore[no-untyped-def]
    key_file = tmp_path / "server.pem"
    generate_server_key(key_file)
    settings = bootstrapped.model_copy(update={"screen_private_key_file": str(key_file)})
    users = DynamoUserDirectory(aws.dynamodb, settings.users_table)
    users.put(QmUser("christy.burkholder", "Christy", "Burkholder", True, agent_arn=SAMPLE_ARN))
    users.put(QmUser("agent.one", "Agent", "One", True))
    users.put(QmUser("not.recorded", "Not", "Recorded", False))
    return settings


def queue_messages(aws, agent: str) -> list[dict]:
    try:
        url = aws.sqs.get_queue_url(QueueName=agent_queue_name(agent))["QueueUrl"]
    except aws.sqs.exceptions.QueueDoesNotExist:
        return []
    out = []
    while True:
        got = aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=60
        )
        messages = got.get("Messages", [])
        if not messages:
            return out
        for message in messages:
            out.append(orjson.loads(message["Body"]))
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def agent_records(samples_dir: Path, username: str | None = None) -> list[StreamRecord]:
    events = orjson.loads((samples_dir / "agent-events/aspect-wfm-quickstart-recorddata.json").read_bytes())
    out = []
    for i, event in enumerate(events):
        if username and event.get("CurrentAgentSnapshot"):
            event["CurrentAgentSnapshot"]["Configuration"]["Username"] = username
        if username:
            event["AgentARN"] = event["AgentARN"].replace("dfe8970a", "00000000")
        out.append(
            StreamRecord(orjson.dumps(event), SourcePosition("kinesis", "agents", "shardId-0", str(i)))
        )
    return out


def test_login_logout_become_start_stop_once_each(screen_settings, aws, samples_dir: Path) -> None:
    control = build_screen_control(screen_settings, aws)
    ingest = AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now)
    records = agent_records(samples_dir)
    ingest.process(records)
    ingest.process(records)  # a replay of the whole stream
    ingest.process(list(reversed(records)))
    commands = queue_messages(aws, "christy.burkholder")
    assert [c["type"] for c in commands] == ["start_recording", "stop_recording"]
    for command in commands:
        parse_command(orjson.dumps(command))  # schema-valid
    assert commands[0]["event_at"] == "2018-05-16T16:12:59.059Z"  # the LOGIN (no snapshot: ARN lookup)


def test_unconfigured_users_and_rte_off_produce_nothing(screen_settings, aws, samples_dir: Path) -> None:
    control = build_screen_control(screen_settings, aws)
    ingest = AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now)
    ingest.process(agent_records(samples_dir, username="not.recorded"))
    assert queue_messages(aws, "not.recorded") == []
    assert control.ignored.get("not_configured", 0) > 0
    store = RuntimeConfigStore(aws.dynamodb, screen_settings.config_table)
    store.save(
        replace(store.load(), rte_enabled=False), updated_by="test", updated_at="2026-01-01T00:00:00.000Z"
    )
    control = build_screen_control(screen_settings, aws)
    AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now).process(
        agent_records(samples_dir)
    )
    assert queue_messages(aws, "christy.burkholder") == []
    assert control.ignored.get("rte_disabled", 0) == 11


def ctr(contact_id: str, username: str) -> tuple:
    obj = {
        "ContactId": contact_id,
        "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
        "InitiationMethod": "INBOUND",
        "LastUpdateTimestamp": "2026-06-01T11:00:00Z",
        "DisconnectTimestamp": "2026-06-01T10:59:00Z",
        "Agent": {
            "Username": username,
            "ConnectedToAgentTimestamp": "2026-06-01T10:58:00Z",
            "AfterContactWorkEndTimestamp": "2026-06-01T10:59:30Z",
            "AgentInteractionDuration": 60,
        },
        "Recordings": None,
    }
    return ctr_from_object(obj), orjson.dumps(obj)


def test_imported_contact_gets_one_extraction(screen_settings, aws) -> None:
    joiner = build_joiner(screen_settings, aws)
    record, raw = ctr("c-screen-1", "agent.one")
    joiner.on_ctr(record, raw)
    joiner.on_ctr(record, raw)  # duplicate delivery
    build_joiner(screen_settings, aws).on_ctr(record, raw)  # another worker replays it
    [command] = queue_messages(aws, "agent.one")
    parsed = parse_command(orjson.dumps(command))
    assert parsed.command_id == "extract:c-screen-1" and parsed.contact_id == "c-screen-1"
    assert parsed.start == datetime(2026, 6, 1, 10, 58, tzinfo=UTC)
    assert parsed.end == datetime(2026, 6, 1, 10, 59, 30, tzinfo=UTC)  # after-contact work included
    assert (
        parsed.upload is not None
        and parsed.upload.url
        and parsed.upload.bucket == screen_settings.screen_bucket
    )
    stored = joiner.contacts.load("c-screen-1")
    assert stored is not None and stored.doc["screen_recording_status"] == "pending"
    # Not configured: no extraction, no status.
    joiner.on_ctr(*ctr("c-screen-2", "not.recorded"))
    assert queue_messages(aws, "not.recorded") == []
    other = joiner.contacts.load("c-screen-2")
    assert other is not None and other.doc["screen_recording_status"] is None


def test_without_after_contact_work_the_extraction_ends_at_disconnect(screen_settings, aws) -> None:
    store = RuntimeConfigStore(aws.dynamodb, screen_settings.config_table)
    store.save(
        replace(store.load(), include_acw=False), updated_by="t", updated_at="2026-01-01T00:00:00.000Z"
    )
    build_joiner(screen_settings, aws).on_ctr(*ctr("c-noacw", "agent.one"))
    [command] = queue_messages(aws, "agent.one")
    assert command["end"] == "2026-06-01T10:59:00.000Z"


def test_a_crash_between_send_and_mark_resends_the_same_command(screen_settings, aws) -> None:
    joiner = build_joiner(screen_settings, aws)
    record, raw = ctr("c-crash-screen", "agent.one")
    joiner.on_ctr(record, raw)
    first = queue_messages(aws, "agent.one")
    # The worker died after the send, before the mark: the record is still pending.
    aws.dynamodb.update_item(
        TableName=screen_settings.commands_table,
        Key={"command_id": {"S": "extract:c-crash-screen"}},
        UpdateExpression="SET #s = :p",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":p": {"S": "pending"}},
    )
    build_joiner(screen_settings, aws).on_ctr(record, raw)
    again = queue_messages(aws, "agent.one")
    # The same command id again: the desktop's journal makes it a no-op.
    assert [c["command_id"] for c in first + again] == ["extract:c-crash-screen"] * 2
    record_after = CommandStore(aws.dynamodb, screen_settings.commands_table).get("extract:c-crash-screen")
    assert record_after is not None and record_after.state == "sent"
    build_joiner(screen_settings, aws).on_ctr(record, raw)
    assert queue_messages(aws, "agent.one") == []


def result_consumer(settings, aws) -> ScreenResultConsumer:
    url = aws.sqs.get_queue_url(QueueName=settings.screen_results_queue)["QueueUrl"]
    return ScreenResultConsumer(
        sqs=aws.sqs,
        queue_url=url,
        queue_name=settings.screen_results_queue,
        joiner=build_joiner(settings, aws),
        control=build_screen_control(settings, aws),
        commands=CommandStore(aws.dynamodb, settings.commands_table),
        users=DynamoUserAdmin(aws.dynamodb, settings.users_table),
        quarantine=build_quarantine(settings, aws),
        wait_seconds=0,
    )


def send_result(aws, settings, doc: dict) -> None:
    url = aws.sqs.get_queue_url(QueueName=settings.screen_results_queue)["QueueUrl"]
    aws.sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(doc).decode())


def test_results_land_on_the_contact_once_and_sync_republishes(screen_settings, aws) -> None:
    joiner = build_joiner(screen_settings, aws)
    joiner.on_ctr(*ctr("c-res-1", "agent.one"))
    joiner.on_ctr(*ctr("c-res-2", "agent.one"))
    commands = queue_messages(aws, "agent.one")
    assert len(commands) == 2
    target = next(c for c in commands if c["contact_id"] == "c-res-1")["upload"]
    consumer = result_consumer(screen_settings, aws)
    now = datetime.now(UTC)
    uploaded = build_result(
        ResultType.SCREEN_UPLOADED,
        agent="agent.one",
        sent_at=now,
        command_id="extract:c-res-1",
        contact_id="c-res-1",
        location={"bucket": target["bucket"], "key": target["key"]},
        duration_seconds=90.0,
        coverage=0.75,
        gaps=[],
        server_key_id="k",
    )
    for _ in range(2):  # a repeated result changes nothing
        send_result(aws, screen_settings, uploaded)
    send_result(aws, screen_settings, {"schema_version": 1, "type": "bogus"})
    while consumer.poll_once():
        pass
    stored = joiner.contacts.load("c-res-1")
    assert stored is not None
    assert stored.doc["screen_recording_status"] == "uploaded"
    assert stored.doc["screen_recording_location"] == f"{target['bucket']}/{target['key']}"
    assert stored.doc["screen_coverage"] == 0.75
    emitted = [r for r in output_records(aws, screen_settings.output_stream) if r["contact_id"] == "c-res-1"]
    assert [r["screen_recording_status"] for r in emitted] == ["pending", "uploaded"]
    # The desktop comes back and asks for what it missed: c-res-2 only (c-res-1 has a result).
    sync = build_result(
        ResultType.SYNC_REQUEST, agent="agent.one", sent_at=now, since=now - timedelta(days=1)
    )
    send_result(aws, screen_settings, sync)
    while consumer.poll_once():
        pass
    assert [c["command_id"] for c in queue_messages(aws, "agent.one")] == ["extract:c-res-2"]
    row = next(
        u
        for u in DynamoUserAdmin(aws.dynamodb, screen_settings.users_table).rows()
        if u.user.username == "agent.one"
    )
    assert row.desktop_last_seen_at is not None


def test_release_waits_for_every_shard(screen_settings, aws) -> None:
    control = build_screen_control(screen_settings, aws)
    progress = ShardProgress(aws.dynamodb, screen_settings.join_table, screen_settings.application_name)
    shards = [s["ShardId"] for s in aws.kinesis.list_shards(StreamName=screen_settings.ctr_stream)["Shards"]]
    now = datetime(2026, 6, 1, 12, tzinfo=UTC)
    progress.note(shards[0], 0, now)
    consumed = progress.consumed_until(aws.kinesis, screen_settings.ctr_stream)
    assert consumed is None  # one shard has no progress yet: nothing is released
    progress.note(shards[1], 60_000, now)  # one minute behind
    consumed = progress.consumed_until(aws.kinesis, screen_settings.ctr_stream)
    assert consumed == now - timedelta(minutes=1)
    assert control.release("agent.one", consumed, timedelta(minutes=30), timedelta(minutes=5))
    assert not control.release("agent.one", consumed, timedelta(minutes=30), timedelta(minutes=5))  # once
    [command] = queue_messages(aws, "agent.one")
    assert command["type"] == "release_segments_before"
    assert command["before"] == "2026-06-01T11:24:00.000Z"
    _, _, released = AgentStates(aws.dynamodb, screen_settings.agents_table).load("agent.one")
    assert released == "2026-06-01T11:24:00.000Z"


def set_rte(aws, settings, enabled: bool) -> None:  # type: ignore[no-untyped-def]
    store = RuntimeConfigStore(aws.dynamodb, settings.config_table)
    store.save(
        replace(store.load(), rte_enabled=enabled), updated_by="test", updated_at=utc_now().isoformat()
    )


def test_logout_stops_recording_after_rte_is_switched_off(screen_settings, aws, samples_dir: Path) -> None:
    records = agent_records(samples_dir)  # LOGIN, Available, ... Break | Lunch, Offline, LOGOUT
    control = build_screen_control(screen_settings, aws)
    AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now).process(records[:4])
    set_rte(aws, screen_settings, False)
    control = build_screen_control(screen_settings, aws)  # a fresh read of the settings
    AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now).process(records[4:])
    commands = queue_messages(aws, "christy.burkholder")
    assert [c["type"] for c in commands] == ["start_recording", "stop_recording"]
    assert commands[1]["event_at"] == "2018-05-16T16:50:18.018Z"  # the agent went Offline
    state, _, _ = AgentStates(aws.dynamodb, screen_settings.agents_table).load("christy.burkholder")
    assert not state.recording


def test_logout_stops_recording_after_the_user_is_switched_off(
    screen_settings, aws, samples_dir: Path
) -> None:
    records = agent_records(samples_dir)
    control = build_screen_control(screen_settings, aws)
    ingest = AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now)
    ingest.process(records[:4])
    DynamoUserAdmin(aws.dynamodb, screen_settings.users_table).set_screen_recording(
        ["christy.burkholder"], False
    )
    control = build_screen_control(screen_settings, aws)
    AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now).process(records[4:])
    assert [c["type"] for c in queue_messages(aws, "christy.burkholder")] == [
        "start_recording",
        "stop_recording",
    ]
    # Not configured any more: her next logon starts nothing.
    AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now).process(
        [replace(records[0], data=records[0].data.replace(b"2018-05-16T16:12", b"2018-05-17T08:00"))]
    )
    assert queue_messages(aws, "christy.burkholder") == []


def test_switching_rte_off_stops_every_agent_recording_now(screen_settings, aws, samples_dir: Path) -> None:
    control = build_screen_control(screen_settings, aws)
    ingest = AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now)
    ingest.process(agent_records(samples_dir)[:2])
    ingest.process(agent_records(samples_dir, username="agent.one")[:2])
    assert [c["type"] for c in queue_messages(aws, "christy.burkholder")] == ["start_recording"]
    assert [c["type"] for c in queue_messages(aws, "agent.one")] == ["start_recording"]
    assert control.stop_switched_off() == 0  # everyone who records may record

    set_rte(aws, screen_settings, False)
    control = build_screen_control(screen_settings, aws)
    assert control.stop_switched_off() == 2
    assert control.stop_switched_off() == 0  # once
    for agent in ("christy.burkholder", "agent.one"):
        [stop] = queue_messages(aws, agent)
        assert stop["type"] == "stop_recording"
        parse_command(orjson.dumps(stop))
    states = AgentStates(aws.dynamodb, screen_settings.agents_table)
    assert states.recording_agents() == []
    # Their later logouts send nothing more; both stay in line for segment release.
    AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now).process(
        agent_records(samples_dir)[2:]
    )
    assert queue_messages(aws, "christy.burkholder") == []
    assert {"christy.burkholder", "agent.one"} <= set(states.agents())


def test_switching_one_user_off_stops_only_her_recording(screen_settings, aws, samples_dir: Path) -> None:
    control = build_screen_control(screen_settings, aws)
    ingest = AgentEventIngest(control, build_quarantine(screen_settings, aws), utc_now)
    ingest.process(agent_records(samples_dir)[:2])
    ingest.process(agent_records(samples_dir, username="agent.one")[:2])
    queue_messages(aws, "christy.burkholder"), queue_messages(aws, "agent.one")
    control.users.get_many(["agent.one"])  # cached as configured
    DynamoUserAdmin(aws.dynamodb, screen_settings.users_table).set_screen_recording(["agent.one"], False)
    assert control.stop_switched_off() == 1  # read past the lookup cache
    assert [c["type"] for c in queue_messages(aws, "agent.one")] == ["stop_recording"]
    assert queue_messages(aws, "christy.burkholder") == []
    assert AgentStates(aws.dynamodb, screen_settings.agents_table).recording_agents() == [
        "christy.burkholder"
    ]


def test_the_screen_demo_contact_has_its_agent_names(bootstrapped, aws) -> None:
    from processor.desktop.screen_demo import _import_contact, demo_user

    user = demo_user(bootstrapped, aws)
    start = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)
    contact_id = _import_contact(bootstrapped, aws, start, start + timedelta(seconds=14))
    stored = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table).get(contact_id)
    assert stored is not None
    assert (stored.doc["first_name"], stored.doc["last_name"]) == (user.first_name, user.last_name)
    assert "user_unknown" not in stored.doc["flags"]


def test_results_that_answer_no_command_of_theirs_are_never_applied(screen_settings, aws) -> None:
    """Anything that can send to the results queue: another contact's video, another agent's
    command, a result no command asked for, a user the desktop invents."""
    joiner = build_joiner(screen_settings, aws)
    joiner.on_ctr(*ctr("c-victim", "agent.one"))
    [command] = queue_messages(aws, "agent.one")
    target = command["upload"]
    consumer = result_consumer(screen_settings, aws)
    now = datetime.now(UTC)

    def uploaded(**change):  # type: ignore[no-untyped-def]
        fields = {
            "agent": "agent.one",
            "command_id": "extract:c-victim",
            "contact_id": "c-victim",
            "location": {"bucket": target["bucket"], "key": target["key"]},
            **change,
        }
        return build_result(
            ResultType.SCREEN_UPLOADED,
            sent_at=now,
            duration_seconds=60.0,
            coverage=1.0,
            gaps=[],
            server_key_id="k",
            **fields,
        )

    attacks = [
        uploaded(location={"bucket": "qm-ctr-archive", "key": "quarantine/all-the-numbers.json"}),
        uploaded(agent="christy.burkholder"),  # another agent answers agent.one's command
        uploaded(command_id="extract:c-other", contact_id="c-other"),  # a command never sent
        uploaded(contact_id="c-other"),  # agent.one's command, another contact
        build_result(ResultType.HEARTBEAT, agent="mallory.new", sent_at=now, desktop_id="PC-X"),
    ]
    for doc in attacks:
        send_result(aws, screen_settings, doc)
    while consumer.poll_once():
        pass
    stored = joiner.contacts.load("c-victim")
    assert stored is not None and stored.doc["screen_recording_status"] == "pending"
    assert stored.doc.get("screen_recording_location") is None
    assert CommandStore(aws.dynamodb, screen_settings.commands_table).get("extract:c-victim").result is None  # type: ignore[union-attr]
    users = {r.user.username for r in DynamoUserAdmin(aws.dynamodb, screen_settings.users_table).rows()}
    assert "mallory.new" not in users
    from processor.adapters.dynamodb.quarantine import DynamoQuarantine

    reasons = [
        e.reason
        for e in DynamoQuarantine(
            aws.dynamodb, screen_settings.quarantine_table, aws.s3, screen_settings.quarantine_bucket
        ).list()
    ]
    assert reasons.count("untrusted_result") == 4
    # The real answer still lands.
    send_result(aws, screen_settings, uploaded())
    while consumer.poll_once():
        pass
    assert joiner.contacts.load("c-victim").doc["screen_recording_status"] == "uploaded"  # type: ignore[union-attr]
