"""The Firehose archive as a CTR source, on the emulator: backfill (date pruning, cursor,
corrupt bytes quarantined with key and offset), follow mode through the real S3 -> SQS
notification, the same contact through the archive and the stream, and reconciliation."""

from __future__ import annotations

import gzip
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.adapters.s3.archive import list_archive
from processor.app.wiring import build_ingest, build_quarantine
from processor.core.archive_layout import ArchiveLocation, parse_date
from processor.core.batch import StreamRecord
from processor.devtools.publish_simulation import archive_deliveries, firehose_key, upload_recording
from processor.devtools.simulated_centre import RecordingUpload, build_scenario
from processor.ops.backfill import (
    ArchiveEventConsumer,
    build_importer,
    reconcile,
    run_backfill,
)
from processor.platform.exceptions import SourcePosition
from tests.contract.test_joiner import output_records

PREFIX = "connect/ctr/"
DAY = datetime(2026, 4, 2, 8, tzinfo=UTC)


def scenario(seed: int, contacts: int, settings, start: datetime = DAY):
    return build_scenario(
        seed=seed,
        bucket=settings.recordings_bucket,
        contacts=contacts,
        start=start,
        missing_rate=0.0,
        duplicate_rate=0.2,
        update_rate=0.3,
        max_talk_seconds=15,
    )


def upload_recordings(aws, sc) -> None:
    """Recordings first: every contact joins (and is emitted) as soon as its CTR arrives."""
    for event in sc.events:
        if isinstance(event, RecordingUpload):
            upload_recording(aws, event)


def contacts(aws, settings) -> dict[str, str]:
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    return {c.contact_id: c.doc["last_update"] for c in store.scan()}


@pytest.fixture
def importer(bootstrapped, aws):
    ingest = build_ingest(bootstrapped, aws)
    yield build_importer(bootstrapped, aws, ingest)
    ingest.close()


def test_backfill_imports_every_layout_quarantines_corrupt_bytes_and_resumes(
    bootstrapped, aws, importer
) -> None:
    settings = bootstrapped
    bucket = settings.archive_bucket
    first = scenario(21, 40, settings)
    upload_recordings(aws, first)
    plain = archive_deliveries(aws, bucket, PREFIX, first.deliveries[:30], per_object=7)
    zipped = archive_deliveries(
        aws, bucket, PREFIX, first.deliveries[30:], per_object=9, compress=True, newline=True
    )
    # One more object with a record cut short in the middle, gzip, newline-delimited.
    extra_sc = scenario(22, 3, settings, datetime(2026, 4, 2, 11, tzinfo=UTC))
    upload_recordings(aws, extra_sc)
    extra = extra_sc.deliveries[:3]
    damaged = extra[1][:200]
    content = extra[0] + b"\n" + damaged + b"\n" + extra[2] + b"\n"
    bad_key = firehose_key(PREFIX, datetime(2026, 4, 2, 11, 30, tzinfo=UTC), 99, stream="s", compressed=True)
    aws.s3.put_object(Bucket=bucket, Key=bad_key, Body=gzip.compress(content))
    # Not Firehose output: never read.
    aws.s3.put_object(Bucket=bucket, Key=f"{PREFIX}processing-failed/2026/04/02/08/x", Body=b"{nope")

    objects = list_archive(aws.s3, bucket, PREFIX, None, None)
    assert len(objects) == len(plain) + len(zipped) + 1
    report = run_backfill(importer, objects, progress=False)
    assert report.failed_objects == []
    assert report.imported_objects == len(objects) and report.skipped == 0
    assert report.quarantined == 1

    want = {**first.expected}
    for payload in (extra[0], extra[2]):
        ctr = orjson.loads(payload)
        want[ctr["ContactId"]] = parse_date(ctr["LastUpdateTimestamp"]).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert contacts(aws, settings) == want
    entries = list(DynamoQuarantine(aws.dynamodb, settings.quarantine_table).list())
    assert len(entries) == 1
    assert entries[0].reason == "corrupt_record"
    assert entries[0].position["object_key"] == bad_key
    assert entries[0].position["byte_offset"] == len(extra[0]) + 1
    assert entries[0].payload == damaged

    emitted = output_records(aws, settings.output_stream)
    assert max(Counter((r["contact_id"], r["version"]) for r in emitted).values()) == 1

    # A second run finds everything in the cursor: nothing read, nothing written.
    again = run_backfill(importer, objects, progress=False)
    assert (again.skipped, again.imported_objects, again.records) == (len(objects), 0, 0)
    assert len(output_records(aws, settings.output_stream)) == len(emitted)

    # An object replaced (new ETag) is imported again; a changed CTR in it updates the contact.
    cid = next(iter(first.expected))
    newer = dict(first.newest[cid])
    newer["LastUpdateTimestamp"] = "2026-04-03T00:00:00Z"
    aws.s3.put_object(Bucket=bucket, Key=plain[0].key, Body=orjson.dumps(newer))
    third = run_backfill(importer, list_archive(aws.s3, bucket, PREFIX, None, None), progress=False)
    assert third.imported_objects == 1 and third.imported == 1
    assert contacts(aws, settings)[cid] == "2026-04-03T00:00:00.000Z"


def test_date_bounds_prune_the_listing(bootstrapped, aws) -> None:
    bucket = bootstrapped.archive_bucket
    for day, hour in ((1, 23), (2, 0), (2, 5), (2, 23), (3, 0), (4, 12)):
        when = datetime(2026, 4, day, hour, 10, tzinfo=UTC)
        aws.s3.put_object(
            Bucket=bucket, Key=firehose_key(PREFIX, when, hour, stream="s", compressed=False), Body=b"{}"
        )
    listed = list_archive(
        aws.s3, bucket, PREFIX, parse_date("2026-04-02"), parse_date("2026-04-02", end=True)
    )
    assert [(o.hour.day, o.hour.hour) for o in listed if o.hour] == [(2, 0), (2, 5), (2, 23)]
    listed = list_archive(
        aws.s3, bucket, PREFIX, parse_date("2026-04-01T23:30:00Z"), parse_date("2026-04-02T05:00:00Z")
    )
    assert [(o.hour.day, o.hour.hour) for o in listed if o.hour] == [(1, 23), (2, 0)]


def test_same_contact_through_the_stream_and_the_archive_is_emitted_once_per_version(
    bootstrapped, aws, importer
) -> None:
    """Versions arrive by both ways in every order: each version is emitted once, the
    newest wins, an older version from the archive after a newer one from the stream
    changes nothing."""
    settings = bootstrapped
    sc = scenario(23, 30, settings)
    upload_recordings(aws, sc)
    ingest = build_ingest(settings, aws)
    try:
        half = len(sc.deliveries) // 2
        position = SourcePosition("kinesis", settings.ctr_stream, "shardId-000000000000")
        ingest.process([StreamRecord(p, position) for p in sc.deliveries[half:]])  # the stream first...
        archive_deliveries(aws, settings.archive_bucket, PREFIX, sc.deliveries, per_object=8)
        objects = list_archive(aws.s3, settings.archive_bucket, PREFIX, None, None)
        run_backfill(importer, objects, progress=False)  # ...then the whole archive...
        ingest.process([StreamRecord(p, position) for p in sc.deliveries])  # ...then the stream again
    finally:
        ingest.close()
    assert contacts(aws, settings) == sc.expected
    emitted = output_records(aws, settings.output_stream)
    per_version = Counter((r["contact_id"], r["last_update"]) for r in emitted)
    assert max(per_version.values()) == 1
    newest = {}
    for record in emitted:
        newest[record["contact_id"]] = record["last_update"]
    assert newest == sc.expected


def test_follow_mode_imports_new_objects_from_notifications(bootstrapped, aws, importer) -> None:
    settings = bootstrapped
    sqs = aws.sqs
    url = sqs.get_queue_url(QueueName=settings.archive_queue)["QueueUrl"]
    dlq = sqs.get_queue_url(QueueName=f"{settings.archive_queue}-dlq")["QueueUrl"]
    consumer = ArchiveEventConsumer(
        sqs=sqs,
        queue_url=url,
        dlq_url=dlq,
        queue_name=settings.archive_queue,
        importer=importer,
        quarantine=build_quarantine(settings, aws),
        prefix=settings.archive_prefix,
        bucket=settings.archive_bucket,
        wait_seconds=1,
    )
    sc = scenario(24, 12, settings)
    upload_recordings(aws, sc)
    written = archive_deliveries(aws, settings.archive_bucket, "", sc.deliveries, per_object=5, compress=True)
    aws.s3.put_object(Bucket=settings.archive_bucket, Key="README.txt", Body=b"not an archive object")
    for _ in range(20):
        if consumer.poll_once() == 0 and consumer.stats.objects == len(written):
            break
    assert consumer.stats.objects == len(written)
    assert consumer.stats.ignored_keys >= 1
    assert contacts(aws, settings) == sc.expected
    # A repeated notification (S3 delivers at least once) is skipped by the cursor.
    again = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "s3": {
                    "bucket": {"name": settings.archive_bucket},
                    "object": {"key": written[0].key.replace(":", "%3A")},
                },
            }
        ]
    }
    sqs.send_message(QueueUrl=url, MessageBody=orjson.dumps(again).decode())
    sqs.send_message(QueueUrl=url, MessageBody="not a notification")
    for _ in range(5):
        consumer.poll_once()
    assert consumer.stats.skipped == 1
    assert consumer.stats.quarantined == 1
    assert (
        sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
        == "0"
    )


def test_reconcile_reports_missing_stale_and_extra_and_fix_imports_them(bootstrapped, aws, importer) -> None:
    settings = bootstrapped
    sc = scenario(25, 30, settings, datetime(2026, 4, 5, 9, tzinfo=UTC))
    upload_recordings(aws, sc)
    written = archive_deliveries(aws, settings.archive_bucket, PREFIX, sc.deliveries, per_object=6)
    objects = list_archive(aws.s3, settings.archive_bucket, PREFIX, None, None)
    # Import all but the last object; one contact of the last object only in an older version
    # (stale), and one imported contact that the archive does not hold (extra).
    run_backfill(importer, objects[:-1], progress=False)
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    in_last = [
        orjson.loads(p) for p in sc.deliveries if orjson.loads(p)["ContactId"] not in contacts(aws, settings)
    ]
    stale = dict(in_last[0])
    stale_id = stale["ContactId"]
    stale["LastUpdateTimestamp"] = "2026-04-05T00:00:01Z"
    ghost = dict(in_last[0])
    ghost["ContactId"] = "00000000-0000-4000-8000-00000000beef"
    ingest = build_ingest(settings, aws)
    position = SourcePosition("kinesis", settings.ctr_stream)
    ingest.process([StreamRecord(orjson.dumps(c), position) for c in (stale, ghost)])
    ingest.close()
    missing = set(sc.expected) - set(contacts(aws, settings))

    location = ArchiveLocation(settings.archive_bucket, PREFIX)
    since, until = parse_date("2026-04-05"), parse_date("2026-04-05", end=True)
    result = reconcile(settings, aws, location, since, until, progress=False)
    report = result.report
    assert {v.contact_id for v in report.missing} == missing and missing
    assert [v.contact_id for v, _ in report.stale] == [stale_id]
    assert [cid for cid, _ in report.extra] == [ghost["ContactId"]]
    assert result.objects == len(written)

    fixed = reconcile(settings, aws, location, since, until, progress=False, fix=True, importer=importer)
    assert fixed.fixed is not None and fixed.fixed.imported >= len(missing)
    after = reconcile(settings, aws, location, since, until, progress=False).report
    assert not after.missing and not after.stale
    assert [cid for cid, _ in after.extra] == [ghost["ContactId"]]
    assert contacts(aws, settings)[stale_id] == sc.expected[stale_id]
    assert store.load(stale_id) is not None
