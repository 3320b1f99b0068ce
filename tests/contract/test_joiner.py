"""The join with its real adapters on the emulator: any order, concurrency, crashes, windows."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from botocore.exceptions import EndpointConnectionError

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.join_store import DynamoJoinStore, SeenObject
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.adapters.kinesis.output import OutputStream
from processor.adapters.s3.call_recordings import PROBE_READ, S3Media
from processor.app.joiner import Joiner, Outcome
from processor.core.ctr import ctr_from_object
from processor.core.join import JoinState, RecordingObject, Tolerance
from processor.core.s3_events import ObjectCreated
from processor.core.user_directory import QmUser
from processor.devtools.simulated_centre import wav_bytes

WINDOW = timedelta(minutes=5)


@dataclass
class FakeClock:
    """The join's injected clock (the adapters talk to the real emulator)."""

    now: datetime = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


class CrashingOutput(OutputStream):
    """Simulates a worker dying around the put (the process would be gone; here the call raises)."""

    def __init__(self, base: OutputStream, *, after_put: bool) -> None:
        super().__init__(base.client, base.stream)
        self.after_put = after_put

    def put_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        if not self.after_put:
            raise KeyboardInterrupt("crash before the put")
        super().put_many(docs)
        raise KeyboardInterrupt("crash after the put, before it was marked done")


def make_joiner(
    settings, aws, clock: FakeClock, output: OutputStream | None = None, owner: str = "w1"
) -> Joiner:
    return Joiner(
        contacts=DynamoContactStore(aws.dynamodb, settings.contacts_table),
        joins=DynamoJoinStore(aws.dynamodb, settings.join_table, timedelta(days=7)),
        media=S3Media(aws.s3),
        output=output or OutputStream(aws.kinesis, settings.output_stream),
        users=DynamoUserDirectory(aws.dynamodb, settings.users_table, cache_seconds=0),
        window=lambda: WINDOW,
        tolerance=Tolerance(),
        clock=clock,
        locations=settings.recording_locations,
        owner=owner,
    )


def crash_around_the_put(settings, aws, clock: FakeClock, contact_id: str, *, after_put: bool, owner: str):
    """A worker that wrote a contact's view and its emission claim, then died before or
    after its put: the contact is left with a pending emission. Its CTR, to replay."""
    base = OutputStream(aws.kinesis, settings.output_stream)
    crashing = make_joiner(settings, aws, clock, CrashingOutput(base, after_put=after_put), owner=owner)
    record, raw, location = ctr(contact_id, settings)
    upload(aws, location, 60.0)
    with pytest.raises(KeyboardInterrupt):
        crashing.on_ctr(record, raw)
    return record, raw


def output_records(aws, stream: str) -> list[dict]:
    records = []
    for shard in aws.kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = aws.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = aws.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            records += [orjson.loads(r["Data"]) for r in page["Records"]]
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    return records


def ctr(
    contact_id: str, settings, *, version: str = "2026-06-01T11:00:00Z", talk: int = 60, username="agent.one"
):
    key = f"connect/x/CallRecordings/2026/06/01/{contact_id}_20260601T10:58_UTC.wav"
    location = f"{settings.recordings_bucket}/{key}"
    obj = {
        "ContactId": contact_id,
        "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
        "InitiationMethod": "INBOUND",
        "LastUpdateTimestamp": version,
        "Agent": {
            "Username": username,
            "ConnectedToAgentTimestamp": "2026-06-01T10:58:00Z",
            "AgentInteractionDuration": talk,
            "CustomerHoldDuration": 0,
        },
        "Recordings": [{"Location": location, "StorageType": "S3", "ParticipantType": "AGENT"}],
    }
    return ctr_from_object(obj), orjson.dumps(obj), location


def upload(aws, location: str, seconds: float) -> ObjectCreated:
    bucket, _, key = location.partition("/")
    body = wav_bytes(seconds)
    response = aws.s3.put_object(Bucket=bucket, Key=key, Body=body)
    return ObjectCreated(bucket, key, len(body), response["ETag"].strip('"'), "ObjectCreated:Put", None, None)


def test_ctr_first_then_object(bootstrapped, aws) -> None:
    clock = FakeClock()
    joiner = make_joiner(bootstrapped, aws, clock)
    record, raw, location = ctr("c-1", bootstrapped)
    assert joiner.on_ctr(record, raw) is Outcome.CREATED
    stored = joiner.contacts.load("c-1")
    assert stored is not None and stored.view.state is JoinState.WAITING
    assert stored.doc["join_state"] == "waiting_for_recording"
    assert output_records(aws, bootstrapped.output_stream) == []  # waiting views are not emitted
    clock.advance(minutes=1)
    assert joiner.on_object(upload(aws, location, 60.0)) is Outcome.UPDATED
    [emitted] = output_records(aws, bootstrapped.output_stream)
    assert emitted["join_state"] == "joined" and emitted["call_duration_seconds"] == 60.0
    assert emitted["emission_id"] == f"c-1@{emitted['version']}" and emitted["revision"] == 1
    # Replays of either half change nothing and emit nothing more.
    assert joiner.on_ctr(record, raw) is Outcome.UNCHANGED
    assert joiner.on_object(upload(aws, location, 60.0)) is Outcome.UNCHANGED
    assert len(output_records(aws, bootstrapped.output_stream)) == 1


def test_object_first_is_found_by_head(bootstrapped, aws) -> None:
    joiner = make_joiner(bootstrapped, aws, FakeClock())
    record, raw, location = ctr("c-2", bootstrapped, talk=30)
    upload(aws, location, 12.0)  # its notification was lost
    assert joiner.on_ctr(record, raw) is Outcome.CREATED
    stored = joiner.contacts.load("c-2")
    assert stored is not None and stored.view.state is JoinState.JOINED
    assert stored.doc["call_duration_seconds"] == 12.0
    assert "duration_mismatch_short" in stored.doc["flags"]  # 12 s of a 30 s call
    assert joiner.media.bytes_read <= PROBE_READ  # the header and the opening of the call, never the file


def test_window_closes_missing_then_late_and_orphans(bootstrapped, aws) -> None:
    clock = FakeClock()
    joiner = make_joiner(bootstrapped, aws, clock)
    record, raw, location = ctr("c-3", bootstrapped)
    joiner.on_ctr(record, raw)
    orphan = upload(aws, f"{bootstrapped.recordings_bucket}/connect/x/CallRecordings/orphan.wav", 5.0)
    joiner.on_object(orphan)
    assert joiner.sweep().reconciled == 0  # nothing due yet
    clock.advance(minutes=6)
    report = joiner.sweep()
    assert (report.missing, report.orphans) == (1, 1)
    assert joiner.sweep().orphans == 0  # reported once
    missing = joiner.contacts.load("c-3")
    assert missing is not None and missing.view.state is JoinState.RECORDING_MISSING
    joiner.on_object(upload(aws, location, 60.0))  # late: a new revision, joined
    states = [r["join_state"] for r in output_records(aws, bootstrapped.output_stream)]
    assert states == ["recording_missing", "joined"]


def test_concurrent_halves_emit_each_contact_once(bootstrapped, aws) -> None:
    clock = FakeClock()
    joiners = [make_joiner(bootstrapped, aws, clock, owner=f"w{i}") for i in range(4)]
    work = []
    for i in range(12):
        record, raw, location = ctr(f"race-{i}", bootstrapped)
        bucket, _, key = location.partition("/")
        body = wav_bytes(60.0)
        etag = aws.s3.put_object(Bucket=bucket, Key=key, Body=body)["ETag"].strip('"')
        obj = ObjectCreated(bucket, key, len(body), etag, "ObjectCreated:Put", None, None)
        work += [lambda r=record, w=raw, j=joiners[i % 4]: j.on_ctr(r, w)]
        work += [lambda o=obj, j=joiners[(i + 1) % 4]: j.on_object(o)]
        work += [lambda r=record, w=raw, j=joiners[(i + 2) % 4]: j.on_ctr(r, w)]
    errors = []

    def run(fn) -> None:
        try:
            fn()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(fn,)) for fn in work]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    counts = Counter(r["contact_id"] for r in output_records(aws, bootstrapped.output_stream))
    assert counts == {f"race-{i}": 1 for i in range(12)}


class NotifiedInBetween(DynamoJoinStore):
    """The recording's notification writes its half right after this CTR's half is durable
    and after the CTR's first look found no object half."""

    def __init__(self, *args: Any, notification: SeenObject, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.notification: SeenObject | None = notification

    def write(self, requests: Sequence[tuple[str, dict[str, Any]]]) -> None:
        super().write(requests)
        links = [
            r
            for _, r in requests
            if r.get("PutRequest", {}).get("Item", {}).get("pk", {}).get("S", "").startswith("link#")
        ]
        if links and self.notification is not None:
            seen, self.notification = self.notification, None
            super().write(self.object_requests([(seen, None)], seen.obj.seen_at))


def test_a_notification_landing_mid_ctr_still_gives_one_version_with_its_duration(bootstrapped, aws) -> None:
    clock = FakeClock()
    record, raw, location = ctr("mid-1", bootstrapped)
    obj = upload(aws, location, 60.0)
    joiner = make_joiner(bootstrapped, aws, clock)
    probed = joiner.media.probe(location)
    assert probed is not None
    info, duration = probed
    seen = SeenObject(
        RecordingObject(location, info.size, clock(), duration.seconds, duration.source), info.etag
    )
    joiner.joins = NotifiedInBetween(
        aws.dynamodb, bootstrapped.join_table, timedelta(days=7), notification=seen
    )
    assert joiner.on_ctr(record, raw) is Outcome.CREATED
    assert joiner.on_object(obj) is Outcome.UNCHANGED  # the notification's own reconcile
    [emitted] = output_records(aws, bootstrapped.output_stream)
    assert emitted["call_duration_seconds"] == 60.0 and emitted["revision"] == 0


@pytest.mark.parametrize("after_put", [False, True])
def test_crash_around_the_output_put_emits_exactly_once(bootstrapped, aws, after_put: bool) -> None:
    clock = FakeClock()
    record, raw = crash_around_the_put(bootstrapped, aws, clock, "c-crash", after_put=after_put, owner="dead")
    stored = make_joiner(bootstrapped, aws, clock).contacts.load("c-crash")
    assert stored is not None and stored.emission_pending
    clock.advance(seconds=61)  # the dead worker's claim (60 s lease) is stale
    survivor = make_joiner(bootstrapped, aws, clock, owner="survivor")
    assert survivor.on_ctr(record, raw) is Outcome.UNCHANGED  # the replayed CTR
    records = output_records(aws, bootstrapped.output_stream)
    assert [r["contact_id"] for r in records] == ["c-crash"]
    stored = survivor.contacts.load("c-crash")
    assert stored is not None and not stored.emission_pending


def test_names_arrive_after_the_contact(bootstrapped, aws) -> None:
    joiner = make_joiner(bootstrapped, aws, FakeClock())
    record, raw, location = ctr("c-names", bootstrapped, username="late.user")
    upload(aws, location, 60.0)
    joiner.on_ctr(record, raw)
    first = joiner.contacts.load("c-names")
    assert first is not None and "user_unknown" in first.doc["flags"]
    joiner.users.put(QmUser("late.user", "Late", "User"))  # type: ignore[attr-defined]
    assert joiner.refresh_agent("late.user") == 1
    records = output_records(aws, bootstrapped.output_stream)
    assert [(r["first_name"], r["revision"]) for r in records] == [(None, 0), ("Late", 1)]
    assert "user_unknown" not in records[-1]["flags"]


class FlakyOutput(OutputStream):
    """The output stream during an outage: each put lands, but its answer is lost."""

    def __init__(self, base: OutputStream, failures: int) -> None:
        super().__init__(base.client, base.stream)
        self.failures = failures
        self.puts = 0

    def put_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        self.puts += 1
        taken = super().put_many(docs)
        if self.puts <= self.failures:
            from botocore.exceptions import ReadTimeoutError

            raise ReadTimeoutError(endpoint_url="http://127.0.0.1")
        return taken


def test_lost_put_answers_never_duplicate(bootstrapped, aws) -> None:
    clock = FakeClock()
    base = OutputStream(aws.kinesis, bootstrapped.output_stream)
    flaky = FlakyOutput(base, failures=3)
    joiner = make_joiner(bootstrapped, aws, clock, flaky, owner="slow")
    record, raw, location = ctr("c-lost-answer", bootstrapped)
    upload(aws, location, 60.0)
    joiner.on_ctr(record, raw)
    # The first put landed; the read-back after its lost answer found it: no second put.
    assert flaky.puts == 1
    assert [r["contact_id"] for r in output_records(aws, bootstrapped.output_stream)] == ["c-lost-answer"]
    stored = joiner.contacts.load("c-lost-answer")
    assert stored is not None and not stored.emission_pending


class DownOutput(OutputStream):
    """The output stream unreachable while ``down()``: puts fail without landing."""

    def __init__(self, base: OutputStream, down: Callable[[], bool]) -> None:
        super().__init__(base.client, base.stream)
        self.down, self.attempts = down, 0

    def _down(self) -> None:
        self.attempts += 1
        if self.down():
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1")

    def publish(self, doc: dict[str, Any]) -> str:
        self._down()
        return super().publish(doc)

    def put_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        self._down()
        return super().put_many(docs)


def test_a_stuck_holder_and_a_second_worker_emit_once(bootstrapped, aws) -> None:
    """The holder's puts fail longer than its claim is safe; it lets the claim lapse; a
    second worker waiting on the same pending emission takes over after the lapse. One
    record, whoever wins."""
    clock = FakeClock()
    base = OutputStream(aws.kinesis, bootstrapped.output_stream)
    lease = 22.0  # safe put time: lease - 10 s put - 10 s skew = 2 s
    up_at = time.monotonic() + 4.0
    output = DownOutput(base, lambda: time.monotonic() < up_at)
    holder = make_joiner(bootstrapped, aws, clock, output, owner="holder")
    holder.claim_lease_s = lease
    other = make_joiner(bootstrapped, aws, clock, owner="other")
    other.claim_lease_s = lease
    record, raw, location = ctr("c-stuck", bootstrapped)
    upload(aws, location, 60.0)
    errors: list[BaseException] = []

    def run_holder() -> None:
        try:
            holder.on_ctr(record, raw)
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run_holder)
    thread.start()
    time.sleep(1.0)

    def advance_clock() -> None:  # the join's clock follows real time for the claim's lease
        while thread.is_alive():
            clock.advance(seconds=0.5)
            time.sleep(0.5)

    ticker = threading.Thread(target=advance_clock, daemon=True)
    ticker.start()
    other.on_ctr(record, raw)  # a replay on another worker: waits, then completes or finds it done
    thread.join(timeout=120)
    assert errors == []
    assert [r["contact_id"] for r in output_records(aws, bootstrapped.output_stream)] == ["c-stuck"]


def test_recordings_in_unreadable_places_never_stall(bootstrapped, aws) -> None:
    """Untrusted locations: a bucket that does not exist, another account's bucket, a
    location that is not bucket/key. The contact is imported, never the shard stalled; a
    bucket other than the recordings bucket is never read at all."""
    clock = FakeClock()
    joiner = make_joiner(bootstrapped, aws, clock)
    for contact_id, location in (
        ("c-nobucket", "no-such-bucket-anywhere/connect/x/CallRecordings/a.wav"),
        ("c-badloc", "not a location"),
        ("c-upper", "Upper_Case_Bucket/x.wav"),
    ):
        obj = {
            "ContactId": contact_id,
            "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
            "InitiationMethod": "INBOUND",
            "LastUpdateTimestamp": "2026-06-01T11:00:00Z",
            "Recordings": [{"Location": location, "StorageType": "S3"}],
        }
        joiner.on_ctr(ctr_from_object(obj), orjson.dumps(obj))
    for contact_id, flag in (
        ("c-nobucket", "recording_location_rejected"),
        ("c-badloc", "recording_location_invalid"),
        ("c-upper", "recording_location_invalid"),
    ):
        stored = joiner.contacts.load(contact_id)
        assert stored is not None and flag in stored.doc["flags"]
        assert stored.view.state is JoinState.NO_RECORDING_EXPECTED
    clock.advance(minutes=6)
    joiner.sweep()
    assert joiner.contacts.load("c-nobucket").view.state is JoinState.NO_RECORDING_EXPECTED  # type: ignore[union-attr]


class InterferingContacts(DynamoContactStore):
    """Another worker writes a newer version of one contact between this batch's read and
    its write."""

    def __init__(self, *args: Any, before_write: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.before_write = before_write

    def transact(self, groups: Sequence[Sequence[dict[str, Any]]]) -> list[Any]:
        if self.before_write is not None:
            interfere, self.before_write = self.before_write, None
            interfere()
        return super().transact(groups)


def test_a_conflict_in_a_batch_re_decides_that_contact_alone(bootstrapped, aws) -> None:
    clock = FakeClock()
    batch = []
    for i in range(40):
        record, raw, location = ctr(f"batch-{i}", bootstrapped)
        upload(aws, location, 60.0)
        batch.append((record, raw))
    newer, newer_raw, _ = ctr("batch-7", bootstrapped, version="2026-06-01T11:30:00Z")
    other = make_joiner(bootstrapped, aws, clock, owner="other")
    joiner = make_joiner(bootstrapped, aws, clock, owner="batch")
    joiner.contacts = InterferingContacts(
        aws.dynamodb, bootstrapped.contacts_table, before_write=lambda: other.on_ctr(newer, newer_raw)
    )
    outcomes = joiner.on_ctrs(batch)
    assert outcomes[7] is Outcome.UNCHANGED  # re-decided against the newer version: nothing to write
    assert all(o is Outcome.CREATED for i, o in enumerate(outcomes) if i != 7)
    records = output_records(aws, bootstrapped.output_stream)
    counts = Counter(r["contact_id"] for r in records)
    assert counts == {f"batch-{i}": 1 for i in range(40)}
    [kept] = [r for r in records if r["contact_id"] == "batch-7"]
    assert kept["last_update"].startswith("2026-06-01T11:30")
    assert all(not s.emission_pending for s in joiner.contacts.load_many(counts).values())


@pytest.mark.parametrize("after_put", [False, True])
def test_an_emission_its_writer_never_finished_is_completed_by_the_sweeper(
    bootstrapped, aws, after_put: bool
) -> None:
    """No replay, no redelivery: the writer stopped between its view write and the mark."""
    clock = FakeClock()
    crash_around_the_put(bootstrapped, aws, clock, "c-orphan-emission", after_put=after_put, owner="gone")
    sweeper = make_joiner(bootstrapped, aws, clock, owner="sweeper")
    assert sweeper.sweep().reconciled == 0  # the writer's claim is still fresh: nothing due yet
    clock.advance(seconds=62)
    assert sweeper.sweep().reconciled == 1
    assert [r["contact_id"] for r in output_records(aws, bootstrapped.output_stream)] == ["c-orphan-emission"]
    stored = sweeper.contacts.load("c-orphan-emission")
    assert stored is not None and not stored.emission_pending
    assert sweeper.joins.count_pending() == (0, 0)


def test_an_emitted_contact_leaves_no_marker(bootstrapped, aws) -> None:
    joiner = make_joiner(bootstrapped, aws, FakeClock())
    record, raw, location = ctr("c-no-marker", bootstrapped)
    upload(aws, location, 60.0)
    assert joiner.on_ctr(record, raw) is Outcome.CREATED
    assert joiner.joins.count_pending() == (0, 0)


class SimulatedTime:
    """The emission protocol's monotonic clock and its waits, simulated: a wait advances the
    time at once (and the join's wall clock with it, unless told not to), so a test of a
    lease that lapses takes as long as its requests, not as long as the lease."""

    def __init__(self, wall: FakeClock, *, wall_follows: bool = True) -> None:
        self.now = 1000.0
        self.slept = 0.0
        self.waits: list[float] = []
        self.wall = wall
        self.wall_follows = wall_follows

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds
        self.waits.append(seconds)
        if self.wall_follows:
            self.wall.advance(seconds=seconds)


def test_an_outage_longer_than_the_claim_s_safe_time_lets_it_lapse_then_emits_once(bootstrapped, aws) -> None:
    """Puts fail past the claim's safe window: the worker stops putting, lets its claim lapse
    (a wait of a whole lease, on the simulated clock), takes it again, reads back and puts:
    one record. Without the lapse a put could land after another worker took over."""
    clock = FakeClock()
    sim = SimulatedTime(clock)
    base = OutputStream(aws.kinesis, bootstrapped.output_stream)
    lease = 22.0  # safe put time: 22 s lease - 10 s put - 10 s skew = 2 s
    up_at = sim.now + 30.0
    output = DownOutput(base, lambda: sim.now < up_at)
    joiner = make_joiner(bootstrapped, aws, clock, output, owner="holder")
    joiner.claim_lease_s, joiner.monotonic, joiner.sleep = lease, sim.monotonic, sim.sleep
    record, raw, location = ctr("c-lapse", bootstrapped)
    upload(aws, location, 60.0)
    started = time.monotonic()
    joiner.on_ctr(record, raw)
    assert [r["contact_id"] for r in output_records(aws, bootstrapped.output_stream)] == ["c-lapse"]
    stored = joiner.contacts.load("c-lapse")
    assert stored is not None and not stored.emission_pending
    # It waited out its own lease once: a wait longer than any pause between tries (5 s).
    assert max(sim.waits) >= lease - 3.0
    assert output.attempts >= 3  # tries in the first window, then again after the lapse
    assert time.monotonic() - started < 20.0  # not the lease in real time


def test_a_claim_never_released_fails_after_ten_leases_without_waiting_them(bootstrapped, aws) -> None:
    """Another worker's claim that stays fresh (its wall clock does not move here) is waited
    on, asking every half second, for ten leases; then the batch fails for a person to look."""
    clock = FakeClock()
    record, raw = crash_around_the_put(bootstrapped, aws, clock, "c-held", after_put=False, owner="dead")
    sim = SimulatedTime(clock, wall_follows=False)
    other = make_joiner(bootstrapped, aws, clock, owner="other")
    other.claim_lease_s, other.monotonic, other.sleep = 5.0, sim.monotonic, sim.sleep
    with pytest.raises(RuntimeError, match="emission claim never released"):
        other.on_ctr(record, raw)
    assert 50.0 <= sim.slept <= 51.0  # ten 5 s leases, in 0.5 s steps
    assert output_records(aws, bootstrapped.output_stream) == []
