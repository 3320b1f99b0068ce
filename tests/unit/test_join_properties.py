"""The pure join under any interleaving (Hypothesis).

CTR deliveries (duplicates, updates, any order), recording objects (before, after, never)
and clock ticks of any size are applied to the state machine the way the service applies
them. Whatever the order, each contact is emitted exactly once per version, versions only
grow, and the last emission carries the newest CTR with the right state and duration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.ctr import ContactRecord, ctr_from_object
from processor.core.join import (
    ContactView,
    JoinState,
    RecordingObject,
    Tolerance,
    on_ctr,
    reevaluate,
)
from processor.core.mapping import map_contact

WINDOW = timedelta(minutes=10)
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
TOL = Tolerance()

# Recording layouts a CTR version may list: S3 recordings (location, deleted) and KVS.
LAYOUTS = {
    "none": [],
    "one": [("agent", False)],
    "two": [("ivr", False), ("agent", False)],
    "one_deleted": [("agent", True)],
    "deleted_and_live": [("ivr", True), ("agent", False)],
    "kvs": "kvs",
}


def ctr(contact: int, version: int, layout: str) -> ContactRecord:
    recordings: list[dict] | None = []
    spec = LAYOUTS[layout]
    if spec == "kvs":
        recordings = [{"Location": "arn:aws:kinesisvideo:x", "StorageType": "KINESIS_VIDEO_STREAM"}]
    else:
        for name, deleted in spec:  # type: ignore[union-attr]
            recordings.append(
                {
                    "Location": f"bkt/c{contact}/{name}.wav",
                    "StorageType": "S3",
                    "ParticipantType": "AGENT" if name == "agent" else "IVR",
                    "DeletionReason": "policy" if deleted else None,
                }
            )
    return ctr_from_object(
        {
            "ContactId": f"contact-{contact}",
            "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
            "InitiationMethod": "INBOUND",
            "LastUpdateTimestamp": f"2026-05-01T10:{version:02d}:00Z",
            "Agent": {
                "Username": "agent",
                "ConnectedToAgentTimestamp": "2026-05-01T09:00:00Z",
                "AgentInteractionDuration": 60,
                "CustomerHoldDuration": 0,
            },
            "Recordings": recordings,
        }
    )


@dataclass
class Model:
    """The service's use of the state machine, with in-memory state instead of DynamoDB."""

    views: dict[str, ContactView] = field(default_factory=dict)
    objects: dict[str, RecordingObject] = field(default_factory=dict)
    emitted: list[tuple[str, str, JoinState, str, float | None]] = field(default_factory=list)

    def _store(self, view: ContactView | None) -> None:
        if view is None:
            return
        self.views[view.contact_id] = view
        if view.emittable:
            self.emitted.append(
                (
                    view.contact_id,
                    view.version,
                    view.state,
                    view.last_update,
                    view.contact.call_duration_seconds,
                )
            )

    def deliver(self, record: ContactRecord, now: datetime) -> None:
        view = on_ctr(
            self.views.get(record.contact_id),
            record=record,
            base=map_contact(record),
            objects=self.objects,
            now=now,
            window=WINDOW,
            tolerance=TOL,
        )
        self._store(view)

    def arrive(self, location: str, seconds: float, now: datetime) -> None:
        self.objects[location] = RecordingObject(location, int(seconds * 32000) + 44, now, seconds, "header")
        for view in list(self.views.values()):
            if any(e.location == location for e in view.expected):
                self._store(reevaluate(view, objects=self.objects, now=now, window=WINDOW, tolerance=TOL))

    def tick(self, now: datetime) -> None:
        for view in list(self.views.values()):
            self._store(reevaluate(view, objects=self.objects, now=now, window=WINDOW, tolerance=TOL))


contacts = st.integers(min_value=0, max_value=2)
events = st.lists(
    st.one_of(
        st.tuples(
            st.just("ctr"), contacts, st.integers(min_value=0, max_value=3), st.sampled_from(sorted(LAYOUTS))
        ),
        st.tuples(
            st.just("obj"),
            contacts,
            st.sampled_from(["agent", "ivr"]),
            st.integers(min_value=1, max_value=900),
        ),
        st.tuples(st.just("tick"), st.integers(min_value=0, max_value=1500)),
    ),
    max_size=40,
)


@settings(max_examples=600, deadline=None)
@given(events)
def test_exactly_once_per_version_newest_wins_right_state(script: list[tuple]) -> None:
    model = Model()
    now = T0
    delivered: dict[str, ContactRecord] = {}
    layouts: dict[tuple[int, int], str] = {}
    seconds: dict[str, float] = {}
    for event in script:
        if event[0] == "ctr":
            _, contact, version, layout = event
            # A given CTR version always has the same content (Connect re-delivers it as it was).
            layout = layouts.setdefault((contact, version), layout)
            record = ctr(contact, version, layout)
            newest = delivered.get(record.contact_id)
            if newest is None or record.last_update > newest.last_update:
                delivered[record.contact_id] = record
            model.deliver(record, now)
        elif event[0] == "obj":
            _, contact, name, length = event
            location = f"bkt/c{contact}/{name}.wav"
            if location in seconds:
                continue  # S3 notifies each object; a duplicate notification changes nothing
            seconds[location] = float(length)
            model.arrive(location, float(length), now)
        else:
            now += timedelta(seconds=event[1])
            model.tick(now)
    now += WINDOW + timedelta(seconds=1)
    model.tick(now)  # every window has closed

    keys = [(cid, version) for cid, version, *_ in model.emitted]
    assert len(keys) == len(set(keys)), "a version was emitted twice"
    last: dict[str, tuple] = {}
    for emission in model.emitted:
        cid, version = emission[0], emission[1]
        if cid in last:
            assert version > last[cid][1], "versions must only grow"
        last[cid] = emission
    assert set(last) == set(delivered), "every delivered contact is emitted once its window closes"
    for cid, record in delivered.items():
        _, _, state, last_update, duration = last[cid]
        assert last_update == map_contact(record).last_update, "the newest CTR version wins"
        s3 = [r for r in record.recordings if r.storage_type == "S3"]
        live = [r.location for r in s3 if not r.deletion_reason]
        if not s3:
            assert state is JoinState.NO_RECORDING_EXPECTED
        elif not live:
            assert state is JoinState.RECORDING_DELETED
        elif all(loc in seconds for loc in live):
            assert state is JoinState.JOINED
            agent = next(loc for loc in live if loc.endswith("agent.wav"))
            assert duration == seconds[agent]
        else:
            assert state is JoinState.RECORDING_MISSING
            assert "recording_missing" in model.views[cid].contact.flags


def test_duplicate_delivery_does_not_restart_the_window() -> None:
    model = Model()
    record = ctr(0, 1, "one")
    model.deliver(record, T0)
    model.deliver(record, T0 + timedelta(minutes=9))
    model.tick(T0 + timedelta(minutes=10))
    assert model.views[record.contact_id].state is JoinState.RECORDING_MISSING


def test_late_recording_after_missing_is_a_new_revision() -> None:
    model = Model()
    record = ctr(0, 1, "one")
    model.deliver(record, T0)
    model.tick(T0 + WINDOW)
    model.arrive("bkt/c0/agent.wav", 61.0, T0 + WINDOW + timedelta(minutes=1))
    states = [(version, state) for _, version, state, *_ in model.emitted]
    assert [s for _, s in states] == [JoinState.RECORDING_MISSING, JoinState.JOINED]
    assert states[0][0].endswith("#000001") and states[1][0].endswith("#000002")


def test_duration_cross_check_flags() -> None:
    for seconds, flag in ((30.0, "duration_mismatch_short"), (200.0, "duration_mismatch_long"), (61.0, None)):
        model = Model()
        record = ctr(1, 1, "one")
        model.arrive("bkt/c1/agent.wav", seconds, T0)
        model.deliver(record, T0)
        flags = model.views[record.contact_id].contact.flags
        if flag:
            assert flag in flags
        else:
            assert not {"duration_mismatch_short", "duration_mismatch_long"} & set(flags)
