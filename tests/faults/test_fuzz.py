"""Fuzzed input: hostile records interleaved with good ones, on the CTR stream and in the
recordings queue. Every bad one is quarantined with its reason, every good one imported,
and the processor never crashes or stalls.

The full scenario sends 10,000 hostile records and 1,000 hostile notifications through the
running service (the KCL daemon, its record processors, the queue consumers); the fast one
sends 2,000 and 200 through the same CTR path and queue consumer, in process.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import pytest

from processor.adapters.kinesis.put_records import put_records
from processor.core.batch import StreamRecord
from processor.devtools.publish_simulation import upload_recording
from processor.devtools.simulated_centre import DEFAULT_INSTANCE_ARN, RecordingUpload, Scenario
from processor.platform.exceptions import SourcePosition
from tests.e2e.test_operations import by_name, scrape
from tests.faults.fuzz import MAX_RECORD_BYTES, Hostile, notification_corpus, odd_but_valid, stream_corpus
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    contact_centre,
    expectation,
    judge,
    log_events,
    wait_audit_ok,
)
from tests.helpers import ServiceProcess

pytestmark = [pytest.mark.faults]


@pytest.fixture
def one_tenant(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the simulated instance is ours; the record size limit is below Kinesis's 1 MiB."""
    monkeypatch.setenv("QM_INSTANCE_ARN", DEFAULT_INSTANCE_ARN)
    monkeypatch.setenv("QM_MAX_RECORD_BYTES", str(MAX_RECORD_BYTES))


def interleave(scenario: Scenario, hostile: list[Hostile], rng: random.Random) -> list[Any]:
    """The scenario's events (good CTRs made odd, recordings) with the hostile records spread
    between them at random; the good events keep their order."""
    events: list[Any] = [
        e if isinstance(e, RecordingUpload) else odd_but_valid(_loads(e), rng) for e in scenario.events
    ]
    slots = sorted(rng.randrange(len(events) + 1) for _ in hostile)
    out: list[Any] = []
    h = 0
    for i, event in enumerate(events):
        while h < len(hostile) and slots[h] == i:
            out.append(hostile[h])
            h += 1
        out.append(event)
    out += hostile[h:]
    return out


def _loads(payload: bytes) -> dict[str, Any]:
    import orjson

    loaded: dict[str, Any] = orjson.loads(payload)
    return loaded


def send(aws: Any, settings: Any, events: list[Any], notifications: list[Hostile]) -> None:
    """CTRs on the stream (hostile ones with their own partition keys), recordings to S3, and the
    hostile notifications to the recordings queue, in batches, in this order."""
    pending: list[tuple[bytes, str]] = []

    def flush() -> None:
        if pending:
            put_records(aws.kinesis, settings.ctr_stream, pending)
            pending.clear()

    for event in events:
        if isinstance(event, RecordingUpload):
            flush()
            upload_recording(aws, event)
        elif isinstance(event, Hostile):
            pending.append((event.payload, event.key))
        else:
            pending.append((event, _loads(event)["ContactId"]))
        if len(pending) >= 500:
            flush()
    flush()
    queue_url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
    for start in range(0, len(notifications), 10):
        entries = [
            {"Id": str(i), "MessageBody": n.payload.decode()}
            for i, n in enumerate(notifications[start : start + 10])
        ]
        # SQS takes at most 256 KiB per batch: the large bodies go one by one.
        if sum(len(e["MessageBody"]) for e in entries) > 200_000:
            for entry in entries:
                aws.sqs.send_message(QueueUrl=queue_url, MessageBody=entry["MessageBody"])
        else:
            aws.sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)


def quarantine_expectation(stream: list[Hostile], notifications: list[Hostile]) -> dict[str, Any]:
    by_reason: dict[str, int] = {}
    for hostile in stream + notifications:
        by_reason[hostile.reason] = by_reason.get(hostile.reason, 0) + 1
    return {
        "total": len(stream) + len(notifications),
        "by_reason": by_reason,
        "by_source": {"kinesis": len(stream), "sqs": len(notifications)},
    }


def test_fuzzed_input_through_the_ctr_path_and_the_queue(
    one_tenant: None, bootstrapped, aws, tmp_path: Path, record_figures
) -> None:
    """2,000 hostile records and 200 hostile notifications through the real adapters, in process."""
    from processor.app.recording_events import RecordingEventConsumer
    from processor.app.wiring import build_joiner, build_quarantine

    started_at = time.monotonic()
    settings = bootstrapped.model_copy(update={"join_window_seconds": 2})
    rng = random.Random(131)
    centre = contact_centre(131, 80, settings.recordings_bucket)
    hostile = stream_corpus(list(centre.newest.values()), 2000, rng, DEFAULT_INSTANCE_ARN)
    notifications = notification_corpus(200, settings.recordings_bucket, rng)
    events = interleave(centre, hostile, rng)

    joiner = build_joiner(settings, aws, screen=False)
    from processor.app.ctr_path import CtrIngest

    ingest = CtrIngest(
        joiner=joiner,
        quarantine=build_quarantine(settings, aws),
        instances=settings.accepted_instances,
        max_record_bytes=settings.max_record_bytes,
    )
    queue_url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
    consumer = RecordingEventConsumer(
        sqs=aws.sqs,
        queue_url=queue_url,
        dlq_url=aws.sqs.get_queue_url(QueueName=f"{settings.recordings_queue}-dlq")["QueueUrl"],
        queue_name=settings.recordings_queue,
        joiner=joiner,
        quarantine=build_quarantine(settings, aws),
        clock=joiner.clock,
        wait_seconds=1,
    )
    send(aws, settings, [e for e in events if isinstance(e, RecordingUpload)], notifications)
    batch: list[StreamRecord] = []
    for sequence, event in enumerate(e for e in events if not isinstance(e, RecordingUpload)):
        data = event.payload if isinstance(event, Hostile) else event
        batch.append(
            StreamRecord(data, SourcePosition("kinesis", settings.ctr_stream, "shardId-0", str(sequence)))
        )
        if len(batch) == 500:
            ingest.process(batch)
            batch = []
    ingest.process(batch)
    while consumer.poll_once():
        pass
    time.sleep(2.5)
    joiner.sweep()  # the windows of recordings that never came close
    ingest.close()

    expect = expectation(centre, quarantined=quarantine_expectation(hostile, notifications))
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    assert consumer.stats.quarantined == len(notifications)
    record_figures(
        Figures(
            "fuzzed input, in process: 2,000 hostile CTRs + 200 hostile notifications",
            report,
            [],
            "every hostile record quarantined with its reason, every odd-but-valid contact imported",
            time.monotonic() - started_at,
        )
    )


@pytest.mark.slow
@pytest.mark.e2e
def test_fuzzed_input_through_the_service(
    one_tenant: None,
    bootstrapped,
    aws,
    tmp_path: Path,
    *,
    services: list[ServiceProcess],
    record_figures,
) -> None:
    """10,000 hostile records and 1,000 hostile notifications through the running service."""
    started_at = time.monotonic()
    settings = bootstrapped
    rng = random.Random(141)
    centre = contact_centre(141, 300, settings.recordings_bucket)
    hostile = stream_corpus(list(centre.newest.values()), 10_000, rng, DEFAULT_INSTANCE_ARN)
    notifications = notification_corpus(1000, settings.recordings_bucket, rng)
    events = interleave(centre, hostile, rng)
    log = tmp_path / "service.log"
    service = ServiceProcess(log, {**SERVICE_ENV, "QM_LOG_LEVEL": "WARNING"}).start()
    services.append(service)
    sent_at = time.monotonic()
    send(aws, settings, events, notifications)
    expect = expectation(centre, quarantined=quarantine_expectation(hostile, notifications))
    took = wait_audit_ok(settings, aws, expect, 600)
    metrics = scrape(service)
    assert service.stop() < 10
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    starts = by_name(metrics, "qm_kcl_daemon_starts_total")
    assert set(starts.values()) == {1.0}, f"a KCL daemon was restarted (a record processor crashed): {starts}"
    events_logged = log_events(log)
    assert not [e for e in events_logged if str(e.get("event", "")).startswith("batch failed")]
    assert "Traceback" not in log.read_text()
    rate = (len(hostile) + len(notifications)) / (time.monotonic() - sent_at)
    record_figures(
        Figures(
            f"fuzzed input through the service: {len(hostile):,} hostile CTRs + "
            f"{len(notifications):,} hostile notifications among {len(centre.expected)} contacts",
            report,
            [],
            f"no processor crash or restart; all in {took + (sent_at - started_at):.0f} s "
            f"({rate:.0f} hostile inputs/s end to end)",
            time.monotonic() - started_at,
        )
    )
