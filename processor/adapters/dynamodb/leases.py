"""The KCL application's lease table: read the leases, move a checkpoint back.

Item format (KCL 3.x ``DynamoDBLeaseSerializer``): ``leaseKey`` (the shard id),
``leaseOwner`` (worker id), ``leaseCounter`` (every renewal, take and checkpoint is
conditional on it), ``checkpoint`` + ``checkpointSubSequenceNumber``,
``pendingCheckpoint*`` (a two-phase checkpoint in progress), ``checkpointOwner`` (set
during a graceful hand-off between workers), ``ownerSwitchesSinceCheckpoint``.

Moving a checkpoint is one conditional ``UpdateItem``, conditional on the counter and
checkpoint just read and on no hand-off under way. It also removes ``leaseOwner`` and
increments ``leaseCounter``, as the KCL's own ``evictLease`` and ``assignLease`` do: a
worker still holding the lease fails its next renewal (an owner that matches and a
counter one higher would pass the KCL's "spurious renewal failure" check, which is why
the owner goes), its checkpoint attempts fail on the counter, and the leader's lease
assignment gives the lease to a worker that starts from the new checkpoint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from processor.core.checkpoints import Checkpoint, LeaseState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class KclLeaseTable:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self.table = table

    def exists(self) -> bool:
        try:
            self._ddb.describe_table(TableName=self.table)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return False
            raise
        return True

    def read(self) -> dict[str, LeaseState]:
        """Every shard lease (consistent read), by shard id."""
        leases: dict[str, LeaseState] = {}
        kwargs: dict[str, Any] = {"TableName": self.table, "ConsistentRead": True}
        while True:
            page = self._ddb.scan(**kwargs)
            for item in page.get("Items", []):
                lease = _lease(item)
                if lease is not None:
                    leases[lease.shard_id] = lease
            if "LastEvaluatedKey" not in page:
                return leases
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def move(self, lease: LeaseState, target: Checkpoint) -> bool:
        """Set the checkpoint of ``lease`` to ``target`` if the lease is unchanged since it
        was read (and release it, see the module). False: it changed; read it again."""
        try:
            self._ddb.update_item(
                TableName=self.table,
                Key={"leaseKey": {"S": lease.shard_id}},
                UpdateExpression=(
                    "SET #cp = :cp, checkpointSubSequenceNumber = :sub, ownerSwitchesSinceCheckpoint = :zero "
                    "ADD leaseCounter :one "
                    "REMOVE leaseOwner, pendingCheckpoint, pendingCheckpointSubSequenceNumber, "
                    "pendingCheckpointState"
                ),
                ConditionExpression=(
                    "leaseCounter = :counter AND #cp = :old AND attribute_not_exists(checkpointOwner)"
                ),
                ExpressionAttributeNames={"#cp": "checkpoint"},
                ExpressionAttributeValues={
                    ":cp": {"S": target.sequence_number},
                    ":sub": {"N": str(target.sub_sequence_number)},
                    ":zero": {"N": "0"},
                    ":one": {"N": "1"},
                    ":counter": {"N": str(lease.counter)},
                    ":old": {"S": lease.checkpoint.sequence_number},
                },
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _lease(item: dict[str, Any]) -> LeaseState | None:
    key = item.get("leaseKey", {}).get("S")
    checkpoint = item.get("checkpoint", {}).get("S")
    if not key or not checkpoint:
        return None  # not a shard lease (KCL multi-stream tables hold other entities too)
    return LeaseState(
        shard_id=key,
        checkpoint=Checkpoint(checkpoint, int(item.get("checkpointSubSequenceNumber", {}).get("N", "0"))),
        owner=item.get("leaseOwner", {}).get("S"),
        counter=int(item.get("leaseCounter", {}).get("N", "0")),
        checkpoint_owner=item.get("checkpointOwner", {}).get("S"),
    )
