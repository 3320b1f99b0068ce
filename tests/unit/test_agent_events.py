"""Agent events -> recording intent, on the real samples and on generated sessions."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.agent_events import AgentRecording, Intent, apply, parse_agent_event, release_before
from processor.platform.exceptions import InvalidInput


def events(samples_dir: Path) -> list[bytes]:
    return [
        orjson.dumps(e)
        for e in orjson.loads(
            (samples_dir / "agent-events/aspect-wfm-quickstart-recorddata.json").read_bytes()
        )
    ]


def test_sample_session_start_once_stop_once(samples_dir: Path) -> None:
    state = AgentRecording()
    intents = []
    for payload in events(samples_dir):
        state, intent = apply(state, parse_agent_event(payload))
        intents.append(intent)
    # LOGIN -> start; Available/Break/Lunch heartbeats change nothing; Offline -> stop;
    # LOGOUT and the last HEART_BEAT (still Offline) -> nothing more.
    assert [i for i in intents if i is not Intent.NONE] == [Intent.START, Intent.STOP]
    assert intents[0] is Intent.START
    assert not state.recording


def test_login_has_no_snapshot_so_no_username(samples_dir: Path) -> None:
    login = parse_agent_event(events(samples_dir)[0])
    assert login.event_type == "LOGIN" and login.username is None
    assert login.agent_arn.endswith("/agent/dfe8970a-ee78-4fa2-b79b-b6b3e92d35c0")
    change = parse_agent_event(events(samples_dir)[1])
    assert change.username == "christy.burkholder" and change.status == "Available"


def test_replays_and_out_of_order_events_change_nothing(samples_dir: Path) -> None:
    payloads = events(samples_dir)
    state = AgentRecording()
    for payload in payloads:
        state, _ = apply(state, parse_agent_event(payload))
    for payload in reversed(payloads):  # a replay, in any order
        again, intent = apply(state, parse_agent_event(payload))
        assert (again, intent) == (state, Intent.NONE)


def event(kind: str, at: datetime, status: str | None = None, contacts: list[dict] | None = None) -> bytes:
    snapshot = None
    if status is not None:
        snapshot = {
            "AgentStatus": {"Name": status},
            "Configuration": {"Username": "ana"},
            "Contacts": contacts or [],
        }
    return orjson.dumps(
        {
            "AgentARN": "arn:aws:connect:us-east-1:1:instance/i/agent/a",
            "EventType": kind,
            "EventTimestamp": at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "InstanceARN": "arn:aws:connect:us-east-1:1:instance/i",
            "CurrentAgentSnapshot": snapshot,
        }
    )


T = datetime(2026, 5, 1, 8, tzinfo=UTC)


def test_offline_with_a_contact_in_hand_keeps_recording() -> None:
    state = AgentRecording()
    state, _ = apply(state, parse_agent_event(event("LOGIN", T)))
    in_acw = [{"State": "ENDED", "ConnectedToAgentTimestamp": "2026-05-01T08:01:00.000Z"}]
    state, intent = apply(
        state, parse_agent_event(event("STATE_CHANGE", T + timedelta(minutes=5), "Offline", in_acw))
    )
    assert intent is Intent.NONE and state.recording
    started = datetime(2026, 5, 1, 8, 1, tzinfo=UTC)
    assert state.recent_contacts == ((started, T + timedelta(minutes=5)),)
    state, intent = apply(state, parse_agent_event(event("HEART_BEAT", T + timedelta(minutes=6), "Offline")))
    assert intent is Intent.STOP
    assert state.recent_contacts == ((started, T + timedelta(minutes=5)),)  # still holds release back


def test_missed_login_is_recovered_by_a_status_event() -> None:
    state, intent = apply(AgentRecording(), parse_agent_event(event("HEART_BEAT", T, "Available")))
    assert intent is Intent.START and state.recording


def test_unknown_event_types_are_ignored() -> None:
    state, intent = apply(AgentRecording(), parse_agent_event(event("TELEPORT", T, "Available")))
    assert intent is Intent.NONE and not state.recording


@pytest.mark.parametrize("payload", [b"{", b"[]", b'{"EventType": "LOGIN"}'])
def test_bad_agent_events(payload: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_agent_event(payload)


kinds = st.sampled_from(["LOGIN", "LOGOUT", "STATE_CHANGE", "HEART_BEAT"])
statuses = st.sampled_from(["Available", "Break", "Offline", None])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(kinds, statuses, st.integers(0, 10_000)), max_size=30), st.randoms())
def test_commands_alternate_and_follow_the_newest_event(script, rnd) -> None:
    payloads = [
        event(k, T + timedelta(seconds=s), status if k in ("STATE_CHANGE", "HEART_BEAT") else None)
        for k, status, s in script
    ]
    state = AgentRecording()
    sent = []
    order = list(payloads)
    rnd.shuffle(order)  # Kinesis re-delivery and replays mix the order
    for payload in order + order:
        state, intent = apply(state, parse_agent_event(payload))
        if intent is not Intent.NONE:
            sent.append(intent)
    # Never two starts or two stops in a row: the desktop is told each change once.
    assert all(a is not b for a, b in itertools.pairwise(sent))
    if sent:
        assert (sent[-1] is Intent.START) == state.recording


def test_release_rule() -> None:
    window, slack = timedelta(minutes=30), timedelta(minutes=5)
    consumed = datetime(2026, 5, 1, 12, tzinfo=UTC)
    assert release_before(consumed_until=None, window=window, slack=slack) is None
    cutoff = datetime(2026, 5, 1, 11, 25, tzinfo=UTC)
    assert release_before(consumed_until=consumed, window=window, slack=slack) == cutoff
    start = datetime(2026, 5, 1, 10, 50, tzinfo=UTC)
    recent = [(start, cutoff + timedelta(seconds=1))]  # seen in hand after the cutoff: holds
    assert release_before(consumed_until=consumed, window=window, slack=slack, contacts=recent) == start
    old = [(start, cutoff - timedelta(seconds=1))]  # ended long enough ago: imported by now
    assert release_before(consumed_until=consumed, window=window, slack=slack, contacts=old) == cutoff


@settings(max_examples=400, deadline=None)
@given(
    contact_start=st.integers(0, 10_000),
    talk=st.integers(0, 5_000),
    delivery_lag=st.integers(0, 1_800),  # Connect writes the CTR within the window of the end
    consumed=st.integers(0, 20_000),
    segment_end=st.integers(0, 20_000),
)
def test_a_segment_is_never_released_while_an_overlapping_contact_can_still_arrive(
    contact_start, talk, delivery_lag, consumed, segment_end
) -> None:
    """The watermark may pass a segment only if every contact overlapping it is imported."""
    window, slack = timedelta(seconds=1800), timedelta(seconds=60)
    start = T + timedelta(seconds=contact_start)
    end = start + timedelta(seconds=talk)
    ctr_arrives = end + timedelta(seconds=delivery_lag)
    consumed_until = T + timedelta(seconds=consumed)
    # The agent event stream showed the contact in hand from its start to its end (as far
    # as the stream was read: up to consumed_until).
    seen = [(start, min(end, consumed_until))] if start <= consumed_until else []
    before = release_before(consumed_until=consumed_until, window=window, slack=slack, contacts=seen)
    assert before is not None
    overlapping = start < T + timedelta(seconds=segment_end)
    released = T + timedelta(seconds=segment_end) <= before
    imported = ctr_arrives <= consumed_until
    if overlapping and released:
        assert imported, "a segment was released before its contact was imported"


@settings(max_examples=200, deadline=None)
@given(allowed=st.lists(st.booleans(), min_size=11, max_size=11))
def test_a_recording_always_stops_whatever_the_settings_say(allowed: list[bool]) -> None:
    # Whatever the settings allowed event by event, a START comes only when allowed, and the
    # session's end (Offline, then LOGOUT) leaves nothing recording.
    from tests.conftest import SAMPLES

    state = AgentRecording()
    for payload, may_start in zip(events(SAMPLES), allowed, strict=True):
        before = state.recording
        state, intent = apply(state, parse_agent_event(payload), may_start=may_start)
        if intent is Intent.START:
            assert may_start and not before
        if not may_start:
            assert intent is not Intent.START
    assert not state.recording
