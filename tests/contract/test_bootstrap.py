"""bootstrap creates everything, twice in a row, and S3 -> SQS notifications really flow."""

from __future__ import annotations

from urllib.parse import unquote_plus

import orjson

from processor.ops.bootstrap import NOTIFICATION_ID, bootstrap


def test_idempotent_and_complete(settings, aws) -> None:
    first = bootstrap(settings, aws)
    assert first.existing == []
    second = bootstrap(settings, aws)
    assert second.created == []
    assert sorted(second.existing) == sorted(first.created)
    shards = aws.kinesis.describe_stream_summary(StreamName=settings.ctr_stream)["StreamDescriptionSummary"]
    assert shards["OpenShardCount"] == 2
    ttl = aws.dynamodb.describe_time_to_live(TableName=settings.join_table)["TimeToLiveDescription"]
    assert ttl["TimeToLiveStatus"] in ("ENABLED", "ENABLING") and ttl["AttributeName"] == "expires_at"
    url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
    attrs = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert orjson.loads(attrs["RedrivePolicy"])["deadLetterTargetArn"].endswith(
        f"{settings.recordings_queue}-dlq"
    )
    assert attrs["MessageRetentionPeriod"] == str(14 * 24 * 3600)


def test_notification_is_merged_with_existing_rules(settings, aws) -> None:
    aws.s3.create_bucket(Bucket=settings.recordings_bucket)
    other = aws.sqs.create_queue(QueueName=f"{settings.recordings_queue}-other")["QueueUrl"]
    other_arn = aws.sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.s3.put_bucket_notification_configuration(
        Bucket=settings.recordings_bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": "someone-else", "QueueArn": other_arn, "Events": ["s3:ObjectRemoved:*"]}
            ]
        },
    )
    bootstrap(settings, aws)
    config = aws.s3.get_bucket_notification_configuration(Bucket=settings.recordings_bucket)
    ids = {q["Id"] for q in config["QueueConfigurations"]}
    assert ids == {"someone-else", NOTIFICATION_ID}


def test_object_created_reaches_the_queue_url_encoded(settings, aws) -> None:
    bootstrap(settings, aws)
    url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
    key = "connect/demo/CallRecordings/2026/01/02/abc_20260102T10:05_UTC.wav"
    aws.s3.put_object(Bucket=settings.recordings_bucket, Key=key, Body=b"RIFF")
    bodies = []
    for _ in range(10):
        for message in aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        ):
            bodies.append(orjson.loads(message["Body"]))
        if any("Records" in b for b in bodies):
            break
    records = [r for b in bodies for r in b.get("Records", [])]
    assert records and records[0]["eventName"].startswith("ObjectCreated:")
    encoded = records[0]["s3"]["object"]["key"]
    # Keys arrive URL-encoded (S3 encodes ":" as %3A; the emulator also encodes "/").
    assert "%3A" in encoded
    assert unquote_plus(encoded) == key
