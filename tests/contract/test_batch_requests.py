"""How many AWS requests a contact costs, and how many request waves a batch waits for,
counted at botocore on the service's own clients against the emulator.

A contact with one recording costs at most 3 requests in all (its recording's header read,
and its share of the bulk reads and writes), whichever half comes first; a batch of CTRs
waits for a handful of waves however large it is.
"""

from __future__ import annotations

from collections.abc import Sequence

from bench.common import clean_contact_centre, clean_scenario, upload_headers
from bench.instruments import CountingAwsClients, RequestCounts
from processor.adapters.kinesis.output import OutputStream
from processor.app.recording_events import RecordingEventConsumer
from processor.app.wiring import build_ingest, build_joiner, build_recordings_consumer
from processor.core.batch import StreamRecord
from processor.platform.exceptions import SourcePosition

HOLD_S = 0.1
SINGLE_ITEM_WRITES = ("dynamodb.PutItem", "dynamodb.UpdateItem", "dynamodb.DeleteItem", "kinesis.PutRecord")


def batch(payloads: Sequence[bytes]) -> list[StreamRecord]:
    return [
        StreamRecord(p, SourcePosition("kinesis", "ctr", "shardId-0", str(i))) for i, p in enumerate(payloads)
    ]


def drain(consumer: RecordingEventConsumer) -> None:
    while consumer.poll_once():
        pass


def emitted(settings, aws) -> set[str]:  # type: ignore[no-untyped-def]
    return {r["contact_id"] for r in OutputStream(aws.kinesis, settings.output_stream).records()}


def setup(settings):  # type: ignore[no-untyped-def]
    aws = CountingAwsClients(settings)
    consumer = build_recordings_consumer(settings, aws, build_joiner(settings, aws), wait_seconds=0)
    drain(consumer)  # the bucket's test event
    return aws, build_ingest(settings, aws), consumer


def single_writes(counts: RequestCounts) -> dict[str, int]:
    return {op: n for op, n in counts.by_operation.items() if op in SINGLE_ITEM_WRITES}


def test_recording_first_costs_at_most_three_requests_a_contact(bootstrapped) -> None:
    aws, ingest, consumer = setup(bootstrapped)
    scenario = clean_contact_centre(aws, bootstrapped, seed=41, contacts=60)
    with aws.counter.window() as recordings:
        drain(consumer)
    with aws.counter.window() as ctrs:
        result = ingest.process(batch(scenario.deliveries))
    assert result.created == 60 and result.quarantined == 0
    assert emitted(bootstrapped, aws) == set(scenario.expected)
    total = recordings[0].requests + ctrs[0].requests
    assert total / 60 <= 3, (recordings[0].by_operation, ctrs[0].by_operation)
    # The CTR side reads the object halves the notifications wrote: no header read of its own.
    assert "s3.GetObject" not in ctrs[0].by_operation
    assert single_writes(ctrs[0]) == {} and single_writes(recordings[0]) == {}


def test_ctr_first_costs_at_most_three_requests_a_contact(bootstrapped) -> None:
    aws, ingest, consumer = setup(bootstrapped)
    scenario = clean_scenario(bootstrapped, seed=42, contacts=60, live=True)
    with aws.counter.window() as ctrs:
        result = ingest.process(batch(scenario.deliveries))
    assert result.created == 60
    upload_headers(aws, scenario)
    with aws.counter.window() as recordings:
        drain(consumer)
    assert emitted(bootstrapped, aws) == set(scenario.expected)
    total = recordings[0].requests + ctrs[0].requests
    assert total / 60 <= 3, (recordings[0].by_operation, ctrs[0].by_operation)
    assert single_writes(ctrs[0]) == {} and single_writes(recordings[0]) == {}


def test_a_batch_waits_for_the_same_few_waves_whatever_its_size(bootstrapped) -> None:
    aws, ingest, consumer = setup(bootstrapped)
    waves, trace = {}, {}
    for seed, size in ((43, 40), (44, 200)):
        scenario = clean_contact_centre(aws, bootstrapped, seed=seed, contacts=size)
        drain(consumer)
        # Held as a round trip would be, so that two requests sent side by side are one wave
        # however slowly a loaded machine schedules the second.
        with aws.counter.window(hold_seconds=HOLD_S) as got:
            assert ingest.process(batch(scenario.deliveries)).created == size
        waves[size] = got[0].waves
        trace[size] = got[0].wave_operations
    assert max(waves.values()) <= 6, (waves, trace)
    assert waves[200] <= waves[40] + 1, (waves, trace)
