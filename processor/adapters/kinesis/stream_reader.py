"""Reading one Kinesis shard directly (not through the KCL): for one-off re-imports, dry
runs and measuring a replay range.

Paced to the per-shard read limits of real Kinesis (5 GetRecords calls a second; the 2
MB/s is shared with every other reader of the shard): throttling is retried with backoff
by :func:`processor.platform.retry.retry_transient`, an expired iterator is renewed after the last
record read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from queue import Full, Queue
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from processor.core.checkpoints import AT_TIMESTAMP, LATEST, SHARD_END, TRIM_HORIZON, Checkpoint
from processor.platform.retry import retry_transient

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

#: Real Kinesis allows 5 GetRecords a second per shard.
MIN_CALL_INTERVAL = 0.2
MAX_RECORDS_PER_CALL = 10_000


@dataclass(frozen=True, slots=True)
class StartAt:
    """A shard iterator type and its argument."""

    kind: str  # TRIM_HORIZON, AT_TIMESTAMP, AT_SEQUENCE_NUMBER, AFTER_SEQUENCE_NUMBER
    timestamp: datetime | None = None
    sequence_number: str | None = None

    def request(self) -> dict[str, Any]:
        args: dict[str, Any] = {"ShardIteratorType": self.kind}
        if self.timestamp is not None:
            args["Timestamp"] = self.timestamp
        if self.sequence_number is not None:
            args["StartingSequenceNumber"] = self.sequence_number
        return args


def start_after(checkpoint: Checkpoint) -> StartAt | None:
    """Where a KCL consumer resuming from ``checkpoint`` reads next (None: nothing left).

    ``AT_TIMESTAMP`` carries no instant in a lease: read from the shard's start."""
    if checkpoint.sequence_number in (LATEST, SHARD_END):
        return None
    if checkpoint.sequence_number in (TRIM_HORIZON, AT_TIMESTAMP):
        return StartAt("TRIM_HORIZON")
    if checkpoint.sub_sequence_number < 0:
        return StartAt("AT_SEQUENCE_NUMBER", sequence_number=checkpoint.sequence_number)
    return StartAt("AFTER_SEQUENCE_NUMBER", sequence_number=checkpoint.sequence_number)


@dataclass(frozen=True, slots=True)
class Page:
    records: list[dict[str, Any]]  # boto3 records: Data, SequenceNumber, ApproximateArrivalTimestamp, ...
    millis_behind: int
    shard_end: bool

    @property
    def bytes(self) -> int:
        return sum(len(r["Data"]) for r in self.records)


class ShardReader:
    def __init__(
        self,
        kinesis: KinesisClient,
        stream: str,
        shard_id: str,
        start: StartAt,
        *,
        limit: int = MAX_RECORDS_PER_CALL,
        min_interval: float = MIN_CALL_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._kinesis = kinesis
        self.stream = stream
        self.shard_id = shard_id
        self._start = start
        self._limit = limit
        self._min_interval = min_interval
        self._clock = clock
        self._sleep = sleep
        self.last_sequence_number: str | None = None

    def _iterator(self) -> str:
        start = (
            StartAt("AFTER_SEQUENCE_NUMBER", sequence_number=self.last_sequence_number)
            if self.last_sequence_number
            else self._start
        )
        response = retry_transient(
            lambda: self._kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=self.shard_id, **start.request()
            ),
            "kinesis.get_shard_iterator",
        )
        return response["ShardIterator"]

    def _get_records(self, iterator: str) -> Any:
        return retry_transient(
            lambda: self._kinesis.get_records(ShardIterator=iterator, Limit=self._limit),
            "kinesis.get_records",
        )

    def pages(self, *, stop: Callable[[], bool] | None = None) -> Iterator[Page]:
        """Pages from the start until the reader has caught up with the shard's tip (an empty
        page with ``MillisBehindLatest`` 0) or reached the end of a closed shard."""
        iterator: str | None = self._iterator()
        last_call = 0.0
        while iterator is not None:
            if stop is not None and stop():
                return
            wait = self._min_interval - (self._clock() - last_call)
            if wait > 0:
                self._sleep(wait)
            last_call = self._clock()
            try:
                response = self._get_records(iterator)
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ExpiredIteratorException":
                    raise
                iterator = self._iterator()
                continue
            records: list[dict[str, Any]] = [dict(r) for r in response.get("Records", [])]
            if records:
                self.last_sequence_number = records[-1]["SequenceNumber"]
            iterator = response.get("NextShardIterator")
            behind = int(response.get("MillisBehindLatest", 0) or 0)
            yield Page(records, behind, iterator is None)
            if not records and behind == 0:
                return


def read_ahead(pages: Iterator[Page], depth: int = 2) -> Iterator[Page]:
    """``pages`` read on a thread of their own, up to ``depth`` pages ahead of the consumer:
    the next GetRecords runs while the current page is imported. An error of the reader is
    raised to the consumer at the point it happened; a consumer that stops early stops it."""
    queue: Queue[Page | BaseException | None] = Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            for page in pages:
                while not stop.is_set():
                    try:
                        queue.put(page, timeout=0.5)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put(None)
        except BaseException as exc:
            queue.put(exc)

    reader = threading.Thread(target=read, name="read-ahead", daemon=True)
    reader.start()
    try:
        while True:
            item = queue.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def first_sequence_at(kinesis: KinesisClient, stream: str, shard_id: str, at: datetime) -> str | None:
    """The sequence number of the shard's first record at or after ``at`` (None: none yet)."""
    reader = ShardReader(kinesis, stream, shard_id, StartAt("AT_TIMESTAMP", timestamp=at), limit=1)
    for page in reader.pages():
        if page.records:
            return str(page.records[0]["SequenceNumber"])
    return None


def list_shard_ids(kinesis: KinesisClient, stream: str) -> list[str]:
    ids: list[str] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    while True:
        page = _list_shards(kinesis, kwargs)
        ids += [s["ShardId"] for s in page["Shards"]]
        token = page.get("NextToken")
        if not token:
            return ids
        kwargs = {"NextToken": token}


def _list_shards(kinesis: KinesisClient, kwargs: dict[str, Any]) -> Any:
    return retry_transient(lambda: kinesis.list_shards(**kwargs), "kinesis.list_shards")
