"""Screen control end to end: both KCL applications (CTRs, agent events) under `qm-ingest run`.

A LOGIN on the agent event stream reaches the agent's own queue as start_recording; a
contact of that agent imported from the CTR stream yields exactly one extract_screen with
the contact's interval; a kill -9 after the command was sent and before the checkpoint,
then a restart (the batch is replayed), yields no second one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.adapters.kinesis.put_records import put_records
from processor.adapters.screen_keys import generate_server_key
from processor.core.user_directory import QmUser
from tests.contract.test_screen_control import queue_messages
from tests.helpers import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

AGENT_ARN = "arn:aws:connect:us-east-1:123456789012:instance/i-1/agent/0f0f0f0f-1111-2222-3333-444444444444"


def agent_event(kind: str, at: str, event_id: str) -> bytes:
    return orjson.dumps(
        {
            "AgentARN": AGENT_ARN,
            "EventId": event_id,
            "EventType": kind,
            "EventTimestamp": at,
            "InstanceARN": "arn:aws:connect:us-east-1:123456789012:instance/i-1",
            "CurrentAgentSnapshot": None,
            "Version": "2017-10-01",
        }
    )


def ctr(contact_id: str) -> bytes:
    return orjson.dumps(
        {
            "ContactId": contact_id,
            "InstanceARN": "arn:aws:connect:us-east-1:123456789012:instance/i-1",
            "InitiationMethod": "INBOUND",
            "LastUpdateTimestamp": "2026-07-01T09:20:00Z",
            "DisconnectTimestamp": "2026-07-01T09:14:00Z",
            "Agent": {
                "ARN": AGENT_ARN,
                "Username": "screen.agent",
                "ConnectedToAgentTimestamp": "2026-07-01T09:10:00Z",
                "AfterContactWorkEndTimestamp": "2026-07-01T09:15:00Z",
                "AgentInteractionDuration": 240,
            },
            "Recordings": None,
        }
    )


def test_login_and_contact_reach_the_agent_queue_once(bootstrapped, aws, tmp_path: Path) -> None:
    settings = bootstrapped
    key_file = tmp_path / "server.pem"
    generate_server_key(key_file)
    DynamoUserDirectory(aws.dynamodb, settings.users_table).put(
        QmUser("screen.agent", "Screen", "Agent", True, agent_arn=AGENT_ARN)
    )
    env = {"QM_SCREEN_PRIVATE_KEY_FILE": str(key_file), "QM_RELEASE_INTERVAL_SECONDS": "3600"}
    put_records(
        aws.kinesis,
        settings.agent_event_stream,
        [(agent_event("LOGIN", "2026-07-01T09:00:00.000Z", "e1"), "a")],
    )
    marker = tmp_path / "killed"
    crash_env = {
        **env,
        "QM_FAULT_KILL_AT": f"after_write@{settings.ctr_stream}",
        "QM_FAULT_MARKER": str(marker),
    }
    log = tmp_path / "service.log"
    service = ServiceProcess(log, crash_env).start()
    got: list[dict] = []
    try:
        got += wait_until(
            lambda: queue_messages(aws, "screen.agent"), 150, "start_recording on the agent queue"
        )
        assert [c["type"] for c in got] == ["start_recording"]
        # The CTR's record processor dies after the command is sent, before the checkpoint.
        put_records(aws.kinesis, settings.ctr_stream, [(ctr("screen-contact-1"), "c")])
        wait_until(marker.exists, 90, "the record processor to be killed after its write")
        got += wait_until(lambda: queue_messages(aws, "screen.agent"), 60, "extract_screen")
        # The KCL restarts the processor; the batch is replayed from the last checkpoint.
        wait_until(
            lambda: "after_write" in marker.read_text() and "batch processed" in service.logs(), 120, "replay"
        )
    finally:
        service.stop()
    # Whatever the replay did, it did not publish a second extraction.
    got += queue_messages(aws, "screen.agent")
    types = [c["type"] for c in got]
    assert types == ["start_recording", "extract_screen"], types
    extract = got[1]
    assert (extract["contact_id"], extract["start"], extract["end"]) == (
        "screen-contact-1",
        "2026-07-01T09:10:00.000Z",
        "2026-07-01T09:15:00.000Z",
    )
    assert datetime.now(UTC).year >= 2026
