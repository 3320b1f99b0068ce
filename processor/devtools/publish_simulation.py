"""``qm-ingest simulate``: publish a simulated contact centre (users, CTR stream, recordings in S3)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.adapters.kinesis.put_records import put_records
from processor.adapters.s3.call_recordings import split_location
from processor.core.user_directory import QmUser
from processor.devtools.simulated_centre import (
    DEFAULT_INSTANCE_ARN,
    RecordingUpload,
    Scenario,
    build_scenario,
)
from processor.platform.retry import retry_transient
from processor.platform.settings import Settings

#: Recordings larger than this go up as multipart uploads, as Connect does with long calls
#: (S3 then notifies ObjectCreated:CompleteMultipartUpload instead of ObjectCreated:Put).
MULTIPART_THRESHOLD = 5 * 1024 * 1024
PART_SIZE = 5 * 1024 * 1024


@dataclass(frozen=True)
class PublishedScenario:
    scenario: Scenario
    expected: dict[str, str]
    deliveries: int
    recordings: int
    users: list[QmUser]


def upload_recording(aws: AwsClients, upload: RecordingUpload) -> None:
    bucket, key = split_location(upload.location)
    body = upload.wav()
    s3 = aws.s3
    if len(body) <= MULTIPART_THRESHOLD:
        retry_transient(lambda: s3.put_object(Bucket=bucket, Key=key, Body=body), "s3.put_object")
        return
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    parts: list[Any] = []
    for number, start in enumerate(range(0, len(body), PART_SIZE), start=1):
        part = s3.upload_part(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body[start : start + PART_SIZE],
        )
        parts.append({"ETag": part["ETag"], "PartNumber": number})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts})


def simulated_instance(settings: Settings) -> str:
    """The Connect instance of the simulated centre: the first the tenant check names, else the
    simulator's own (which ``demo`` and the test harnesses name in ``QM_INSTANCE_ARN``)."""
    accepted = settings.accepted_instances
    return sorted(accepted.arns)[0] if accepted.arns else DEFAULT_INSTANCE_ARN


def publish_scenario(
    settings: Settings,
    aws: AwsClients,
    *,
    contacts: int,
    seed: int | None = None,
    start: datetime | None = None,
    scenario: Scenario | None = None,
) -> PublishedScenario:
    if scenario is None:
        instance_arn = simulated_instance(settings)
        seed = seed if seed is not None else time.time_ns() % 2**31
        start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        scenario = build_scenario(
            seed=seed,
            contacts=contacts,
            start=start,
            instance_arn=instance_arn,
            bucket=settings.recordings_bucket,
        )
    users = scenario.users()
    directory = DynamoUserDirectory(aws.dynamodb, settings.users_table)
    for user in users:
        directory.put(user)
    pending: list[tuple[bytes, str]] = []
    recordings = 0

    def flush() -> None:
        if pending:
            put_records(aws.kinesis, settings.ctr_stream, pending)
            pending.clear()

    # The agents log on first (their desktops are told to record), then the contact centre runs.
    agent_key = {a.agent_id: a.username for a in scenario.agents}
    put_records(
        aws.kinesis,
        settings.agent_event_stream,
        [
            (e, agent_key.get(orjson.loads(e)["AgentARN"].rsplit("/", 1)[-1], "agent"))
            for e in scenario.agent_events
        ],
    )
    for event in scenario.events:
        if isinstance(event, RecordingUpload):
            flush()
            upload_recording(aws, event)
            recordings += 1
        else:
            pending.append((event, orjson.loads(event)["ContactId"]))
    flush()
    return PublishedScenario(scenario, dict(scenario.expected), len(scenario.deliveries), recordings, users)


@dataclass(frozen=True)
class ArchivedObject:
    key: str
    records: int
    hour: datetime


def firehose_key(prefix: str, delivered: datetime, index: int, *, stream: str, compressed: bool) -> str:
    """An object key as Kinesis Firehose names it: ``<prefix>YYYY/MM/DD/HH/<stream>-1-<time>-<id>``."""
    at = delivered.astimezone(UTC)
    name = f"{stream}-1-{at:%Y-%m-%d-%H-%M-%S}-{index:08d}-0000-4000-8000-000000000000"
    return f"{prefix}{at:%Y/%m/%d/%H}/{name}{'.gz' if compressed else ''}"


def archive_deliveries(
    aws: AwsClients,
    bucket: str,
    prefix: str,
    deliveries: list[bytes],
    *,
    per_object: int = 50,
    compress: bool = False,
    newline: bool = False,
    stream: str = "qm-ctr-firehose",
) -> list[ArchivedObject]:
    """Write CTR deliveries to S3 as Firehose does: batches of records concatenated (or one
    per line) in one object each, under the hour folder of the batch's delivery time (a
    minute after the newest ``LastUpdateTimestamp`` in it), optionally gzip-compressed."""
    import gzip

    from processor.core.ctr import parse_instant

    def delivered(payload: bytes) -> datetime:
        instant = parse_instant(orjson.loads(payload)["LastUpdateTimestamp"], "LastUpdateTimestamp")
        assert instant is not None
        return instant + timedelta(minutes=1)

    written: list[ArchivedObject] = []
    batch: list[bytes] = []
    hour: datetime | None = None

    def flush() -> None:
        if not batch or hour is None:
            return
        body = (b"\n" if newline else b"").join(batch) + (b"\n" if newline else b"")
        when = max(delivered(p) for p in batch)
        key = firehose_key(prefix, when, len(written), stream=stream, compressed=compress)
        data = gzip.compress(body) if compress else body
        retry_transient(lambda: aws.s3.put_object(Bucket=bucket, Key=key, Body=data), "s3.put_object")
        written.append(ArchivedObject(key, len(batch), hour))
        batch.clear()

    for payload in deliveries:
        at = delivered(payload).replace(minute=0, second=0, microsecond=0)
        if batch and (len(batch) >= per_object or at != hour):
            flush()
        hour = at
        batch.append(payload)
    flush()
    return written
