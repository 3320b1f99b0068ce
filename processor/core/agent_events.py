"""Amazon Connect agent events -> screen-recording intent. Pure.

The seed: Smart Desktop records while a correctly configured user is logged on, and stops
when the agent logs out. The agent event stream says so with ``LOGIN`` / ``LOGOUT``, and
with what means the same:

* a ``STATE_CHANGE`` or ``HEART_BEAT`` carrying a status other than ``Offline`` shows a
  logged-on agent: recording should run (this also recovers a ``LOGIN`` that was missed,
  e.g. the service started after the agent logged on);
* a status of ``Offline`` with no contact in hand means the agent cannot take or work on
  contacts: recording stops (it starts again when the agent comes back).

Per agent, the last applied event wins; an event older than it (Kinesis re-delivery, a
replay) changes nothing, and a start while recording (or a stop while stopped) produces no
command. The contacts the agent has in hand are remembered for a while: they hold back
segment release (see :func:`release_before`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from processor.core.ctr import normalise_instance_arn, parse_instant
from processor.core.schemas import SchemaViolation, validate
from processor.platform.exceptions import InvalidInput

OFFLINE = "offline"
#: Contact states of an agent snapshot during which the agent works on a contact (ACW
#: included: Connect keeps a contact ENDED until after-contact work is done).
ACTIVE_CONTACT_STATES = frozenset(
    {"INCOMING", "PENDING", "CONNECTING", "CONNECTED", "CONNECTED_ONHOLD", "ENDED"}
)


class Intent(StrEnum):
    START = "start_recording"
    STOP = "stop_recording"
    NONE = "none"


@dataclass(frozen=True)
class AgentEvent:
    event_id: str | None
    event_type: str
    at: datetime
    agent_arn: str
    instance_arn: str
    username: str | None  # from the snapshot; LOGIN/LOGOUT carry none
    status: str | None  # CurrentAgentSnapshot.AgentStatus.Name
    contacts: tuple[tuple[str, datetime | None], ...]  # (state, connected/started at)

    @property
    def dedup_key(self) -> str:
        return self.event_id or f"{self.agent_arn}@{self.at.isoformat()}:{self.event_type}"


#: How many recent contacts an agent's state remembers for the release watermark.
MAX_RECENT_CONTACTS = 32


@dataclass(frozen=True)
class AgentRecording:
    """What the server last told an agent's desktop, and what it knows of the agent."""

    recording: bool = False
    last_event_at: datetime | None = None
    #: Contacts seen in the agent's hands: (start, last time seen in hand). They hold back
    #: segment release until their CTRs can have been imported (see ``release_before``).
    recent_contacts: tuple[tuple[datetime, datetime], ...] = ()

    def forget_contacts_before(self, cutoff: datetime) -> AgentRecording:
        return replace(self, recent_contacts=tuple(c for c in self.recent_contacts if c[1] >= cutoff))


def _contacts(snapshot: dict[str, Any] | None) -> tuple[tuple[str, datetime | None], ...]:
    if not snapshot:
        return ()
    out = []
    for contact in snapshot.get("Contacts") or ():
        if not isinstance(contact, dict):
            continue
        state = str(contact.get("State") or "").upper()
        when = None
        for key in ("ConnectedToAgentTimestamp", "StateStartTimestamp", "QueueTimestamp"):
            value = contact.get(key)
            if isinstance(value, str):
                try:
                    when = parse_instant(value, key)
                except InvalidInput:
                    when = None
                if when is not None:
                    break
        out.append((state, when))
    return tuple(out)


def parse_agent_event(payload: bytes) -> AgentEvent:
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise InvalidInput("bad_json", "agent event is not JSON", payload=payload) from None
    if not isinstance(obj, dict):
        raise InvalidInput("not_an_object", "an agent event must be a JSON object", payload=payload)
    try:
        validate("agent-event", obj)
    except SchemaViolation as exc:
        raise InvalidInput("schema", str(exc), payload=payload) from None
    try:
        at = parse_instant(obj["EventTimestamp"], "EventTimestamp")
    except InvalidInput as exc:
        raise InvalidInput(exc.reason, exc.detail, payload=payload) from None
    assert at is not None
    snapshot = obj.get("CurrentAgentSnapshot") or None
    configuration = (snapshot or {}).get("Configuration") or {}
    status = ((snapshot or {}).get("AgentStatus") or {}).get("Name")
    username = configuration.get("Username")
    return AgentEvent(
        event_id=obj.get("EventId"),
        event_type=str(obj["EventType"]).upper(),
        at=at,
        agent_arn=obj["AgentARN"],
        instance_arn=normalise_instance_arn(obj["InstanceARN"]),
        username=username.strip() if isinstance(username, str) and username.strip() else None,
        status=status if isinstance(status, str) else None,
        contacts=_contacts(snapshot),
    )


def intent_of(event: AgentEvent) -> Intent:
    if event.event_type == "LOGIN":
        return Intent.START
    if event.event_type == "LOGOUT":
        return Intent.STOP
    if event.event_type in ("STATE_CHANGE", "HEART_BEAT") and event.status is not None:
        in_hand = any(state in ACTIVE_CONTACT_STATES for state, _ in event.contacts)
        if event.status.strip().lower() == OFFLINE and not in_hand:
            return Intent.STOP
        return Intent.START
    return Intent.NONE  # unknown event types and snapshots without a status: no opinion


def in_hand(event: AgentEvent) -> list[datetime]:
    """Start times of the contacts the agent works on in this event's snapshot."""
    return [when for state, when in event.contacts if state in ACTIVE_CONTACT_STATES and when is not None]


def _remember(
    contacts: tuple[tuple[datetime, datetime], ...], starts: list[datetime], seen: datetime
) -> tuple[tuple[datetime, datetime], ...]:
    known = {start: last for start, last in contacts}
    for start in starts:
        known[start] = max(known.get(start, seen), seen)
    ordered = sorted(known.items(), key=lambda c: c[1])
    return tuple(ordered[-MAX_RECENT_CONTACTS:])


def apply(
    state: AgentRecording, event: AgentEvent, *, may_start: bool = True
) -> tuple[AgentRecording, Intent]:
    """The agent's next state and the command to send (``Intent.NONE``: nothing).

    ``may_start`` is False while the settings do not let this agent record (RTE messaging off,
    the user not configured for screen recording, or not a QM user): nothing starts, but a
    recording that runs is stopped by the agent's logout or ``Offline`` as always.
    """
    if state.last_event_at is not None and event.at <= state.last_event_at:
        return state, Intent.NONE  # older or re-delivered: already applied
    intent = intent_of(event)
    new = replace(
        state,
        last_event_at=event.at,
        recent_contacts=_remember(state.recent_contacts, in_hand(event), event.at),
    )
    if intent is Intent.START and not state.recording and may_start:
        return replace(new, recording=True), Intent.START
    if intent is Intent.STOP and state.recording:
        return replace(new, recording=False), Intent.STOP
    return new, Intent.NONE


def release_before(
    *,
    consumed_until: datetime | None,
    window: timedelta,
    slack: timedelta,
    contacts: Sequence[tuple[datetime, datetime]] = (),
) -> datetime | None:
    """Up to when an agent's segments can no longer be needed by any contact.

    A segment ending at ``e`` is needed by every contact of the agent that starts before
    ``e``. A contact reaches the CTR stream at most ``window`` after it ends (the join
    window is that bound) and its extraction is published before the stream is
    checkpointed past it. So once every shard is consumed up to ``consumed_until``, every
    contact that ended before ``cutoff = consumed_until - window - slack`` has been
    imported and its extraction published. A contact the agent event stream showed in hand
    at or after ``cutoff`` (``contacts``: its start and the last time it was seen in hand)
    may still be on its way: it holds the watermark at its start. ``slack`` absorbs clock
    skew between Connect and us.
    """
    if consumed_until is None:
        return None
    cutoff = consumed_until - window - slack
    before = cutoff
    for start, last_seen in contacts:
        if last_seen >= cutoff:
            before = min(before, start)
    return before
