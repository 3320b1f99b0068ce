"""The seed's table: a CTR becomes a QM contact. Pure, total, deterministic.

| CTR                               | QM                      |
|-----------------------------------|-------------------------|
| Agent.Username                    | ACD ID                  |
| SystemEndpoint.Address            | Called Number (E.164)   |
| CustomerEndpoint.Address          | Calling Number (E.164)  |
| ContactId                         | Associated Contact ID   |
| InitiationMethod                  | Contact Direction       |
| (QM user of the ACD ID)           | First Name, Last Name   |
| (media file length)               | Call Duration           |
| Agent.ConnectedToAgentTimestamp   | Date, Time (UTC)        |
| —                                 | Recording Type: "Amazon Connect" |

The function never fails on a value it has not seen: an unknown InitiationMethod maps
to ``inbound`` and the contact is flagged ``initiation_method_unknown``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from processor.core.ctr import ContactRecord, Endpoint, RecordingRef, format_instant
from processor.core.frozen import builder
from processor.core.phone import to_e164
from processor.core.user_directory import QmUser

RECORDING_TYPE = "Amazon Connect"

INBOUND = "inbound"
OUTBOUND = "outbound"

#: Every InitiationMethod Amazon Connect documents, and the direction QM shows for it.
DIRECTIONS = MappingProxyType(
    {
        # The customer called in, or was moved to this contact from an inbound one.
        "INBOUND": INBOUND,
        "TRANSFER": INBOUND,  # agent-to-agent / quick-connect transfer: a new inbound leg
        "QUEUE_TRANSFER": INBOUND,  # moved to another queue inside a flow
        # The contact centre reached out.
        "OUTBOUND": OUTBOUND,  # agent dialled from the CCP
        "CALLBACK": OUTBOUND,  # queued callback: the agent calls the customer back
        "API": OUTBOUND,  # StartOutboundVoiceContact and similar
        "EXTERNAL_OUTBOUND": OUTBOUND,  # agent added an external party to the call
        # Values the design left to us, decided here:
        "MONITOR": INBOUND,  # a supervisor's silent-monitor / barge leg, delivered to them
        "DISCONNECT": INBOUND,  # the disconnect flow's continuation of the customer's contact
        "WEBRTC_API": INBOUND,  # in-app / web calling started by the customer
        "AGENT_REPLY": OUTBOUND,  # an agent's reply to an e-mail contact
        "FLOW": OUTBOUND,  # a contact created by a flow block (e.g. outbound e-mail/SMS)
        "CAMPAIGN": OUTBOUND,  # outbound campaign dialling
    }
)

# Flags (stable strings; listed in schemas/qm-contact.schema.json).
FLAG_NO_AGENT = "no_agent"
FLAG_NO_RECORDING = "no_recording"
FLAG_KVS_ONLY = "recording_kvs_only"
FLAG_UNKNOWN_DIRECTION = "initiation_method_unknown"
FLAG_USER_UNKNOWN = "user_unknown"
FLAG_CALLED_NOT_E164 = "called_number_not_e164"
FLAG_CALLING_NOT_E164 = "calling_number_not_e164"
FLAG_UNSUPPORTED_MEDIA = "recording_media_unsupported"
FLAG_RECORDING_DELETED = "recording_deleted"
FLAG_LOCATION_INVALID = "recording_location_invalid"
#: An S3 location outside the recordings buckets or Connect's key layout
#: (:mod:`processor.core.recording_location`): never read, never played.
FLAG_LOCATION_REJECTED = "recording_location_rejected"


@dataclass(frozen=True, slots=True)
class QmContact:
    """A QM contact, as stored in the contacts table and published downstream."""

    contact_id: str
    acd_id: str | None
    called_number: str | None
    calling_number: str | None
    direction: str
    first_name: str | None
    last_name: str | None
    call_duration_seconds: float | None
    date: str | None
    time: str | None
    connected_at: str | None
    recording_type: str
    instance_arn: str
    last_update: str
    initiation_method: str
    channel: str | None
    queue: str | None
    agent_arn: str | None
    initiation_at: str | None
    disconnect_at: str | None
    acw_end_at: str | None
    recording_location: str | None
    recordings: tuple[str, ...]
    system_endpoint_raw: dict[str, str | None] | None
    customer_endpoint_raw: dict[str, str | None] | None
    flags: tuple[str, ...] = field(default=())
    join_state: str | None = None
    #: Screen recording (qm-desktop): pending once its extraction is published, then
    #: uploaded / unavailable / failed with the desktop's result.
    screen_recording_status: str | None = None
    screen_recording_location: str | None = None
    screen_coverage: float | None = None
    #: Which parties the call recording carries (agent / customer / both / none / unknown:
    #: the seed's Recording Behavior), read from the recording at import; None until read.
    recorded_parties: str | None = None
    #: QM's own copy of the call recording (``bucket/key``), played instead of Connect's.
    qm_recording_location: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "contact_id": self.contact_id,
            "acd_id": self.acd_id,
            "called_number": self.called_number,
            "calling_number": self.calling_number,
            "direction": self.direction,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "call_duration_seconds": self.call_duration_seconds,
            "date": self.date,
            "time": self.time,
            "connected_at": self.connected_at,
            "recording_type": self.recording_type,
            "instance_arn": self.instance_arn,
            "last_update": self.last_update,
            "initiation_method": self.initiation_method,
            "channel": self.channel,
            "queue": self.queue,
            "agent_arn": self.agent_arn,
            "initiation_at": self.initiation_at,
            "disconnect_at": self.disconnect_at,
            "acw_end_at": self.acw_end_at,
            "recording_location": self.recording_location,
            "recordings": list(self.recordings),
            "system_endpoint_raw": self.system_endpoint_raw,
            "customer_endpoint_raw": self.customer_endpoint_raw,
            "flags": list(self.flags),
            "join_state": self.join_state,
            "screen_recording_status": self.screen_recording_status,
            "screen_recording_location": self.screen_recording_location,
            "screen_coverage": self.screen_coverage,
            "recorded_parties": self.recorded_parties,
            "qm_recording_location": self.qm_recording_location,
        }

    def with_screen_of(self, other: QmContact) -> QmContact:
        """This contact with ``other``'s screen-recording fields (a newer CTR version keeps
        the screen recording the desktop already delivered)."""
        return replace(
            self,
            screen_recording_status=other.screen_recording_status,
            screen_recording_location=other.screen_recording_location,
            screen_coverage=other.screen_coverage,
        )

    def with_user(self, user: QmUser | None) -> QmContact:
        flags = tuple(f for f in self.flags if f != FLAG_USER_UNKNOWN)
        if user is None:
            if self.acd_id is not None:
                flags = (*flags, FLAG_USER_UNKNOWN)
            return replace(self, first_name=None, last_name=None, flags=flags)
        return replace(self, first_name=user.first_name, last_name=user.last_name, flags=flags)


_build_contact = builder(QmContact)


_DIRECTIONS = dict(DIRECTIONS)


def direction_of(initiation_method: str) -> tuple[str, bool]:
    """(direction, known) for an InitiationMethod value; unknown values are inbound."""
    direction = _DIRECTIONS.get(initiation_method)  # as Connect spells them: nothing to strip
    if direction is not None:
        return direction, True
    direction = DIRECTIONS.get(initiation_method.strip().upper())
    if direction is None:
        return INBOUND, False
    return direction, True


#: ``bucket/key``: an S3 bucket name (3-63 of [a-z0-9.-]) and a key of at most 1,024 bytes.
_LOCATION = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$", re.DOTALL)


def valid_location(location: str | None) -> bool:
    return bool(location and _LOCATION.match(location) and len(location.encode()) <= 64 + 1024)


def _s3(ref: RecordingRef) -> bool:
    return (ref.storage_type or "S3").upper() == "S3" and bool(ref.location)


def s3_recordings(record: ContactRecord) -> tuple[RecordingRef, ...]:
    """Recordings stored in S3 at a usable location (the ones QM imports), in CTR order."""
    return tuple(r for r in record.recordings if _s3(r) and valid_location(r.location))


def _raw_endpoint(endpoint: Endpoint | None) -> dict[str, str | None] | None:
    if endpoint is None:
        return None
    return {"address": endpoint.address, "type": endpoint.type}


def _number(endpoint: Endpoint | None) -> str | None:
    if endpoint is None or endpoint.address is None:
        return None
    if endpoint.type not in (None, "TELEPHONE_NUMBER", "CONNECT_PHONENUMBER_ARN", "VOIP"):
        return None
    return to_e164(endpoint.address)


def map_contact(record: ContactRecord, user: QmUser | None = None) -> QmContact:
    """Map one CTR (and the QM user of its agent, if known) to a QM contact."""
    flags: list[str] = []
    direction, known = direction_of(record.initiation_method)
    if not known:
        flags.append(FLAG_UNKNOWN_DIRECTION)

    agent = record.agent
    connected = agent.connected_at if agent else None
    if connected is None:
        flags.append(FLAG_NO_AGENT)

    system, customer = record.system_endpoint, record.customer_endpoint
    called = _number(system)
    calling = _number(customer)
    if system and system.address and called is None:
        flags.append(FLAG_CALLED_NOT_E164)
    if customer and customer.address and calling is None:
        flags.append(FLAG_CALLING_NOT_E164)

    s3 = _recording_flags(record.recordings, flags)

    acd_id = agent.username if agent else None
    # with_user(), without building the contact twice.
    if user is None:
        first_name = last_name = None
        if acd_id is not None:
            flags.append(FLAG_USER_UNKNOWN)
    else:
        first_name, last_name = user.first_name, user.last_name

    date = time = connected_at = None
    if connected is not None:
        connected_at, date, time = _connected(connected)
    initiation_at, disconnect_at = record.initiation_at, record.disconnect_at
    acw_end_at = agent.acw_end_at if agent else None
    return _build_contact(
        record.contact_id,
        acd_id,
        called,
        calling,
        direction,
        first_name,
        last_name,
        None,
        date,
        time,
        connected_at,
        RECORDING_TYPE,
        record.instance_arn,
        format_instant(record.last_update),
        record.initiation_method,
        record.channel,
        record.queue_name,
        agent.arn if agent else None,
        format_instant(initiation_at) if initiation_at else None,
        format_instant(disconnect_at) if disconnect_at else None,
        format_instant(acw_end_at) if acw_end_at else None,
        _primary_location(s3),
        tuple([r.location for r in s3 if r.location]),
        _raw_endpoint(system),
        _raw_endpoint(customer),
        tuple(flags),
        None,
        None,
        None,
        None,
        None,
        None,
    )


def _recording_flags(recordings: tuple[RecordingRef, ...], flags: list[str]) -> list[RecordingRef]:
    """s3_recordings(), with the recording flags added to ``flags`` (a recording not in S3 is
    never one of the S3 ones)."""
    s3: list[RecordingRef] = []
    others = location_invalid = kvs = deleted = False
    for ref in recordings:
        if _s3(ref):
            if valid_location(ref.location):
                s3.append(ref)
                deleted = deleted or bool(ref.deletion_reason)
            else:
                location_invalid = True
        else:
            others = True
            kvs = kvs or _is_kvs(ref)
    if location_invalid:
        flags.append(FLAG_LOCATION_INVALID)
    if not s3:
        flags.append(FLAG_KVS_ONLY if kvs else FLAG_NO_RECORDING)
    elif others:
        flags.append(FLAG_UNSUPPORTED_MEDIA)
    if deleted:
        flags.append(FLAG_RECORDING_DELETED)
    return s3


def _connected(connected: datetime) -> tuple[str, str, str]:
    """(connected_at, date, time): the UTC instant, and the date and time of ``connected``."""
    connected_at = format_instant(connected)
    if connected.tzinfo is UTC and connected.year >= 1000:
        # The UTC instant's own fields: the text strftime writes.
        return connected_at, connected_at[:10], connected_at[11:19]
    return connected_at, connected.strftime("%Y-%m-%d"), connected.strftime("%H:%M:%S")


def _is_kvs(ref: RecordingRef) -> bool:
    return (ref.storage_type or "").upper() == "KINESIS_VIDEO_STREAM"


def _primary_location(s3: Sequence[RecordingRef]) -> str | None:
    """The agent's recording when Connect says which one it is, else the first."""
    for ref in s3:
        if (ref.participant_type or "").upper() == "AGENT" and not ref.deletion_reason:
            return ref.location
    for ref in s3:
        if not ref.deletion_reason:
            return ref.location
    return s3[0].location if s3 else None
