"""End-to-end contacts/s on the embedded stack: CTRs on the stream -> real KCL daemon -> join ->
contacts table + output stream, against (a) a raw put + get of the same records on the
same emulator and (b) a naive consumer: one GetRecords loop, one DynamoDB write per record.

The service is started and warmed up first (the KCL's first start is not the point); the
figure is the time from the first put until every contact is final and emitted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from bench.common import emulator, line
from processor.adapters.aws import AwsClients
from processor.adapters.contacts import DynamoContactStore
from processor.adapters.kinesis import put_records
from processor.bootstrap import bootstrap
from processor.settings import Settings
from processor.simulation import build_scenario
from processor.simulator import upload_recording

CONTACTS = int(os.environ.get("QM_BENCH_CONTACTS", "1000"))
FAST = {
    "QM_KCL_LEASE_ASSIGNMENT_MS": "1000",
    "QM_KCL_SHARD_SYNC_MS": "5000",
    "QM_KCL_IDLE_BETWEEN_READS_MS": "200",
    "QM_KCL_PARENT_SHARD_POLL_MS": "1000",
    "QM_LOG_LEVEL": "WARNING",
}


def _read_all(aws: AwsClients, stream: str, count: int) -> float:
    started = time.perf_counter()
    got = 0
    for shard in aws.kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = aws.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = aws.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            got += len(page["Records"])
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    assert got >= count
    return time.perf_counter() - started


def _naive(aws: AwsClients, stream: str, table: str) -> float:
    """One GetRecords loop per shard and one put_item per record: no join, no checks."""
    started = time.perf_counter()
    for shard in aws.kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = aws.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = aws.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                ctr = orjson.loads(record["Data"])
                aws.dynamodb.put_item(
                    TableName=table,
                    Item={"contact_id": {"S": ctr["ContactId"]}, "doc": {"S": record["Data"].decode()}},
                )
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    return time.perf_counter() - started


def run() -> None:
    state = Path(tempfile.mkdtemp(prefix="qm-bench-pipeline-"))
    with emulator():
        os.environ.update({"QM_STATE_DIR": str(state), "QM_APPLICATION_NAME": "bench-app"})
        settings = Settings()
        aws = AwsClients(settings)
        bootstrap(settings, aws)
        scenario = build_scenario(
            seed=9,
            contacts=CONTACTS,
            start=datetime(2026, 2, 1, tzinfo=UTC),
            duplicate_rate=0,
            update_rate=0,
            missing_rate=0,
            max_talk_seconds=30,
        )
        # Recordings first (the HEAD path of the join), then the CTRs while the service runs.
        for event in scenario.events:
            if not isinstance(event, bytes):
                upload_recording(aws, event)
        env = {**os.environ, **FAST}
        log = open(state / "service.log", "wb")  # noqa: SIM115
        service = subprocess.Popen(
            [sys.executable, "-m", "processor", "run"], env=env, stdout=log, stderr=log
        )
        store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
        try:
            warm = build_scenario(seed=1, contacts=2, start=datetime(2026, 1, 1, tzinfo=UTC), missing_rate=0)
            for event in warm.events:
                if not isinstance(event, bytes):
                    upload_recording(aws, event)
            put_records(aws.kinesis, settings.ctr_stream, [(p, "w") for p in warm.deliveries])
            while not all(store.load(c) and store.load(c).view.state.final for c in warm.expected):  # type: ignore[union-attr]
                time.sleep(0.5)
            started = time.perf_counter()
            put_records(
                aws.kinesis, settings.ctr_stream, [(p, str(i)) for i, p in enumerate(scenario.deliveries)]
            )
            pending = set(scenario.expected)
            while pending:
                time.sleep(0.5)
                pending = {c for c in pending if not ((s := store.load(c)) and s.view.state.final)}
            ours = CONTACTS / (time.perf_counter() - started)
        finally:
            service.send_signal(signal.SIGTERM)
            service.wait(timeout=30)
            log.close()
        # Baselines on the same emulator with the same records.
        raw_stream = "bench-raw"
        aws.kinesis.create_stream(StreamName=raw_stream, ShardCount=settings.ctr_stream_shards)
        aws.kinesis.get_waiter("stream_exists").wait(StreamName=raw_stream)
        started = time.perf_counter()
        put_records(aws.kinesis, raw_stream, [(p, str(i)) for i, p in enumerate(scenario.deliveries)])
        _read_all(aws, raw_stream, CONTACTS)
        raw = CONTACTS / (time.perf_counter() - started)
        aws.dynamodb.create_table(
            TableName="bench-naive",
            KeySchema=[{"AttributeName": "contact_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "contact_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        naive = CONTACTS / _naive(aws, raw_stream, "bench-naive")
    print(f"{CONTACTS} contacts with their recordings, {settings.ctr_stream_shards} shards, one emulator")
    print(
        line(
            "qm-ingest run (KCL + join + emit), contacts/s",
            ours,
            "/s",
            "(a) raw put + get of the records",
            raw,
        )
    )
    print(
        line(
            "qm-ingest run (KCL + join + emit), contacts/s",
            ours,
            "/s",
            "(b) naive GetRecords + put_item",
            naive,
        )
    )
