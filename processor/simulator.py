"""``qm-ingest simulate``: publish a simulated contact centre (users, CTR stream, recordings in S3)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from processor.adapters.aws import AwsClients
from processor.adapters.kinesis import put_records
from processor.adapters.media import split_location
from processor.adapters.users import DynamoUserDirectory
from processor.core.users import QmUser
from processor.retry import retry_transient
from processor.settings import Settings
from processor.simulation import DEFAULT_INSTANCE_ARN, RecordingUpload, Scenario, build_scenario

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
        seed = seed if seed is not None else time.time_ns() % 2**31
        start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
        scenario = build_scenario(
            seed=seed,
            contacts=contacts,
            start=start,
            instance_arn=settings.instance_arn or DEFAULT_INSTANCE_ARN,
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
