"""The output stream: every final QM contact version, exactly once.

Kinesis has no idempotent put, so exactly-once is built from the contacts table's outbox
(:mod:`processor.adapters.dynamodb.contacts`) and a read-back:

1. the view is written with ``emit_state = pending`` (same conditional write as the view);
2. the emitter *claims* it (a lease, so two workers never publish it concurrently), notes
   the attempt time, puts the record, and marks it ``done``;
3. whoever finds a pending emission whose earlier attempt may have reached the stream
   (a crash between the put and ``done``) first reads the stream back from that attempt's
   time on the contact's shard and publishes only if the record is not there.

Each record carries ``emission_id = <contact_id>@<version>``; the partition key is the
contact id, so one contact's versions stay in order on one shard.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from mypy_boto3_kinesis import KinesisClient

#: Clock skew allowed between the worker that noted an attempt and the stream's arrival times.
READ_BACK_SKEW = timedelta(seconds=30)


def emission_id(contact_id: str, version: str) -> str:
    return f"{contact_id}@{version}"


@dataclass
class OutputStream:
    client: KinesisClient
    stream: str

    def publish(self, doc: dict[str, Any]) -> str:
        response = self.client.put_record(
            StreamName=self.stream, Data=orjson.dumps(doc), PartitionKey=doc["contact_id"]
        )
        return response["SequenceNumber"]

    def put_many(self, docs: Sequence[dict[str, Any]]) -> list[bool]:
        """One PutRecords for ``docs`` (at most 500 records and 5 MB: the caller's batch is cut
        to fit); True for each record the stream took. A False record is known not to be on
        the stream (its entry carries an error code) and may simply be put again; an exception
        means the answer is unknown (some may have landed): read back before putting again."""
        if not docs:
            return []
        response = self.client.put_records(
            StreamName=self.stream,
            Records=[{"Data": orjson.dumps(doc), "PartitionKey": doc["contact_id"]} for doc in docs],
        )
        return [not entry.get("ErrorCode") for entry in response["Records"]]

    def find(self, wanted: Mapping[str, str], since: datetime, timeout_s: float = 30.0) -> set[str]:
        """Which of ``wanted`` (emission id -> contact id) arrived on the stream since
        ``since``: each shard that holds one of the contacts is read once, for all of them.
        Raises :class:`TimeoutError` (transient) when a shard could not be read to its end."""
        shards = self._shards_of(wanted)
        found: set[str] = set()
        deadline = time.monotonic() + timeout_s
        for shard, ids in shards.items():
            needles = {eid: f'"emission_id":"{eid}"'.encode() for eid in ids}
            iterator: str | None = self.client.get_shard_iterator(
                StreamName=self.stream,
                ShardId=shard,
                ShardIteratorType="AT_TIMESTAMP",
                Timestamp=since - READ_BACK_SKEW,
            )["ShardIterator"]
            while iterator and needles:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read-back of {self.stream} did not reach the end of {shard}")
                page = self.client.get_records(ShardIterator=iterator, Limit=10000)
                for record in page["Records"]:
                    data = record["Data"]
                    for eid, needle in list(needles.items()):
                        if needle in data:
                            found.add(eid)
                            del needles[eid]
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return found

    def _shards_of(self, wanted: Mapping[str, str]) -> dict[str, set[str]]:
        """Shard id -> the emission ids whose contact hashes into that shard."""
        ranges: list[tuple[int, int, str]] = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            page = self.client.list_shards(**kwargs)
            for shard in page["Shards"]:
                low = int(shard["HashKeyRange"]["StartingHashKey"])
                high = int(shard["HashKeyRange"]["EndingHashKey"])
                ranges.append((low, high, shard["ShardId"]))
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        result: dict[str, set[str]] = {}
        for eid, contact_id in wanted.items():
            hashed = int(hashlib.md5(contact_id.encode()).hexdigest(), 16)  # noqa: S324 - Kinesis's own hashing
            for low, high, shard_id in ranges:
                if low <= hashed <= high:
                    result.setdefault(shard_id, set()).add(eid)
        return result

    def _shard_for(self, partition_key: str) -> list[str]:
        """The open or closed shards whose hash range holds ``partition_key``."""
        hashed = int(hashlib.md5(partition_key.encode()).hexdigest(), 16)  # noqa: S324 - Kinesis's own hashing
        shards = []
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        while True:
            page = self.client.list_shards(**kwargs)
            for shard in page["Shards"]:
                low = int(shard["HashKeyRange"]["StartingHashKey"])
                high = int(shard["HashKeyRange"]["EndingHashKey"])
                if low <= hashed <= high:
                    shards.append(shard["ShardId"])
            token = page.get("NextToken")
            if not token:
                return shards
            kwargs = {"NextToken": token}

    def contains(self, contact_id: str, emission: str, since: datetime, timeout_s: float = 30.0) -> bool:
        """Whether a record with ``emission`` arrived on the contact's shard since ``since``.
        Raises :class:`TimeoutError` (transient) when the shard could not be read to its end:
        "not found" must mean absent, never "not looked at"."""
        needle = f'"emission_id":"{emission}"'.encode()
        deadline = time.monotonic() + timeout_s
        for shard in self._shard_for(contact_id):
            iterator: str | None = self.client.get_shard_iterator(
                StreamName=self.stream,
                ShardId=shard,
                ShardIteratorType="AT_TIMESTAMP",
                Timestamp=since - READ_BACK_SKEW,
            )["ShardIterator"]
            while iterator:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"read-back of {self.stream} did not reach the end of {shard}")
                page = self.client.get_records(ShardIterator=iterator, Limit=1000)
                for record in page["Records"]:
                    if needle in record["Data"]:
                        return True
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
        return False

    def records(self, *, timeout_s: float = 120.0) -> Iterator[dict[str, Any]]:
        """Every record on the stream, shard by shard from the oldest (closed shards included).

        A shard is read until its end (closed) or until it is caught up. For audits and
        tests: it reads the whole retention period.
        """
        deadline = time.monotonic() + timeout_s
        kwargs: dict[str, Any] = {"StreamName": self.stream}
        shards: list[str] = []
        while True:
            listing = self.client.list_shards(**kwargs)
            shards += [shard["ShardId"] for shard in listing["Shards"]]
            token = listing.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        for shard in shards:
            iterator: str | None = self.client.get_shard_iterator(
                StreamName=self.stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            empty = 0
            while iterator:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading {self.stream} took longer than {timeout_s:.0f}s")
                page = self.client.get_records(ShardIterator=iterator, Limit=10000)
                for record in page["Records"]:
                    yield orjson.loads(record["Data"])
                if page["Records"]:
                    empty = 0
                else:
                    empty += 1
                    # Caught up; some emulators leave MillisBehindLatest out, so a few empty pages end it too.
                    if page.get("MillisBehindLatest", 0) == 0 or empty >= 3:
                        break
                iterator = page.get("NextShardIterator")
