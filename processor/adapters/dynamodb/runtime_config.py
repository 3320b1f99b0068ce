"""The ACD configuration that people change at runtime (the QM console's ACD Configuration page).

Stored as one DynamoDB item (``name = "acd"``) in the config table, with a version number
for optimistic locking. The running service reads it through :class:`RuntimeConfigReader`,
which caches it for a few seconds, so a change takes effect without a restart.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

CONFIG_KEY = "acd"


class ConfigConflict(Exception):
    """Someone else saved the configuration since it was read."""


@dataclass(frozen=True)
class AcdConfiguration:
    #: "Enable RTE Messaging for Screen Recording" (the seed's check box).
    rte_enabled: bool = True
    #: Include after-contact work in screen recordings (extraction ends at ACW end).
    include_acw: bool = True
    #: How long a CTR waits for its recording (and a recording for its CTR), minutes.
    join_window_minutes: int = 30
    instance_arn: str | None = None
    region: str | None = None
    version: int = 0
    updated_at: str | None = None
    updated_by: str | None = None

    def validate(self) -> list[str]:
        problems = []
        if not 1 <= self.join_window_minutes <= 24 * 60:
            problems.append("join window must be between 1 and 1440 minutes")
        if self.instance_arn and (
            not self.instance_arn.startswith("arn:") or ":instance/" not in self.instance_arn
        ):
            problems.append("instance ARN must look like arn:aws:connect:<region>:<account>:instance/<id>")
        return problems


def _to_item(config: AcdConfiguration) -> dict[str, Any]:
    item: dict[str, Any] = {"name": {"S": CONFIG_KEY}}
    for key, value in asdict(config).items():
        if value is None:
            continue
        if isinstance(value, bool):
            item[key] = {"BOOL": value}
        elif isinstance(value, int):
            item[key] = {"N": str(value)}
        else:
            item[key] = {"S": str(value)}
    return item


def _from_item(item: dict[str, Any]) -> AcdConfiguration:
    values: dict[str, Any] = {}
    for f in fields(AcdConfiguration):
        attr = item.get(f.name)
        if attr is None:
            continue
        if "BOOL" in attr:
            values[f.name] = bool(attr["BOOL"])
        elif "N" in attr:
            values[f.name] = int(attr["N"])
        elif "S" in attr:
            values[f.name] = attr["S"]
    return AcdConfiguration(**values)


class RuntimeConfigStore:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def load(self) -> AcdConfiguration:
        try:
            item = self._ddb.get_item(
                TableName=self._table, Key={"name": {"S": CONFIG_KEY}}, ConsistentRead=True
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ResourceNotFoundException":
                return AcdConfiguration()
            raise
        return _from_item(item["Item"]) if "Item" in item else AcdConfiguration()

    def save(self, config: AcdConfiguration, *, updated_by: str, updated_at: str) -> AcdConfiguration:
        """Save ``config`` if nobody saved since it was loaded (its ``version``)."""
        problems = config.validate()
        if problems:
            raise ValueError("; ".join(problems))
        new = replace(config, version=config.version + 1, updated_by=updated_by, updated_at=updated_at)
        try:
            self._ddb.put_item(
                TableName=self._table,
                Item=_to_item(new),
                ConditionExpression="attribute_not_exists(#n) OR version = :v",
                ExpressionAttributeNames={"#n": "name"},
                ExpressionAttributeValues={":v": {"N": str(config.version)}},
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConfigConflict("the configuration was changed by someone else; reload it") from None
            raise
        return new


class RuntimeConfigReader:
    """What the service consults on its hot paths: the stored config, at most ``ttl`` old."""

    def __init__(self, store: RuntimeConfigStore, ttl_seconds: float = 5.0) -> None:
        self._store = store
        self._ttl = ttl_seconds
        self._cached: tuple[float, AcdConfiguration] | None = None

    def get(self) -> AcdConfiguration:
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] > self._ttl:
            self._cached = (now, self._store.load())
        return self._cached[1]
