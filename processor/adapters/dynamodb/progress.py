"""How far the CTR stream is consumed, per shard: the basis of segment release.

After each durable batch (and each empty poll, which the KCL also delivers), a shard's
record processor notes ``consumed_until = now - MillisBehindLatest``: every record written
to the shard before that instant has been handled and checkpointed. The stream is
consumed up to the minimum over its open shards; a shard without a note (no processor yet,
or a dead one whose note stops moving) holds everything back, which is the safe side.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from processor.core.ctr import format_instant

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient

NOTE_EVERY_S = 5.0


def _instant(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class ShardProgress:
    def __init__(self, ddb: DynamoDBClient, table: str, application: str) -> None:
        self._ddb = ddb
        self._table = table
        self._application = application
        self._last_note: dict[str, float] = {}

    def _key(self, shard_id: str) -> dict[str, Any]:
        return {"pk": {"S": f"progress#{self._application}#{shard_id}"}}

    def note(self, shard_id: str, millis_behind_latest: int | None, now: datetime) -> None:
        """Record progress (at most every few seconds per shard; never backwards)."""
        if millis_behind_latest is None:
            return
        tick = time.monotonic()
        if tick - self._last_note.get(shard_id, 0.0) < NOTE_EVERY_S:
            return
        consumed = format_instant(now - timedelta(milliseconds=max(millis_behind_latest, 0)))
        from botocore.exceptions import ClientError

        try:
            self._ddb.update_item(
                TableName=self._table,
                Key=self._key(shard_id),
                UpdateExpression="SET consumed_until = :c, noted_at = :n",
                ConditionExpression="attribute_not_exists(consumed_until) OR consumed_until < :c",
                ExpressionAttributeValues={":c": {"S": consumed}, ":n": {"S": format_instant(now)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
        self._last_note[shard_id] = tick

    def forget(self, shard_id: str) -> None:
        """A shard that ended (resharding) no longer holds the stream back."""
        self._ddb.delete_item(TableName=self._table, Key=self._key(shard_id))

    def consumed_until(self, kinesis: KinesisClient, stream: str) -> datetime | None:
        shards: list[str] = []
        kwargs: dict[str, Any] = {"StreamName": stream, "ShardFilter": {"Type": "AT_LATEST"}}
        while True:
            page = kinesis.list_shards(**kwargs)
            shards += [
                s["ShardId"]
                for s in page["Shards"]
                if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
            ]
            token = page.get("NextToken")
            if not token:
                break
            kwargs = {"NextToken": token}
        if not shards:
            return None
        values = []
        for shard in shards:
            item = self._ddb.get_item(TableName=self._table, Key=self._key(shard), ConsistentRead=True).get(
                "Item"
            )
            if not item:
                return None
            values.append(_instant(item["consumed_until"]["S"]))
        return min(values).astimezone(UTC)
