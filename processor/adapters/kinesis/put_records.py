"""Writing to Kinesis streams: batched PutRecords that resends only the failed entries."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from processor.platform.retry import retry_transient

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

MAX_BATCH_RECORDS = 500
MAX_BATCH_BYTES = 5 * 1024 * 1024


def put_records(
    client: KinesisClient, stream: str, records: Sequence[tuple[bytes, str]], *, max_seconds: float = 120
) -> list[str]:
    """Put ``(data, partition_key)`` pairs in order; returns their sequence numbers.

    PutRecords may accept part of a batch (throttling): the failed entries are resent
    until all are in, so nothing is silently dropped.
    """
    sequence_numbers: list[str] = [""] * len(records)
    batches: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, (data, key) in enumerate(records):
        entry = len(data) + len(key.encode())
        if current and (len(current) == MAX_BATCH_RECORDS or size + entry > MAX_BATCH_BYTES):
            batches.append(current)
            current, size = [], 0
        current.append(i)
        size += entry
    if current:
        batches.append(current)
    for batch in batches:
        pending = batch
        attempt = 0
        while pending:
            entries: list[Any] = [{"Data": records[i][0], "PartitionKey": records[i][1]} for i in pending]
            response = retry_transient(
                lambda e=entries: client.put_records(StreamName=stream, Records=e),  # type: ignore[misc]
                "kinesis.put_records",
                max_seconds=max_seconds,
            )
            failed = []
            for i, result in zip(pending, response["Records"], strict=True):
                if "SequenceNumber" in result and not result.get("ErrorCode"):
                    sequence_numbers[i] = result["SequenceNumber"]
                else:
                    failed.append(i)
            pending = failed
            if pending:
                attempt += 1
                time.sleep(min(0.1 * 2**attempt, 5))
    return sequence_numbers
