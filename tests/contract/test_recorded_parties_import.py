"""Recorded parties read once at import, through the service's own path on the emulator:
S3 -> SQS notification -> the recordings consumer (header read), the CTR batch through
``CtrIngest``, the contact stored, emitted, and listed by ``qm-ingest contacts list``."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
from typer.testing import CliRunner

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.app.ctr_path import CtrIngest
from processor.app.recording_events import RecordingEventConsumer
from processor.app.wiring import build_ingest, build_joiner, build_recordings_consumer
from processor.console.samples import stereo_wav
from processor.core.batch import StreamRecord
from processor.core.schemas import load_schema
from processor.entrypoints.cli import app
from processor.platform.exceptions import SourcePosition
from tests.contract.test_joiner import ctr, output_records
from tests.unit.test_recorded_parties import with_line_noise


class S3Requests:
    """Counts the S3 requests the service's clients send (botocore's own event hooks)."""

    def __init__(self, aws: AwsClients) -> None:
        self.by_operation: Counter[str] = Counter()
        aws.s3.meta.events.register("before-call.s3", self._count)

    def _count(self, model: Any, **_: Any) -> None:
        self.by_operation[model.name] += 1


def pipeline(settings, aws) -> tuple[CtrIngest, RecordingEventConsumer]:  # type: ignore[no-untyped-def]
    """The CTR processor's ingest and the recordings consumer, as ``qm-ingest run`` builds them."""
    ingest = build_ingest(settings, aws)
    consumer = build_recordings_consumer(settings, aws, build_joiner(settings, aws), wait_seconds=1)
    drain(consumer)  # the s3:TestEvent from bootstrap
    return ingest, consumer


def stored_doc(settings, aws, contact_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    stored = DynamoContactStore(aws.dynamodb, settings.contacts_table).load(contact_id)
    assert stored is not None, contact_id
    return stored.doc


def drain(consumer: RecordingEventConsumer, rounds: int = 5) -> None:
    for _ in range(rounds):
        if consumer.poll_once() == 0:
            return


def put_recording(aws, location: str, body: bytes) -> None:  # type: ignore[no-untyped-def]
    bucket, _, key = location.partition("/")
    aws.s3.put_object(Bucket=bucket, Key=key, Body=body)


def send_ctr(ingest: CtrIngest, settings, raw: bytes) -> None:  # type: ignore[no-untyped-def]
    position = SourcePosition("kinesis", settings.ctr_stream, "shardId-0", "1")
    result = ingest.process([StreamRecord(raw, position)])
    assert result.imported == 1 and result.quarantined == 0, result


def emitted_of(aws, settings, contact_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    found = [r for r in output_records(aws, settings.output_stream) if r["contact_id"] == contact_id]
    assert found, f"{contact_id} not on the output stream"
    return found[-1]


def listed_row(contact_id: str) -> list[str]:
    """The cells of ``contact_id``'s row in ``qm-ingest contacts list``."""
    result = CliRunner().invoke(app, ["contacts", "list"])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.output.splitlines() if "Parties" in line)
    row = next(line for line in result.output.splitlines() if contact_id in line)
    names = [c.strip() for c in header.split("┃")]
    cells = [c.strip() for c in row.split("│")]
    return [f"{n}={c}" for n, c in zip(names, cells, strict=False)]


def test_agent_only_recording_is_stored_emitted_and_listed_as_agent(bootstrapped, aws) -> None:
    ingest, consumer = pipeline(bootstrapped, aws)
    counted = S3Requests(aws)
    _, raw, location = ctr("rp-agent", bootstrapped, talk=20)
    # Recording first: the consumer reads it (header and opening), then the CTR comes. The
    # customer's channel carries a line's noise floor (-80 dBFS), no speech.
    put_recording(aws, location, with_line_noise(stereo_wav(20, customer=False, agent=True), 0))
    drain(consumer)
    send_ctr(ingest, bootstrapped, raw)
    doc = stored_doc(bootstrapped, aws, "rp-agent")
    assert doc["join_state"] == "joined" and doc["recorded_parties"] == "agent"
    emitted = emitted_of(aws, bootstrapped, "rp-agent")
    assert emitted["recorded_parties"] == "agent"
    assert emitted["call_duration_seconds"] == 20.0
    # A quiet channel in the opening costs one confirming read: two ranged GETs, no more.
    assert counted.by_operation["GetObject"] == 2
    assert "Parties=agent" in listed_row("rp-agent")
    as_json = CliRunner().invoke(app, ["contacts", "list", "--json"])
    docs = {d["contact_id"]: d for d in map(orjson.loads, as_json.output.splitlines())}
    assert docs["rp-agent"]["recorded_parties"] == "agent"


def test_both_parties_recording_ctr_first_is_both_from_the_header_read_alone(bootstrapped, aws) -> None:
    ingest, consumer = pipeline(bootstrapped, aws)
    counted = S3Requests(aws)
    _, raw, location = ctr("rp-both", bootstrapped, talk=20)
    send_ctr(ingest, bootstrapped, raw)  # CTR first: waiting for its recording
    assert stored_doc(bootstrapped, aws, "rp-both")["join_state"] == "waiting_for_recording"
    counted.by_operation.clear()  # (an old CTR looks for its recording itself: a 404 here)
    put_recording(aws, location, stereo_wav(20, customer=True, agent=True))
    drain(consumer)
    emitted = emitted_of(aws, bootstrapped, "rp-both")
    assert emitted["join_state"] == "joined" and emitted["recorded_parties"] == "both"
    assert counted.by_operation["GetObject"] == 1  # the header read: both channels live in the opening
    assert "Parties=both" in listed_row("rp-both")
    assert stored_doc(bootstrapped, aws, "rp-both")["recorded_parties"] == "both"


def test_a_digitally_silent_customer_channel_needs_only_the_header_read(bootstrapped, aws) -> None:
    ingest, consumer = pipeline(bootstrapped, aws)
    counted = S3Requests(aws)
    _, raw, location = ctr("rp-zero", bootstrapped, talk=20)
    put_recording(aws, location, stereo_wav(20, customer=False, agent=True))  # left channel all zeros
    drain(consumer)
    assert counted.by_operation["GetObject"] == 1
    send_ctr(ingest, bootstrapped, raw)
    assert emitted_of(aws, bootstrapped, "rp-zero")["recorded_parties"] == "agent"


def test_unreadable_and_mono_recordings_are_unknown_and_still_joined(bootstrapped, aws) -> None:
    from processor.core.wav import wav_header

    ingest, consumer = pipeline(bootstrapped, aws)
    mono = wav_header(channels=1, data_bytes=16000 * 20) + b"\x10\x20" * (8000 * 20)
    for contact_id, body in (("rp-garbage", b"not a wav file at all" * 5000), ("rp-mono", mono)):
        _, raw, location = ctr(contact_id, bootstrapped, talk=20)
        put_recording(aws, location, body)
        drain(consumer)
        send_ctr(ingest, bootstrapped, raw)
        emitted = emitted_of(aws, bootstrapped, contact_id)
        assert emitted["join_state"] == "joined", contact_id
        assert emitted["recorded_parties"] == "unknown", contact_id
        assert "Parties=unknown" in listed_row(contact_id)


def test_emitted_contacts_with_parties_match_the_schema(bootstrapped, aws) -> None:
    from jsonschema import Draft7Validator

    ingest, consumer = pipeline(bootstrapped, aws)
    _, raw, location = ctr("rp-schema", bootstrapped, talk=20)
    put_recording(aws, location, stereo_wav(20, customer=True, agent=False))
    drain(consumer)
    send_ctr(ingest, bootstrapped, raw)
    emitted = emitted_of(aws, bootstrapped, "rp-schema")
    assert emitted["recorded_parties"] == "customer"
    Draft7Validator(load_schema("qm-contact")).validate(emitted)


def test_a_recording_gone_before_its_confirming_read_is_unknown(bootstrapped, aws) -> None:
    """The header read found it; the confirming read finds it deleted (S3 answers NoSuchKey):
    the parties are unknown, the probe (and so the contact) goes on."""
    from processor.adapters.s3 import call_recordings
    from processor.adapters.s3.call_recordings import PROBE_READ
    from processor.core.recorded_parties import RecordedParties
    from processor.core.wav import read_wav_info

    _, _, location = ctr("rp-gone", bootstrapped, talk=20)
    bucket, _, key = location.partition("/")
    data = with_line_noise(stereo_wav(20, customer=False, agent=True), 0)
    first = data[:PROBE_READ]
    info = read_wav_info(lambda offset, length: data[offset : offset + length], len(data), first)

    def read(offset: int, length: int) -> bytes:
        response = aws.s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}")
        return bytes(response["Body"].read())

    report = call_recordings._parties(location, read, info, first)
    assert report.parties is RecordedParties.UNKNOWN
    assert "NoSuchKey" in (report.reason or "")
