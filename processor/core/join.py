"""The windowed join of a CTR with its call recordings: a pure state machine.

A contact's view moves through explicit states, decided from what has been seen and the
time (always passed in, never read from a clock here):

``waiting_for_recording``  an S3 recording is expected and not there yet, window open
``joined``                 every expected (not deleted) S3 recording is there
``recording_deleted``      every S3 recording the CTR lists carries a DeletionReason
``no_recording_expected``  no S3 recording at all (no agent, IVR only, recording off, KVS only)
``recording_missing``      the window closed before every recording arrived

Versions: a view is identified by ``(last_update, revision)``. A newer CTR
(``LastUpdateTimestamp``) starts at revision 0; any later change of the same CTR version's
QM contact (its recording arrives, arrives late after ``recording_missing``, its agent's
name becomes known) is the next revision. Every *final* view (not waiting) is emitted
exactly once, keyed by its version; waiting views are stored, not emitted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from processor.core.ctr import ContactRecord
from processor.core.mapping import FLAG_RECORDING_DELETED, QmContact, s3_recordings

FLAG_RECORDING_MISSING = "recording_missing"
FLAG_DURATION_FROM_SIZE = "duration_from_size"
FLAG_DURATION_SHORT = "duration_mismatch_short"
FLAG_DURATION_LONG = "duration_mismatch_long"
FLAG_RECORDING_UNREADABLE = "recording_unreadable"
#: QM could not keep its own copy of a recording (the contact is imported all the same).
FLAG_RECORDING_COPY_FAILED = "recording_copy_failed"

#: Amazon Connect call recordings: stereo 16-bit PCM at 8 kHz.
CONNECT_BYTE_RATE = 8000 * 2 * 2
WAV_MIN_HEADER = 44


class JoinState(StrEnum):
    WAITING = "waiting_for_recording"
    JOINED = "joined"
    RECORDING_DELETED = "recording_deleted"
    NO_RECORDING_EXPECTED = "no_recording_expected"
    RECORDING_MISSING = "recording_missing"

    @property
    def final(self) -> bool:
        return self is not JoinState.WAITING


@dataclass(frozen=True, slots=True)
class ExpectedRecording:
    """An S3 recording the CTR lists (``Recordings[]`` / ``Recording``)."""

    location: str  # bucket/key
    deleted: bool
    participant: str | None = None
    start: datetime | None = None
    stop: datetime | None = None


@dataclass(frozen=True, slots=True)
class RecordingObject:
    """The object half: a recording seen in S3 (notification or HEAD)."""

    location: str
    size: int
    seen_at: datetime
    duration_seconds: float | None = None
    duration_source: str | None = None  # "header" | "size" | "unreadable"
    #: Which parties the recording carries (``RecordedParties``); None: read before it was stored.
    recorded_parties: str | None = None
    #: QM's own copy of the recording (``bucket/key``); None: not copied (copying off, or
    #: seen before copies were kept).
    copy_location: str | None = None
    #: Why the copy could not be made (an S3 error code); the contact is flagged.
    copy_error: str | None = None


@dataclass(frozen=True, slots=True)
class Tolerance:
    """How far a recording's length may stray from what the CTR implies."""

    seconds: float = 5.0
    ratio: float = 0.05

    def allowed(self, expected: float) -> float:
        return max(self.seconds, self.ratio * expected)


@dataclass(frozen=True)
class ContactView:
    """What the contacts table holds for a contact: the QM contact and its join state."""

    contact: QmContact
    revision: int
    first_seen: datetime  # when this CTR version first arrived: the window starts here
    expected: tuple[ExpectedRecording, ...]
    state: JoinState
    deadline: datetime | None  # end of the window while waiting
    expected_media_seconds: float | None = None
    recording_durations: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def contact_id(self) -> str:
        return self.contact.contact_id

    @property
    def last_update(self) -> str:
        return self.contact.last_update

    @property
    def version(self) -> str:
        return version_key(self.last_update, self.revision)

    @property
    def emittable(self) -> bool:
        return self.state.final


def version_key(last_update: str, revision: int) -> str:
    """Sortable version string: ``<last_update>#<revision, 6 digits>``."""
    return f"{last_update}#{revision:06d}"


def expected_recordings(record: ContactRecord) -> tuple[ExpectedRecording, ...]:
    return tuple(
        ExpectedRecording(
            location=ref.location or "",
            deleted=bool(ref.deletion_reason),
            participant=ref.participant_type,
            start=ref.start,
            stop=ref.stop,
        )
        for ref in s3_recordings(record)
    )


def expected_media_seconds(record: ContactRecord) -> float | None:
    """How long the agent's recording should be, from the CTR alone.

    A recording with start/stop timestamps says it directly; otherwise the agent's talk
    time plus the customer's hold time (Connect keeps recording through a hold).
    """
    for ref in s3_recordings(record):
        if (ref.participant_type or "").upper() in ("AGENT", "") and ref.start and ref.stop:
            return (ref.stop - ref.start).total_seconds()
    agent = record.agent
    if agent is None or agent.interaction_seconds is None:
        return None
    return float(agent.interaction_seconds + (agent.customer_hold_seconds or 0))


def duration_from_size(size: int) -> float:
    """Fallback when a header is unreadable: Connect's format, 44-byte header."""
    return max(size - WAV_MIN_HEADER, 0) / CONNECT_BYTE_RATE


_JOIN_FLAGS = frozenset(
    {
        FLAG_RECORDING_MISSING,
        FLAG_DURATION_FROM_SIZE,
        FLAG_DURATION_SHORT,
        FLAG_DURATION_LONG,
        FLAG_RECORDING_UNREADABLE,
        FLAG_RECORDING_DELETED,
        FLAG_RECORDING_COPY_FAILED,
    }
)


def _recorded_parties(
    primary: str | None, live: Sequence[ExpectedRecording], objects: Mapping[str, RecordingObject]
) -> str | None:
    """The primary recording's parties (the agent's call recording), else the first known."""
    found = objects.get(primary) if primary else None
    if found is not None and found.recorded_parties:
        return found.recorded_parties
    for e in live:
        obj = objects.get(e.location)
        if obj is not None and obj.recorded_parties:
            return obj.recorded_parties
    return None


def decide(  # noqa: PLR0912 - one decision table, read top to bottom
    *,
    base: QmContact,
    expected: Sequence[ExpectedRecording],
    objects: Mapping[str, RecordingObject],
    first_seen: datetime,
    now: datetime,
    window: timedelta,
    expected_seconds: float | None,
    tolerance: Tolerance,
) -> tuple[JoinState, datetime | None, QmContact, dict[str, float | None]]:
    """The join's decision for one contact version, and the QM contact it produces."""
    live = [e for e in expected if not e.deleted]
    durations: dict[str, float | None] = {}
    flags = [f for f in base.flags if f not in _JOIN_FLAGS]
    if any(e.deleted for e in expected):
        flags.append(FLAG_RECORDING_DELETED)
    deadline = first_seen + window
    if not expected:
        state = JoinState.NO_RECORDING_EXPECTED
    elif not live:
        state = JoinState.RECORDING_DELETED
    elif all(e.location in objects for e in live):
        state = JoinState.JOINED
    elif now >= deadline:
        state = JoinState.RECORDING_MISSING
        flags.append(FLAG_RECORDING_MISSING)
    else:
        state = JoinState.WAITING
    for e in live:
        obj = objects.get(e.location)
        if obj is None:
            continue
        durations[e.location] = obj.duration_seconds
        if obj.duration_source == "size":
            flags.append(FLAG_DURATION_FROM_SIZE)
        elif obj.duration_source == "unreadable":
            flags.append(FLAG_RECORDING_UNREADABLE)
        if obj.copy_error is not None:
            flags.append(FLAG_RECORDING_COPY_FAILED)
    primary = base.recording_location
    primary_obj = objects.get(primary) if primary else None
    parties = _recorded_parties(primary, live, objects)
    call_duration = durations.get(primary) if primary else None
    if call_duration is None and durations:
        call_duration = next((d for d in durations.values() if d is not None), None)
    if call_duration is not None and expected_seconds is not None and state is JoinState.JOINED:
        slack = tolerance.allowed(expected_seconds)
        if call_duration < expected_seconds - slack:
            flags.append(FLAG_DURATION_SHORT)
        elif call_duration > expected_seconds + slack:
            flags.append(FLAG_DURATION_LONG)
    contact = replace(
        base,
        call_duration_seconds=round(call_duration, 3) if call_duration is not None else None,
        recorded_parties=parties,
        qm_recording_location=primary_obj.copy_location if primary_obj is not None else None,
        join_state=state.value,
        flags=tuple(dict.fromkeys(flags)),
    )
    return state, (deadline if state is JoinState.WAITING else None), contact, durations


def on_ctr(
    current: ContactView | None,
    *,
    record: ContactRecord,
    base: QmContact,
    objects: Mapping[str, RecordingObject],
    now: datetime,
    window: timedelta,
    tolerance: Tolerance,
) -> ContactView | None:
    """A CTR version arrived. Returns the new view, or None when nothing changes.

    Older versions change nothing; the same version only re-evaluates (a duplicate
    delivery after a crash or replay must not restart the window).
    """
    if current is not None and current.last_update > base.last_update:
        return None
    if current is not None and current.last_update == base.last_update:
        return reevaluate(current, objects=objects, now=now, window=window, tolerance=tolerance, base=base)
    expected = expected_recordings(record)
    seconds = expected_media_seconds(record)
    state, deadline, contact, durations = decide(
        base=base,
        expected=expected,
        objects=objects,
        first_seen=now,
        now=now,
        window=window,
        expected_seconds=seconds,
        tolerance=tolerance,
    )
    return ContactView(
        contact=contact,
        revision=0,
        first_seen=now,
        expected=expected,
        state=state,
        deadline=deadline,
        expected_media_seconds=seconds,
        recording_durations=durations,
    )


def reevaluate(
    current: ContactView,
    *,
    objects: Mapping[str, RecordingObject],
    now: datetime,
    window: timedelta,
    tolerance: Tolerance,
    base: QmContact | None = None,
) -> ContactView | None:
    """Decide again (an object arrived, time passed, a name became known).

    Returns the next revision when the QM contact or the state changed, else None. A
    final state never goes back to waiting; ``recording_missing`` may still become
    ``joined`` when the recording turns up late.
    """
    state, deadline, contact, durations = decide(
        base=base or current.contact,
        expected=current.expected,
        objects=objects,
        first_seen=current.first_seen,
        now=now,
        window=window,
        expected_seconds=current.expected_media_seconds,
        tolerance=tolerance,
    )
    if current.state.final and state is JoinState.WAITING:
        return None  # cannot happen with a monotonic clock; never un-finalise a view
    if state is current.state and contact == current.contact and deadline == current.deadline:
        return None
    return replace(
        current,
        contact=contact,
        revision=current.revision + 1,
        state=state,
        deadline=deadline,
        recording_durations=durations,
    )
