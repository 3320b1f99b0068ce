"""``qm-ingest users sync``: QM users from Amazon Connect (``ListUsers`` + ``DescribeUser``).

The embedded emulator (moto 5.2.5) serves Amazon Connect instances but not their users:
``ListUsers``/``DescribeUser`` are not implemented there, so this path is exercised in
tests against botocore's own request/response validation (``botocore.stub.Stubber``) with
response shapes from the Amazon Connect API reference, while the users table is the real
emulator. Against AWS it runs as is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from processor.adapters.dynamodb.users_table import DynamoUserAdmin
from processor.core.connect_users import (
    ConnectUserSummary,
    SyncOutcome,
    gone_users,
    parse_described_user,
    parse_user_summaries,
)
from processor.platform.exceptions import InvalidInput
from processor.platform.logs import get_logger

log = get_logger("processor.app.users_sync")

SYNC_STATE_KEY = "users_sync"
#: ListUsers pages of the API's maximum size: fewest calls for large centres.
PAGE_SIZE = 1000


class ConnectUserSource(Protocol):
    def list_users(self, instance_id: str) -> Iterator[dict[str, Any]]:
        """Every ``ListUsers`` response page."""
        ...

    def describe_user(self, instance_id: str, user_id: str) -> dict[str, Any]: ...


class BotoConnectUsers:
    """The Amazon Connect API through a boto3 ``connect`` client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def list_users(self, instance_id: str) -> Iterator[dict[str, Any]]:
        paginator = self._client.get_paginator("list_users")
        for page in paginator.paginate(InstanceId=instance_id, PaginationConfig={"PageSize": PAGE_SIZE}):
            yield dict(page)

    def describe_user(self, instance_id: str, user_id: str) -> dict[str, Any]:
        return dict(self._client.describe_user(InstanceId=instance_id, UserId=user_id))


def instance_id_from_arn(value: str) -> str:
    """``arn:aws:connect:region:account:instance/<id>`` -> ``<id>`` (an id is returned as is)."""
    return value.rsplit("instance/", 1)[-1].strip("/")


@dataclass(frozen=True)
class SyncState:
    synced_at: str | None
    synced_by: str | None
    users: int
    problems: int


class SyncStateStore:
    """The time (and result) of the last sync, one item in the config table."""

    def __init__(self, ddb: Any, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def load(self) -> SyncState:
        try:
            item = self._ddb.get_item(TableName=self._table, Key={"name": {"S": SYNC_STATE_KEY}}).get("Item")
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return SyncState(None, None, 0, 0)
            raise
        if not item:
            return SyncState(None, None, 0, 0)
        return SyncState(
            synced_at=item.get("synced_at", {}).get("S"),
            synced_by=item.get("synced_by", {}).get("S"),
            users=int(item.get("users", {}).get("N", "0")),
            problems=int(item.get("problems", {}).get("N", "0")),
        )

    def save(self, outcome: SyncOutcome, synced_by: str) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "name": {"S": SYNC_STATE_KEY},
                "synced_at": {"S": outcome.synced_at},
                "synced_by": {"S": synced_by},
                "users": {"N": str(outcome.total)},
                "problems": {"N": str(len(outcome.problems))},
            },
        )


def sync_users(
    source: ConnectUserSource,
    users: DynamoUserAdmin,
    state: SyncStateStore,
    *,
    instance_id: str,
    now: Callable[[], str],
    synced_by: str = "cli",
) -> SyncOutcome:
    """Read every Connect user of ``instance_id`` and write it to the users table.

    Keeps ``screen_recording`` and ``desktop_id`` (set by QM administrators); a user that
    one ``DescribeUser`` cannot read is named in ``problems`` and the others still sync.
    Users synced before and no longer in Connect are marked, not deleted (their contacts
    keep their names). Connect API errors other than a vanished user propagate.
    """
    outcome = SyncOutcome(synced_at=now())
    previously = users.synced_usernames()
    seen: list[str] = []
    summaries: list[ConnectUserSummary] = []
    for page in source.list_users(instance_id):
        summaries.extend(parse_user_summaries(page))
    for summary in summaries:
        try:
            described = parse_described_user(source.describe_user(instance_id, summary.user_id))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
            continue  # deleted between ListUsers and DescribeUser
        except InvalidInput as exc:
            outcome.problems.append(f"{summary.username}: {exc.detail}")
            continue
        written = users.upsert_synced(
            username=described.username,
            first_name=described.first_name,
            last_name=described.last_name,
            agent_arn=described.arn or summary.arn,
            connect_user_id=described.user_id,
            synced_at=outcome.synced_at,
        )
        (outcome.created if written == "created" else outcome.updated).append(described.username)
        if written == "renamed":
            outcome.renamed.append(described.username)
        seen.append(described.username)
    outcome.gone = gone_users(previously, seen)
    users.mark_gone(outcome.gone, outcome.synced_at)
    state.save(outcome, synced_by)
    log.info(
        "users synced",
        created=len(outcome.created),
        updated=len(outcome.updated),
        gone=len(outcome.gone),
        problems=len(outcome.problems),
    )
    return outcome
