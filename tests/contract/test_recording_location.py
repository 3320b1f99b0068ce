"""Recording locations from CTRs reach only the recordings bucket(s), in Connect's key layout.

Each attack goes through the interface an attacker would use, against the emulator: a CTR on
the pipeline's batch path (what the KCL worker and the archive reader feed), an S3
notification on the recordings queue, an HTTP request to the console, and a notification on
the archive queue. The service's S3 client is watched: a rejected location is never asked
for (no GET, no HEAD), and a rejection costs no request a contact without a recording does
not cost.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from bench.instruments import CountingAwsClients
from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.console_audit_log import DynamoAuditLog
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.adapters.kinesis.output import OutputStream
from processor.app.wiring import build_ingest, build_joiner, build_quarantine, build_recordings_consumer
from processor.console.samples import contact_doc, put_contacts
from processor.core.batch import StreamRecord
from processor.core.join import JoinState
from processor.devtools.publish_simulation import archive_deliveries
from processor.devtools.simulated_centre import build_scenario, wav_bytes
from processor.ops.backfill import ArchiveEventConsumer, build_importer
from processor.platform.exceptions import SourcePosition
from tests.console_support import ConsoleEnv

FLAG = "recording_location_rejected"
VERSION = "2026-06-01T11:00:00Z"


class S3Calls:
    """Every S3 operation a client is asked for, with its bucket and key."""

    def __init__(self, s3: Any) -> None:
        self.calls: list[tuple[str, str | None, str | None]] = []
        s3.meta.events.register("before-parameter-build.s3", self._seen)

    def _seen(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, params.get("Bucket"), params.get("Key")))

    def of(self, bucket: str) -> list[tuple[str, str | None, str | None]]:
        return [c for c in self.calls if c[1] == bucket]

    def reads(self) -> list[tuple[str, str | None, str | None]]:
        return [c for c in self.calls if c[0] in ("GetObject", "HeadObject")]


def connect_key(contact_id: str) -> str:
    return f"connect/x/CallRecordings/2026/06/01/{contact_id}_20260601T10:58_UTC.wav"


def ctr(contact_id: str, location: str | None, *, legacy: bool = False) -> bytes:
    obj: dict[str, Any] = {
        "ContactId": contact_id,
        "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
        "InitiationMethod": "INBOUND",
        "LastUpdateTimestamp": VERSION,
        "CustomerEndpoint": {"Address": "+14255550123", "Type": "TELEPHONE_NUMBER"},
        "Agent": {
            "Username": "agent.one",
            "ConnectedToAgentTimestamp": "2026-06-01T10:58:00Z",
            "AgentInteractionDuration": 60,
            "CustomerHoldDuration": 0,
        },
    }
    if location is not None and legacy:
        obj["Recording"] = {"Location": location, "Type": "AUDIO", "Status": "AVAILABLE"}
    elif location is not None:
        obj["Recordings"] = [{"Location": location, "StorageType": "S3", "ParticipantType": "AGENT"}]
    return orjson.dumps(obj)


def batch(*payloads: bytes) -> list[StreamRecord]:
    return [
        StreamRecord(p, SourcePosition("kinesis", "ctr", "shardId-0", str(i))) for i, p in enumerate(payloads)
    ]


def put_wav(aws: Any, bucket: str, key: str, seconds: float = 60.0) -> str:
    aws.s3.put_object(Bucket=bucket, Key=key, Body=wav_bytes(seconds))
    return f"{bucket}/{key}"


def emitted(settings: Any, aws: Any) -> dict[str, dict[str, Any]]:
    return {r["contact_id"]: r for r in OutputStream(aws.kinesis, settings.output_stream).records()}


def test_a_ctr_naming_another_bucket_is_flagged_never_read_and_costs_no_request(
    bootstrapped, aws, capfd
) -> None:
    """The CTR archive and the quarantine bucket are readable by the service role: a CTR
    pointing at them (either field) imports its contact, flagged, and reads nothing."""
    settings = bootstrapped
    service = CountingAwsClients(settings)
    watched = S3Calls(service.s3)
    ingest = build_ingest(settings, service)
    # What the attacker wants served: objects of the service's other buckets, at keys that
    # look like Connect's (a real WAV, so that a read would join and a console would play it).
    archive = put_wav(aws, settings.archive_bucket, connect_key("c-archive"))
    quarantined = put_wav(aws, settings.quarantine_bucket, connect_key("c-quarantine"))
    assert ingest.process(batch(ctr("c-warm", None))).created == 1  # caches warm
    with service.counter.window() as plain:
        assert ingest.process(batch(ctr("c-plain-1", None), ctr("c-plain-2", None))).created == 2
    with service.counter.window() as hostile:
        result = ingest.process(
            batch(ctr("c-archive", archive), ctr("c-quarantine", quarantined, legacy=True))
        )
    assert result.created == 2 and result.quarantined == 0
    assert watched.of(settings.archive_bucket) == [] and watched.of(settings.quarantine_bucket) == []
    assert watched.reads() == []
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    out = emitted(settings, aws)
    for contact_id in ("c-archive", "c-quarantine"):
        stored = store.load(contact_id)
        assert stored is not None
        assert stored.view.state is JoinState.NO_RECORDING_EXPECTED  # final at once: nothing awaited
        assert FLAG in stored.doc["flags"] and "recording_missing" not in stored.doc["flags"]
        assert stored.doc["recording_location"] is None and stored.doc["recordings"] == []
        assert stored.view.expected == ()
        assert FLAG in out[contact_id]["flags"] and out[contact_id]["recording_location"] is None

    # The requests of two contacts without any recording, no more (the config read aside: it
    # is cached for 5 s, so either window may make it).
    def requests(counts: Any) -> dict[str, int]:
        return {op: n for op, n in counts.by_operation.items() if op != "dynamodb.GetItem"}

    assert requests(hostile[0]) == requests(plain[0])
    assert not any(op.startswith("s3.") for op in hostile[0].by_operation)
    # The reason is logged (the contact, the bucket, why), never the caller's number.
    err = capfd.readouterr().err
    logged = [orjson.loads(line) for line in err.splitlines() if "recording location rejected" in line]
    assert {(d["contact_id"], d["reason"], d["bucket"]) for d in logged} == {
        ("c-archive", "foreign_bucket", settings.archive_bucket),
        ("c-quarantine", "foreign_bucket", settings.quarantine_bucket),
    }
    assert "4255550123" not in err
    ingest.close()


def test_a_ctr_pointing_at_another_contact_s_recording_or_off_layout_is_rejected(bootstrapped, aws) -> None:
    settings = bootstrapped
    service = AwsClients(settings)
    watched = S3Calls(service.s3)
    ingest = build_ingest(settings, service)
    bucket = settings.recordings_bucket
    victim = put_wav(aws, bucket, connect_key("c-victim"))
    odd = put_wav(aws, bucket, "exports/everything.wav")
    own = put_wav(aws, bucket, connect_key("c-good"), seconds=60.0)
    result = ingest.process(batch(ctr("c-peek", victim), ctr("c-odd", odd), ctr("c-good", own)))
    assert result.created == 3 and result.quarantined == 0
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    for contact_id in ("c-peek", "c-odd"):
        stored = store.load(contact_id)
        assert stored is not None and FLAG in stored.doc["flags"]
        assert stored.doc["recording_location"] is None
    good = store.load("c-good")
    assert good is not None and good.view.state is JoinState.JOINED and FLAG not in good.doc["flags"]
    read_keys = {key for _, _, key in watched.reads()}
    assert connect_key("c-victim") not in read_keys and "exports/everything.wav" not in read_keys
    ingest.close()


def test_an_extra_bucket_that_is_configured_is_read(bootstrapped, aws) -> None:
    other = f"{bootstrapped.recordings_bucket}-old"
    aws.s3.create_bucket(Bucket=other)
    settings = bootstrapped.model_copy(update={"recordings_extra_buckets": f" {other} ,"})
    ingest = build_ingest(settings, aws)
    location = put_wav(aws, other, connect_key("c-old"))
    assert ingest.process(batch(ctr("c-old", location))).created == 1
    stored = DynamoContactStore(aws.dynamodb, settings.contacts_table).load("c-old")
    assert stored is not None and stored.view.state is JoinState.JOINED
    assert stored.doc["recording_location"] == location and FLAG not in stored.doc["flags"]
    ingest.close()


def test_a_recording_notification_naming_another_bucket_is_never_read(bootstrapped, aws) -> None:
    settings = bootstrapped
    service = AwsClients(settings)
    watched = S3Calls(service.s3)
    consumer = build_recordings_consumer(settings, service, build_joiner(settings, service), wait_seconds=0)
    while consumer.poll_once():  # the bucket's test event
        pass
    key = connect_key("c-note")
    put_wav(aws, settings.archive_bucket, key)
    notification = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": settings.archive_bucket},
                    "object": {"key": key.replace(":", "%3A"), "size": 1000},
                },
            }
        ]
    }
    url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
    aws.sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(notification).decode())
    for _ in range(3):
        consumer.poll_once()
    assert watched.of(settings.archive_bucket) == []
    assert consumer.stats.messages >= 1 and consumer.stats.failures == 0


# --- the console ---------------------------------------------------------------------------------
def _plays(env: ConsoleEnv, contact_id: str) -> int:
    entries = DynamoAuditLog(env.aws.dynamodb, env.settings.audit_table).recent("2024-06-30", 200)
    return sum(1 for e in entries if e.action == "audio_played" and e.target == contact_id)


def test_the_console_refuses_a_stored_contact_pointing_outside_the_recordings_bucket(
    console_env: ConsoleEnv,
) -> None:
    """Contacts stored before the check (or written by anything else): the console checks
    again, answers 403 and asks S3 for nothing."""
    env = console_env
    settings, aws = env.settings, env.aws
    foreign = put_wav(
        aws, settings.quarantine_bucket, "connect/demo/CallRecordings/2024/06/28/c-x_20240628T10:00_UTC.wav"
    )
    peek = env.docs["c-both"]["recording_location"]  # another contact's recording, our bucket
    docs = [
        contact_doc(
            contact_id,
            agent="ana.silva",
            first_name="Ana",
            last_name="Silva",
            connected_at=datetime(2024, 6, 28, 9, 0, tzinfo=UTC),
            duration_seconds=60.0,
            recording_location=location,
        )
        for contact_id, location in (("c-x", foreign), ("c-peek", peek))
    ]
    put_contacts(aws.dynamodb, settings.contacts_table, docs)
    watched = S3Calls(aws.s3)
    eva = env.signed_in("eva")
    for contact_id in ("c-x", "c-peek"):
        audio = eva.get(f"/contacts/{contact_id}/audio", headers={"Range": "bytes=0-"})
        assert audio.status_code == 403, audio.text
        assert audio.content != env.wavs["c-both"]
        page = eva.get(f"/contacts/{contact_id}")
        assert page.status_code == 200 and "outside the recordings bucket" in page.text
        assert _plays(env, contact_id) == 0
    assert watched.of(settings.quarantine_bucket) == []
    assert watched.reads() == []
    # The contact's own recording still plays.
    assert eva.get("/contacts/c-both/audio").content == env.wavs["c-both"]


# --- follow mode ---------------------------------------------------------------------------------
def test_follow_mode_quarantines_a_notification_naming_another_bucket(bootstrapped, aws) -> None:
    settings = bootstrapped
    service = AwsClients(settings)
    ingest = build_ingest(settings, service)
    url = aws.sqs.get_queue_url(QueueName=settings.archive_queue)["QueueUrl"]
    consumer = ArchiveEventConsumer(
        sqs=service.sqs,
        queue_url=url,
        dlq_url=aws.sqs.get_queue_url(QueueName=f"{settings.archive_queue}-dlq")["QueueUrl"],
        queue_name=settings.archive_queue,
        importer=build_importer(settings, service, ingest),
        quarantine=build_quarantine(settings, service),
        prefix=settings.archive_prefix,
        bucket=settings.archive_bucket,
        wait_seconds=0,
    )
    while consumer.poll_once():  # the bucket's test event
        pass
    # Firehose-shaped objects of CTRs, in a bucket that is not the archive (one the role reads).
    sc = build_scenario(
        seed=7, bucket=settings.recordings_bucket, contacts=3, start=datetime(2026, 4, 2, 8, tzinfo=UTC)
    )
    [planted, *_] = archive_deliveries(aws, settings.quarantine_bucket, "", sc.deliveries, per_object=10)
    watched = S3Calls(service.s3)
    notification = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": settings.quarantine_bucket},
                    "object": {"key": planted.key.replace(":", "%3A"), "size": 100},
                },
            }
        ]
    }
    aws.sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(notification).decode())
    for _ in range(3):
        consumer.poll_once()
    assert consumer.stats.quarantined == 1 and consumer.stats.objects == 0
    assert watched.of(settings.quarantine_bucket) == [] or all(
        op == "PutObject" for op, _, _ in watched.of(settings.quarantine_bucket)
    )
    assert watched.reads() == []
    reasons = [
        e.reason
        for e in DynamoQuarantine(
            aws.dynamodb, settings.quarantine_table, aws.s3, settings.quarantine_bucket
        ).list()
    ]
    assert reasons == ["foreign_bucket"]
    assert list(DynamoContactStore(aws.dynamodb, settings.contacts_table).scan()) == []
    attributes = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    assert attributes["Attributes"]["ApproximateNumberOfMessages"] == "0"
    ingest.close()
