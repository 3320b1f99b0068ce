"""QM keeps its own copy of each call recording: copied server-side into the copies bucket when
the recording is first read (its notification, or the CTR path's own read), played from there
once Connect's is gone; a copy the recording itself refuses flags the contact, a copies bucket
that refuses fails the batch until it is fixed; copying can be switched off."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from botocore.exceptions import ClientError

from processor.adapters.aws import AwsClients, fails_the_batch
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.s3.recording_copy import RecordingCopier
from processor.app.wiring import build_ingest, build_joiner, build_recordings_consumer
from processor.core.batch import StreamRecord
from processor.core.join import FLAG_RECORDING_COPY_FAILED, JoinState
from processor.devtools.faultproxy import FaultProxy, s3_error
from processor.ops.bootstrap import COPIES_EXPIRY_RULE, ensure_copies_retention
from processor.platform.exceptions import SourcePosition
from processor.platform.settings import Settings
from tests.console_support import PASSWORD, accounts, csrf_of
from tests.contract.test_joiner import ctr, output_records, upload


def record(raw: bytes, n: int = 1) -> StreamRecord:
    return StreamRecord(raw, SourcePosition("kinesis", "ctr", "shardId-0", str(n)))


def body_of(aws: Any, location: str) -> bytes:
    bucket, _, key = location.partition("/")
    return aws.s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def copy_of(settings: Settings, location: str) -> str:
    return f"{settings.recordings_copy_bucket}/{location.partition('/')[2]}"


@pytest.fixture
def proxy(emulator: str) -> Iterator[FaultProxy]:
    with FaultProxy(urlsplit(emulator).port or 0) as running:
        yield running


def refuse_copies(
    proxy: FaultProxy, settings: Settings, code: str, message: str, status: int, *, times: int | None
) -> None:
    """S3's answer ``code`` to the copies (a copy is a PUT into the copies bucket)."""
    proxy.inject(
        s3_error(code, message, status=status, path=f"PUT /{settings.recordings_copy_bucket}/", times=times)
    )


def played(settings: Settings, aws: Any, contact_id: str) -> tuple[int, bytes, str]:
    """The console's audio for the contact (signed in as an evaluator), and its page."""
    import httpx

    from processor.console.app import create_app
    from processor.console.server import ConsoleServer, build_deps

    deps = build_deps(settings.model_copy(update={"console_port": 0}), aws, accounts=accounts())
    server = ConsoleServer(create_app(deps), "127.0.0.1", 0).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            csrf = csrf_of(client.get("/login").text)
            client.post("/login", data={"username": "eva", "password": PASSWORD, "csrf_token": csrf})
            audio = client.get(f"/contacts/{quote(contact_id)}/audio")
            page = client.get(f"/contacts/{quote(contact_id)}").text
            return audio.status_code, audio.content, page
    finally:
        server.stop()


def test_the_copy_is_made_when_the_recording_arrives_and_played_once_connect_s_is_gone(
    bootstrapped: Settings, aws: Any
) -> None:
    _, raw, location = ctr("c-copy", bootstrapped, talk=30)
    upload(aws, location, 30.0)
    consumer = build_recordings_consumer(bootstrapped, aws, build_joiner(bootstrapped, aws), wait_seconds=1)
    deadline = time.monotonic() + 30
    while consumer.stats.objects < 1:  # the notification handled: its object half is durable
        assert time.monotonic() < deadline, "the recording's notification was never handled"
        consumer.poll_once()
    original = body_of(aws, location)
    copy = copy_of(bootstrapped, location)
    assert body_of(aws, copy) == original  # server-side: the same bytes under the same key

    build_ingest(bootstrapped, aws).process([record(raw)])
    stored = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table).load("c-copy")
    assert stored is not None and stored.view.state is JoinState.JOINED
    assert stored.doc["qm_recording_location"] == copy
    assert FLAG_RECORDING_COPY_FAILED not in stored.doc["flags"]
    [emitted] = output_records(aws, bootstrapped.output_stream)
    assert emitted["qm_recording_location"] == copy and emitted["recording_location"] == location

    # Connect's lifecycle rule (or an admin) deletes the original: QM still plays the call.
    bucket, _, key = location.partition("/")
    aws.s3.delete_object(Bucket=bucket, Key=key)
    status, audio, page = played(bootstrapped, aws, "c-copy")
    assert status == 200 and hashlib.sha256(audio).digest() == hashlib.sha256(original).digest()
    assert "kept in QM&#39;s bucket" in page or "kept in QM's bucket" in page


def test_the_ctr_path_copies_what_it_reads_itself_and_a_redelivery_copies_nothing_new(
    bootstrapped: Settings, aws: Any
) -> None:
    """No notification (a replay, a backfill of a past day): the CTR path reads the recording
    and copies it; the same CTR again changes nothing and emits nothing."""
    _, raw, location = ctr("c-probe", bootstrapped, talk=12)
    upload(aws, location, 12.0)
    ingest = build_ingest(bootstrapped, aws)
    ingest.process([record(raw)])
    ingest.process([record(raw, 2)])
    stored = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table).load("c-probe")
    assert stored is not None and stored.doc["qm_recording_location"] == copy_of(bootstrapped, location)
    assert body_of(aws, copy_of(bootstrapped, location)) == body_of(aws, location)
    assert len(output_records(aws, bootstrapped.output_stream)) == 1


def test_with_copying_off_nothing_is_copied_and_connect_s_recording_is_played(
    bootstrapped: Settings, aws: Any
) -> None:
    settings = bootstrapped.model_copy(update={"recordings_copy": False})
    _, raw, location = ctr("c-nocopy", settings, talk=20)
    upload(aws, location, 20.0)
    build_ingest(settings, aws).process([record(raw)])
    stored = DynamoContactStore(aws.dynamodb, settings.contacts_table).load("c-nocopy")
    assert stored is not None and stored.view.state is JoinState.JOINED
    assert stored.doc["qm_recording_location"] is None
    assert aws.s3.list_objects_v2(Bucket=settings.recordings_copy_bucket).get("KeyCount", 0) == 0
    status, audio, _ = played(settings, aws, "c-nocopy")
    assert status == 200 and audio == body_of(aws, location)


def test_a_recording_that_refuses_its_copy_is_imported_flagged(
    bootstrapped: Settings, aws: Any, proxy: FaultProxy
) -> None:
    """The recording deleted between its read and its copy (S3 answers the copy NoSuchKey):
    nothing can copy it, so the contact is imported, flagged, emitted once."""
    settings = bootstrapped.model_copy(update={"aws_endpoint_url": proxy.endpoint})
    _, raw, location = ctr("c-gone", settings, talk=15)
    upload(aws, location, 15.0)
    refuse_copies(proxy, settings, "NoSuchKey", "The specified key does not exist.", 404, times=1)
    build_ingest(settings, AwsClients(settings)).process([record(raw)])
    stored = DynamoContactStore(aws.dynamodb, settings.contacts_table).load("c-gone")
    assert stored is not None and stored.view.state is JoinState.JOINED
    assert stored.doc["qm_recording_location"] is None
    assert FLAG_RECORDING_COPY_FAILED in stored.doc["flags"]
    [emitted] = output_records(aws, settings.output_stream)
    assert FLAG_RECORDING_COPY_FAILED in emitted["flags"]


def test_a_copies_bucket_that_refuses_fails_the_batch_until_it_is_fixed(
    bootstrapped: Settings, aws: Any, proxy: FaultProxy
) -> None:
    """A permission missing on the copies bucket is the deployment's, not the recording's: the
    batch fails (the KCL reads it again), no contact loses its copy, and once the permission is
    there the same batch imports the contact with its copy."""
    settings = bootstrapped.model_copy(update={"aws_endpoint_url": proxy.endpoint})
    _, raw, location = ctr("c-denied-copy", settings, talk=15)
    upload(aws, location, 15.0)
    refuse_copies(proxy, settings, "AccessDenied", "Access Denied", 403, times=None)
    ingest = build_ingest(settings, AwsClients(settings))
    with pytest.raises(ClientError) as caught:
        ingest.process([record(raw)])
    assert fails_the_batch(caught.value)
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    assert store.load("c-denied-copy") is None
    proxy.clear()
    ingest.process([record(raw)])
    stored = store.load("c-denied-copy")
    assert stored is not None and stored.doc["qm_recording_location"] == copy_of(settings, location)
    assert FLAG_RECORDING_COPY_FAILED not in stored.doc["flags"]
    assert len(output_records(aws, settings.output_stream)) == 1


def test_a_large_recording_is_copied_in_parts_server_side(bootstrapped: Settings, aws: Any) -> None:
    part = 5 * 1024 * 1024  # S3's smallest part
    body = bytes(range(256)) * (11 * 1024 * 1024 // 256)
    key = "connect/x/CallRecordings/2026/06/01/c-large_20260601T10:58_UTC.wav"
    aws.s3.put_object(Bucket=bootstrapped.recordings_bucket, Key=key, Body=body)
    copier = RecordingCopier(
        aws.s3, bootstrapped.recordings_copy_bucket, multipart_bytes=part, part_bytes=part
    )
    outcome = copier.copy(f"{bootstrapped.recordings_bucket}/{key}", len(body))
    assert outcome.location == f"{bootstrapped.recordings_copy_bucket}/{key}" and outcome.error is None
    copied = aws.s3.get_object(Bucket=bootstrapped.recordings_copy_bucket, Key=key)
    assert copied["Body"].read() == body
    assert copied["ETag"].strip('"').endswith("-3")  # three parts: UploadPartCopy, not a download


def test_bootstrap_sets_the_copies_retention_and_keeps_other_rules(bootstrapped: Settings, aws: Any) -> None:
    bucket = bootstrapped.recordings_copy_bucket
    other = {
        "ID": "someone-elses",
        "Status": "Enabled",
        "Filter": {"Prefix": "x/"},
        "Expiration": {"Days": 9},
    }
    aws.s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [other]})

    def rules() -> dict[str, Any]:
        return {r["ID"]: r for r in aws.s3.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]}

    assert ensure_copies_retention(aws, bucket, 400) is True
    assert rules()[COPIES_EXPIRY_RULE]["Expiration"]["Days"] == 400 and "someone-elses" in rules()
    assert ensure_copies_retention(aws, bucket, 400) is False
    assert ensure_copies_retention(aws, bucket, 0) is True
    assert set(rules()) == {"someone-elses"}
