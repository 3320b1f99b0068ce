"""The join on the in-memory ports (processor/adapters/memory.py), no AWS: what the
contract suite holds for both implementations is enough for the joiner's whole path."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from processor.adapters.memory import (
    MemoryContactStore,
    MemoryJoinStore,
    MemoryMedia,
    MemoryOutput,
    MemoryUserDirectory,
)
from processor.app.joiner import Joiner, Outcome
from processor.core.ctr import ctr_from_object
from processor.core.join import JoinState, Tolerance
from processor.core.recording_location import RecordingLocations
from processor.core.s3_events import ObjectCreated
from processor.core.user_directory import QmUser
from processor.devtools.simulated_centre import wav_bytes

BUCKET = "recordings"


@dataclass
class Clock:
    now: datetime = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def test_a_ctr_waits_for_its_recording_then_is_emitted_once_on_memory_ports() -> None:
    clock = Clock()
    joins = MemoryJoinStore()
    contacts = MemoryContactStore(joins)
    media = MemoryMedia()
    output = MemoryOutput(clock)
    users = MemoryUserDirectory()
    users.put(QmUser("agent.one", "Ann", "Lee"))
    joiner = Joiner(
        contacts=contacts,
        joins=joins,
        media=media,
        output=output,
        users=users,
        window=lambda: timedelta(minutes=5),
        tolerance=Tolerance(),
        clock=clock,
        locations=RecordingLocations.of([BUCKET]),
        owner="w1",
        sleep=lambda _s: None,
    )
    key = "connect/x/CallRecordings/2026/06/01/c-1_20260601T10:58_UTC.wav"
    obj = {
        "ContactId": "c-1",
        "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
        "InitiationMethod": "INBOUND",
        "LastUpdateTimestamp": "2026-06-01T11:59:00Z",
        "Agent": {
            "Username": "agent.one",
            "ConnectedToAgentTimestamp": "2026-06-01T10:58:00Z",
            "AgentInteractionDuration": 60,
            "CustomerHoldDuration": 0,
        },
        "Recordings": [{"Location": f"{BUCKET}/{key}", "StorageType": "S3", "ParticipantType": "AGENT"}],
    }
    record, raw = ctr_from_object(obj), orjson.dumps(obj)
    assert joiner.on_ctr(record, raw) is Outcome.CREATED
    stored = contacts.load("c-1")
    assert stored is not None and stored.view.state is JoinState.WAITING
    assert joins.count_pending() == (1, 0)  # its sweeper marker, written with it
    assert list(output.records()) == []
    body = wav_bytes(60.0)
    etag = media.put(f"{BUCKET}/{key}", body)
    event = ObjectCreated(BUCKET, key, len(body), etag, "ObjectCreated:Put", None, None)
    assert joiner.on_object(event) is Outcome.UPDATED
    assert joiner.on_object(event) is Outcome.UNCHANGED  # a redelivered notification
    assert joiner.on_ctr(record, raw) is Outcome.UNCHANGED  # a replayed CTR
    done = contacts.load("c-1")
    assert done is not None and done.view.state.final and not done.emission_pending
    emitted = list(output.records())
    assert [(r["contact_id"], r["version"]) for r in emitted] == [("c-1", done.version)]
    assert joins.count_pending() == (0, 0)  # the marker went with the mark that it was emitted
    clock.now += timedelta(minutes=10)
    assert joiner.sweep().orphans == 0
