"""A simulated contact centre: agents, and the CTRs Amazon Connect would send for them.

Pure and deterministic for a given seed. Produces every shape the importer must handle:
all directions, agent and no-agent contacts, IVR-only and KVS-only contacts, dirty
phone numbers (a ``+`` lost to URL decoding), duplicate deliveries, and updated contacts
re-delivered with a newer ``LastUpdateTimestamp`` (sometimes before the original).
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from processor.core.ctr import format_instant
from processor.core.scenario_verdict import Expectation, ExpectedContact
from processor.core.user_directory import QmUser

DEFAULT_INSTANCE_ARN = "arn:aws:connect:us-east-1:123456789012:instance/8f3c1d2e-5b6a-4c7d-9e8f-0a1b2c3d4e5f"

_FIRST = ["Ana", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Iker", "Jon", "Kemi", "Liam"]
_LAST = ["Silva", "O'Neil", "Nguyen", "Müller", "Okafor", "Rossi", "Kowalski", "Haddad", "Park", "Larsen"]

# (InitiationMethod, has agent, recording kind) and their weights in the mix.
_KINDS: list[tuple[str, bool, str, int]] = [
    ("INBOUND", True, "s3", 40),
    ("OUTBOUND", True, "s3", 14),
    ("CALLBACK", True, "s3", 5),
    ("TRANSFER", True, "s3", 8),
    ("QUEUE_TRANSFER", True, "s3", 4),
    ("API", True, "s3", 4),
    ("INBOUND", True, "none", 5),  # recording behaviour off
    ("INBOUND", False, "none", 10),  # IVR only, abandoned in queue
    ("INBOUND", False, "kvs", 5),  # IVR with a Kinesis Video Streams recording
    ("EXTERNAL_OUTBOUND", True, "s3", 3),
    ("MONITOR", True, "none", 2),
]


@dataclass(frozen=True)
class SimulatedAgent:
    username: str
    first_name: str
    last_name: str
    agent_id: str
    screen_recording: bool

    def user(self, instance_arn: str) -> QmUser:
        return QmUser(
            username=self.username,
            first_name=self.first_name,
            last_name=self.last_name,
            screen_recording=self.screen_recording,
            agent_arn=f"{instance_arn}/agent/{self.agent_id}",
        )


@dataclass(frozen=True)
class RecordingUpload:
    """A call recording Amazon Connect writes to S3 (generated when published)."""

    location: str  # bucket/key
    seconds: float  # length of the audio written
    corrupt_header: bool = False  # a header no parser can read: duration from the size
    seed: int = 0

    def wav(self) -> bytes:
        return wav_bytes(self.seconds, seed=self.seed, corrupt_header=self.corrupt_header)


@dataclass
class Scenario:
    instance_arn: str
    agents: list[SimulatedAgent]
    #: CTR payloads in delivery order (duplicates and updates included).
    deliveries: list[bytes] = field(default_factory=list)
    #: CTR deliveries and recording uploads, interleaved in the order they happen.
    events: list[bytes | RecordingUpload] = field(default_factory=list)
    #: contact id -> newest version (last_update, as QM stores it).
    expected: dict[str, str] = field(default_factory=dict)
    #: contact id -> the join state QM must end in.
    expected_state: dict[str, str] = field(default_factory=dict)
    #: contact id -> the call duration QM must show (None: no recording to read).
    expected_duration: dict[str, float | None] = field(default_factory=dict)
    #: contact id -> the newest CTR object.
    newest: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Agent events (LOGIN, STATE_CHANGE, LOGOUT) of the simulated agents, in order.
    agent_events: list[bytes] = field(default_factory=list)

    def users(self) -> list[QmUser]:
        return [a.user(self.instance_arn) for a in self.agents]

    def expectation(self) -> Expectation:
        """What QM must end with once every delivery and recording is in (``qm-ingest audit``)."""
        return Expectation(
            contacts={
                cid: ExpectedContact(cid, version, self.expected_state.get(cid))
                for cid, version in self.expected.items()
            }
        )


def _ts(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _phone(rng: random.Random, dirty: bool) -> str:
    # 555-01xx numbers are reserved for fiction in North America.
    number = f"1{rng.choice(['202', '312', '415', '646', '917'])}55501{rng.randrange(100):02d}"
    return (" " if dirty else "+") + number


def build_scenario(  # noqa: PLR0915 - one contact, field by field
    *,
    seed: int,
    contacts: int,
    start: datetime,
    agents: int = 6,
    instance_arn: str = DEFAULT_INSTANCE_ARN,
    bucket: str = "qm-recordings",
    alias: str = "qm-demo",
    duplicate_rate: float = 0.1,
    update_rate: float = 0.15,
    missing_rate: float = 0.05,
    truncated_rate: float = 0.04,
    corrupt_rate: float = 0.03,
    max_talk_seconds: int = 240,
) -> Scenario:
    rng = random.Random(seed)
    roster = []
    for i in range(agents):
        first, last = _FIRST[i % len(_FIRST)], _LAST[(i * 7) % len(_LAST)]
        username = f"{first}.{last}".lower().replace("'", "").replace("é", "e").replace("ü", "u")
        roster.append(
            SimulatedAgent(
                username=f"{username}{i}" if i >= len(_FIRST) else username,
                first_name=first,
                last_name=last,
                agent_id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                screen_recording=i % 2 == 0,
            )
        )
    scenario = Scenario(instance_arn=instance_arn, agents=roster)
    system_numbers = ["+18005550100", "+18005550101", "+442075550102"]
    weights = [k[3] for k in _KINDS]
    when = start
    for _ in range(contacts):
        method, with_agent, recording, _w = rng.choices(_KINDS, weights=weights)[0]
        contact_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        agent = rng.choice(roster) if with_agent else None
        when += timedelta(seconds=rng.randint(5, 90))
        initiated = when
        connected_system = initiated + timedelta(seconds=rng.randint(0, 2))
        queue_s = rng.randint(3, 60)
        talk_s = rng.randint(10, max(10, max_talk_seconds))
        hold_s = rng.choice([0, 0, 0, rng.randint(5, 30)])
        acw_s = rng.randint(5, 90)
        connected_agent = connected_system + timedelta(seconds=queue_s)
        disconnect = (
            connected_agent + timedelta(seconds=talk_s + hold_s)
            if agent
            else connected_system + timedelta(seconds=rng.randint(10, 120))
        )
        acw_end = disconnect + timedelta(seconds=acw_s)
        last_update = (acw_end if agent else disconnect) + timedelta(seconds=rng.randint(30, 120))
        location = (
            f"{bucket}/connect/{alias}/CallRecordings/{connected_agent:%Y/%m/%d}/"
            f"{contact_id}_{connected_agent:%Y%m%dT%H:%M}_UTC.wav"
        )
        recordings: list[dict[str, Any]] | None = None
        legacy: dict[str, Any] | None = None
        if recording == "s3":
            legacy = {"DeletionReason": None, "Location": location, "Status": "AVAILABLE", "Type": "AUDIO"}
            recordings = [
                {
                    "DeletionReason": None,
                    "FragmentStartNumber": None,
                    "FragmentStopNumber": None,
                    "Location": location,
                    "MediaStreamType": "AUDIO",
                    "ParticipantType": None,
                    "StartTimestamp": None,
                    "Status": "AVAILABLE",
                    "StopTimestamp": None,
                    "StorageType": "S3",
                }
            ]
        elif recording == "kvs":
            recordings = [
                {
                    "DeletionReason": None,
                    "FragmentStartNumber": str(rng.getrandbits(120)),
                    "FragmentStopNumber": str(rng.getrandbits(120)),
                    "Location": (
                        f"arn:aws:kinesisvideo:us-east-1:123456789012:stream/{alias}-contact-{contact_id}/1"
                    ),
                    "MediaStreamType": "VIDEO",
                    "ParticipantType": "CUSTOMER",
                    "StartTimestamp": _ts(connected_system),
                    "Status": None,
                    "StopTimestamp": _ts(disconnect),
                    "StorageType": "KINESIS_VIDEO_STREAM",
                }
            ]
        customer = _phone(rng, dirty=rng.random() < 0.15)
        ctr: dict[str, Any] = {
            "AWSAccountId": "123456789012",
            "AWSContactTraceRecordFormatVersion": "2017-03-10",
            "Agent": (
                {
                    "ARN": f"{instance_arn}/agent/{agent.agent_id}",
                    "AfterContactWorkDuration": acw_s,
                    "AfterContactWorkEndTimestamp": _ts(acw_end),
                    "AfterContactWorkStartTimestamp": _ts(disconnect),
                    "AgentInteractionDuration": talk_s,
                    "ConnectedToAgentTimestamp": _ts(connected_agent),
                    "CustomerHoldDuration": hold_s,
                    "LongestHoldDuration": hold_s,
                    "NumberOfHolds": 1 if hold_s else 0,
                    "Username": agent.username,
                }
                if agent
                else None
            ),
            "AgentConnectionAttempts": 1 if agent else 0,
            "Attributes": {"simulated": "true"},
            "Channel": "VOICE",
            "ConnectedToSystemTimestamp": _ts(connected_system),
            "ContactId": contact_id,
            "CustomerEndpoint": {"Address": customer, "Type": "TELEPHONE_NUMBER"},
            "DisconnectReason": "CUSTOMER_DISCONNECT",
            "DisconnectTimestamp": _ts(disconnect),
            "InitialContactId": None,
            "InitiationMethod": method,
            "InitiationTimestamp": _ts(initiated),
            "InstanceARN": instance_arn,
            "LastUpdateTimestamp": _ts(last_update),
            "MediaStreams": [{"Type": "AUDIO"}],
            "NextContactId": None,
            "PreviousContactId": None,
            "Queue": (
                {
                    "ARN": f"{instance_arn}/queue/0b8e8d4c-1111-4a9b-9c3e-5f2b7a1c0d9e",
                    "DequeueTimestamp": _ts(connected_agent),
                    "Duration": queue_s,
                    "EnqueueTimestamp": _ts(connected_system),
                    "Name": "BasicQueue",
                }
                if agent
                else None
            ),
            "Recording": legacy,
            "Recordings": recordings,
            "SystemEndpoint": {"Address": rng.choice(system_numbers), "Type": "TELEPHONE_NUMBER"},
            "TransferCompletedTimestamp": None,
            "TransferredToEndpoint": None,
        }
        versions = [ctr]
        if rng.random() < update_rate:
            updated = orjson.loads(orjson.dumps(ctr))
            updated["Attributes"]["disposition"] = rng.choice(["resolved", "escalated", "callback"])
            updated["LastUpdateTimestamp"] = _ts(last_update + timedelta(minutes=rng.randint(1, 30)))
            versions.append(updated)
        batch = [orjson.dumps(v) for v in versions]
        if len(batch) > 1 and rng.random() < 0.3:
            batch.reverse()  # the update overtakes the original
        if rng.random() < duplicate_rate:
            batch.append(rng.choice(batch))
        scenario.deliveries.extend(batch)
        events: list[bytes | RecordingUpload] = list(batch)
        state, duration = "no_recording_expected", None
        if recording == "s3":
            roll = rng.random()
            if roll < missing_rate:
                state = "recording_missing"  # Connect never writes it
            else:
                seconds = float(talk_s + hold_s)
                corrupt = roll < missing_rate + corrupt_rate
                if not corrupt and roll < missing_rate + corrupt_rate + truncated_rate:
                    seconds = round(seconds * 0.5, 3)  # an upload cut short: QM flags it
                upload = RecordingUpload(
                    location, seconds, corrupt_header=corrupt, seed=rng.randrange(1 << 30)
                )
                # S3 may deliver the recording before, between or after the CTR deliveries.
                events.insert(rng.randint(0, len(events)), upload)
                state, duration = "joined", seconds
        scenario.events.extend(events)
        scenario.expected_state[contact_id] = state
        scenario.expected_duration[contact_id] = duration
        newest = versions[-1]
        scenario.newest[contact_id] = newest
        parsed = datetime.strptime(newest["LastUpdateTimestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        scenario.expected[contact_id] = format_instant(parsed)
    scenario.agent_events = _agent_session(roster, instance_arn, start, when + timedelta(minutes=15))
    return scenario


def wav_bytes(seconds: float, *, seed: int = 0, corrupt_header: bool = False) -> bytes:
    """A Connect-shaped call recording: stereo 16-bit PCM at 8 kHz, customer left, agent right.

    The audio is a repeated second of quiet tones (cheap to build at any length); the
    header is the real thing, or garbage when ``corrupt_header`` (QM must then fall back to
    the object size and say so).
    """
    import math
    import struct

    from processor.core.wav import wav_header

    rate = 8000
    frames = round(seconds * rate)
    second = bytearray()
    f_left, f_right = 300 + seed % 200, 500 + seed % 300
    for n in range(rate):
        left = int(2000 * math.sin(2 * math.pi * f_left * n / rate))
        right = int(2000 * math.sin(2 * math.pi * f_right * n / rate))
        second += struct.pack("<hh", left, right)
    data = bytes(second) * (frames // rate) + bytes(second[: (frames % rate) * 4])
    header = wav_header(channels=2, sample_rate=rate, bits=16, data_bytes=len(data))
    if corrupt_header:
        header = b"\0" * len(header)
    return header + data


def _agent_session(
    roster: list[SimulatedAgent], instance_arn: str, start: datetime, end: datetime
) -> list[bytes]:
    """Every agent logs on before the first contact (LOGIN has no snapshot, as in Connect)
    and becomes Available; after the last contact the first agent goes Offline and logs out
    (its desktop is told to stop)."""
    events: list[bytes] = []

    def event(agent: SimulatedAgent, kind: str, at: datetime, status: str | None) -> bytes:
        snapshot = None
        if status is not None:
            snapshot = {
                "AgentStatus": {"Name": status, "StartTimestamp": _ts(at)},
                "Configuration": {
                    "Username": agent.username,
                    "FirstName": agent.first_name,
                    "LastName": agent.last_name,
                },
                "Contacts": [],
            }
        return orjson.dumps(
            {
                "AWSAccountId": "123456789012",
                "AgentARN": f"{instance_arn}/agent/{agent.agent_id}",
                "CurrentAgentSnapshot": snapshot,
                "EventId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{agent.agent_id}/{kind}/{at.isoformat()}")),
                "EventTimestamp": at.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                "EventType": kind,
                "InstanceARN": instance_arn,
                "PreviousAgentSnapshot": None,
                "Version": "2017-10-01",
            }
        )

    for i, agent in enumerate(roster):
        login = start - timedelta(minutes=10, seconds=i)
        events.append(event(agent, "LOGIN", login, None))
        events.append(event(agent, "STATE_CHANGE", login + timedelta(seconds=20), "Available"))
    first = roster[0]
    events.append(event(first, "STATE_CHANGE", end, "Offline"))
    events.append(event(first, "LOGOUT", end + timedelta(seconds=30), None))
    return events
