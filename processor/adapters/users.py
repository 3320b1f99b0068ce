"""The QM users table (``username`` = ACD ID = Amazon Connect username)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from processor.core.users import QmUser

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


class UserDirectory(Protocol):
    def get_many(self, usernames: Iterable[str]) -> dict[str, QmUser]:
        """The known users among ``usernames`` (unknown ones are absent)."""
        ...


def _item(user: QmUser, synced_at: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "username": {"S": user.username},
        "screen_recording": {"BOOL": user.screen_recording},
    }
    for name in ("first_name", "last_name", "agent_arn", "desktop_id"):
        value = getattr(user, name)
        if value:
            item[name] = {"S": value}
    if synced_at:
        item["synced_at"] = {"S": synced_at}
    return item


def _user(item: dict[str, Any]) -> QmUser:
    def s(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return str(value) if value is not None else None

    return QmUser(
        username=item["username"]["S"],
        first_name=s("first_name"),
        last_name=s("last_name"),
        screen_recording=bool(item.get("screen_recording", {}).get("BOOL", False)),
        agent_arn=s("agent_arn"),
        desktop_id=s("desktop_id"),
    )


class DynamoUserDirectory:
    """Users in DynamoDB, with a short read cache (names change rarely, lookups are hot)."""

    def __init__(self, ddb: DynamoDBClient, table: str, cache_seconds: float = 30.0) -> None:
        self._ddb = ddb
        self._table = table
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, QmUser | None]] = {}

    def put(self, user: QmUser, synced_at: str | None = None) -> None:
        self._ddb.put_item(TableName=self._table, Item=_item(user, synced_at))
        self._cache.pop(user.username, None)

    def get(self, username: str) -> QmUser | None:
        return self.get_many([username]).get(username)

    def get_many(self, usernames: Iterable[str]) -> dict[str, QmUser]:
        now = time.monotonic()
        wanted = {u for u in usernames if u}
        found: dict[str, QmUser] = {}
        missing: list[str] = []
        for name in wanted:
            cached = self._cache.get(name)
            if cached and now - cached[0] < self._ttl:
                if cached[1] is not None:
                    found[name] = cached[1]
            else:
                missing.append(name)
        for start in range(0, len(missing), 100):
            keys: list[dict[str, Any]] = [{"username": {"S": n}} for n in missing[start : start + 100]]
            request: dict[str, Any] = {self._table: {"Keys": keys}}
            while request:
                response = self._ddb.batch_get_item(RequestItems=request)
                for item in response.get("Responses", {}).get(self._table, []):
                    user = _user(item)
                    found[user.username] = user
                    self._cache[user.username] = (now, user)
                request = response.get("UnprocessedKeys") or {}
        for name in missing:
            if name not in found:
                self._cache[name] = (now, None)
        return found

    def scan(self) -> Iterator[QmUser]:
        for page in self._ddb.get_paginator("scan").paginate(TableName=self._table):
            for item in page.get("Items", []):
                yield _user(item)
