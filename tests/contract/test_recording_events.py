"""The recordings queue as S3 really feeds it (the emulator's S3 -> SQS notifications)."""

from __future__ import annotations

import orjson

from processor.app.recording_events import RecordingEventConsumer
from processor.app.wiring import build_quarantine
from tests.contract.test_joiner import FakeClock, ctr, make_joiner, output_records, upload


def consumer_for(settings, aws, joiner) -> RecordingEventConsumer:
    url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
    dlq = aws.sqs.get_queue_url(QueueName=f"{settings.recordings_queue}-dlq")["QueueUrl"]
    return RecordingEventConsumer(
        sqs=aws.sqs,
        queue_url=url,
        dlq_url=dlq,
        queue_name=settings.recordings_queue,
        joiner=joiner,
        quarantine=build_quarantine(settings, aws),
        clock=joiner.clock,
        wait_seconds=1,
    )


def drain(consumer: RecordingEventConsumer, rounds: int = 5) -> None:
    for _ in range(rounds):
        if consumer.poll_once() == 0:
            return


def queue_depth(aws, url: str) -> int:
    attrs = aws.sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_notification_completes_the_join_and_is_deleted(bootstrapped, aws) -> None:
    joiner = make_joiner(bootstrapped, aws, FakeClock())
    consumer = consumer_for(bootstrapped, aws, joiner)
    drain(consumer)  # the s3:TestEvent from bootstrap
    record, raw, location = ctr("n-1", bootstrapped)
    joiner.on_ctr(record, raw)
    upload(aws, location, 42.0)
    drain(consumer)
    [emitted] = output_records(aws, bootstrapped.output_stream)
    assert emitted["join_state"] == "joined" and emitted["call_duration_seconds"] == 42.0
    assert consumer.stats.objects >= 1
    assert queue_depth(aws, consumer.queue_url) == 0


def test_multipart_recording_counts(bootstrapped, aws) -> None:
    from processor.devtools.publish_simulation import upload_recording
    from processor.devtools.simulated_centre import RecordingUpload

    joiner = make_joiner(bootstrapped, aws, FakeClock())
    consumer = consumer_for(bootstrapped, aws, joiner)
    record, raw, location = ctr("n-mp", bootstrapped, talk=200)
    joiner.on_ctr(record, raw)
    upload_recording(aws, RecordingUpload(location, 200.0))  # > 5 MiB: multipart
    drain(consumer)
    stored = joiner.contacts.load("n-mp")
    assert stored is not None and stored.doc["join_state"] == "joined"
    assert stored.doc["call_duration_seconds"] == 200.0


def test_bad_messages_are_quarantined_dead_lettered_and_deleted(bootstrapped, aws) -> None:
    joiner = make_joiner(bootstrapped, aws, FakeClock())
    consumer = consumer_for(bootstrapped, aws, joiner)
    drain(consumer)
    for body in ("{oops", orjson.dumps({"Records": [{"eventName": "x"}]}).decode()):
        aws.sqs.send_message(QueueUrl=consumer.queue_url, MessageBody=body)
    drain(consumer)
    assert consumer.stats.quarantined == 2
    assert queue_depth(aws, consumer.queue_url) == 0
    dlq = aws.sqs.receive_message(QueueUrl=consumer.dlq_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    assert sorted(m["Body"] for m in dlq.get("Messages", [])) == sorted(
        ["{oops", orjson.dumps({"Records": [{"eventName": "x"}]}).decode()]
    )
    reasons = sorted(e.reason for e in build_quarantine(bootstrapped, aws).list())
    assert reasons == ["bad_json", "schema"]
