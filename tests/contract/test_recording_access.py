"""Access errors are not absence: a recording GET answered 403/AccessDenied, or the recordings
bucket gone, fails the batch (read again once the cause is gone), never turns the contact into
``recording_missing``. Through the fault proxy, which answers as S3 does."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from processor.adapters.aws import AwsClients, fails_the_batch
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.app.wiring import build_ingest
from processor.core.batch import StreamRecord
from processor.core.join import JoinState
from processor.devtools.faultproxy import FaultProxy, Injection, s3_error
from processor.ops.doctor import Doctor, Severity
from processor.platform.exceptions import SourcePosition
from tests.contract.test_joiner import ctr, upload


def access_denied(bucket: str) -> Injection:
    return s3_error("AccessDenied", "Access Denied", status=403, path=f"GET /{bucket}/", times=None)


@pytest.fixture
def proxy(emulator: str):  # type: ignore[no-untyped-def]
    with FaultProxy(urlsplit(emulator).port or 0) as running:
        yield running


def record(raw: bytes, n: int) -> StreamRecord:
    return StreamRecord(raw, SourcePosition("kinesis", "ctr", "shardId-0", str(n)))


def test_access_denied_on_a_recording_fails_the_batch_until_it_is_granted(
    bootstrapped, aws, proxy: FaultProxy
) -> None:
    settings = bootstrapped.model_copy(update={"aws_endpoint_url": proxy.endpoint})
    ingest = build_ingest(settings, AwsClients(settings))
    _, raw, location = ctr("c-denied", bootstrapped, version="2026-06-01T11:00:00Z", talk=60)
    upload(aws, location, 42.0)  # there, but the service may not read it
    proxy.inject(access_denied(bootstrapped.recordings_bucket))
    with pytest.raises(ClientError) as caught:
        ingest.process([record(raw, 1)])
    assert caught.value.response["Error"]["Code"] == "AccessDenied"
    assert fails_the_batch(caught.value)  # the KCL worker retries the batch in place
    store = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table)
    stored = store.load("c-denied")
    assert stored is None or stored.view.state is not JoinState.RECORDING_MISSING
    quarantine = DynamoQuarantine(
        aws.dynamodb, bootstrapped.quarantine_table, aws.s3, bootstrapped.quarantine_bucket
    )
    assert list(quarantine.list()) == []

    proxy.clear()  # the permission is granted: the same batch, read again, goes through
    result = ingest.process([record(raw, 1)])
    assert result.quarantined == 0
    stored = store.load("c-denied")
    assert stored is not None and stored.view.state is JoinState.JOINED
    assert stored.doc["call_duration_seconds"] == pytest.approx(42.0, abs=0.01)


def test_a_missing_recordings_bucket_fails_the_batch(bootstrapped, aws) -> None:
    ingest = build_ingest(bootstrapped, aws)
    _, raw, _ = ctr("c-nobucket", bootstrapped, version="2026-06-01T11:00:00Z")
    bucket = bootstrapped.recordings_bucket
    for page in aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            aws.s3.delete_object(Bucket=bucket, Key=obj["Key"])
    aws.s3.delete_bucket(Bucket=bucket)
    with pytest.raises(ClientError) as caught:
        ingest.process([record(raw, 1)])
    assert caught.value.response["Error"]["Code"] == "NoSuchBucket"
    assert fails_the_batch(caught.value)


def test_a_recording_in_a_bucket_we_do_not_own_is_the_record_s_problem(bootstrapped, aws) -> None:
    # A CTR pointing at a bucket that is not ours and does not exist: imported and flagged,
    # never read, never a stall (tests/contract/test_recording_location.py tries the attacks).
    ingest = build_ingest(bootstrapped, aws)
    _, raw, _ = ctr("c-elsewhere", bootstrapped, version="2026-06-01T11:00:00Z")
    raw = raw.replace(bootstrapped.recordings_bucket.encode(), b"someone-elses-bucket-7f3a")
    result = ingest.process([record(raw, 1)])
    assert result.quarantined == 0 and result.created == 1
    stored = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table).load("c-elsewhere")
    assert stored is not None and "recording_location_rejected" in stored.doc["flags"]


def test_doctor_finds_a_role_that_cannot_tell_missing_from_denied(bootstrapped, proxy: FaultProxy) -> None:
    settings = bootstrapped.model_copy(update={"aws_endpoint_url": proxy.endpoint})
    subject = f"s3 bucket {bootstrapped.recordings_bucket}"

    def answer() -> list:  # type: ignore[type-arg]
        findings = Doctor(settings, AwsClients(settings)).check_all()
        return [f for f in findings if f.subject == subject and "not there yet" in f.message]

    [ok] = answer()
    assert ok.severity is Severity.OK
    proxy.inject(access_denied(bootstrapped.recordings_bucket))
    [fatal] = answer()
    assert fatal.severity is Severity.FATAL
    assert "s3:ListBucket" in fatal.fix
