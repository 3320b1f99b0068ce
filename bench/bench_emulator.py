"""Kinesis on the two emulators: moto (+hypercorn) against kinesis-mock, same records, same client.

Why moto serves Kinesis by default and kinesis-mock only the resharding scenarios.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import boto3

from bench.common import line
from processor.devtools.emulator import control

RECORDS = 3000
SIZE = 3 * 1024


def _client(endpoint: str):  # type: ignore[no-untyped-def]
    return boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "test"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "test"),
    )


def _measure(endpoint: str) -> tuple[float, float]:
    kinesis = _client(endpoint)
    kinesis.create_stream(StreamName="bench", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(
        StreamName="bench", WaiterConfig={"Delay": 0.2, "MaxAttempts": 100}
    )
    payload = os.urandom(SIZE // 2).hex().encode()
    started = time.perf_counter()
    for start in range(0, RECORDS, 500):
        batch = [{"Data": payload, "PartitionKey": str(i)} for i in range(start, min(start + 500, RECORDS))]
        response = kinesis.put_records(StreamName="bench", Records=batch)
        assert response["FailedRecordCount"] == 0
    put_rate = RECORDS / (time.perf_counter() - started)
    shard = kinesis.list_shards(StreamName="bench")["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(
        StreamName="bench", ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    got = 0
    started = time.perf_counter()
    while got < RECORDS:
        response = kinesis.get_records(ShardIterator=iterator, Limit=1000)
        got += len(response["Records"])
        iterator = response["NextShardIterator"]
    get_rate = RECORDS / (time.perf_counter() - started)
    return put_rate, get_rate


def run() -> None:
    state = Path(tempfile.mkdtemp(prefix="qm-bench-emu-"))
    moto_port, mock_port = control.free_port(), control.free_port()
    control.up(moto_port, state)
    try:
        moto_put, moto_get = _measure(f"http://127.0.0.1:{moto_port}")
    finally:
        control.down(moto_port, state)
    try:
        control.up_kinesis_mock(mock_port, state)
    except RuntimeError as exc:
        print(f"kinesis-mock not available: {exc}")
        return
    try:
        mock_put, mock_get = _measure(f"http://127.0.0.1:{mock_port}")
    finally:
        control.down(mock_port, state)
    print(f"{RECORDS} records of {SIZE} bytes, 1 shard, PutRecords batches of 500, GetRecords limit 1000")
    print(line("kinesis-mock PutRecords", mock_put, "rec/s", "moto+hypercorn PutRecords", moto_put))
    print(line("kinesis-mock GetRecords", mock_get, "rec/s", "moto+hypercorn GetRecords", moto_get))
