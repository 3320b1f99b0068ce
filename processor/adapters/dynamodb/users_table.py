"""The QM users table (``username`` = ACD ID = Amazon Connect username)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from processor.core.user_directory import QmUser, normalise_os_login
from processor.platform.exceptions import OsLoginTaken

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def _item(user: QmUser, synced_at: str | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "username": {"S": user.username},
        "screen_recording": {"BOOL": user.screen_recording},
    }
    for name in ("first_name", "last_name", "agent_arn", "desktop_id", "os_login"):
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
        os_login=s("os_login"),
    )


#: The users table's index from OS login to ACD ID. KEYS_ONLY: what a desktop may read
#: through it is the login and the username, never names or settings.
OS_LOGIN_INDEX = "os_login-index"


def users_with_os_login(ddb: DynamoDBClient, table: str, os_login: str) -> list[str]:
    """The usernames mapped to ``os_login`` (normally none or one), read from the index."""
    page = ddb.query(
        TableName=table,
        IndexName=OS_LOGIN_INDEX,
        KeyConditionExpression="os_login = :l",
        ExpressionAttributeValues={":l": {"S": os_login}},
        Limit=2,
    )
    return sorted(str(item["username"]["S"]) for item in page.get("Items", []))


class DynamoUserDirectory:
    """Users in DynamoDB, with a short read cache (names change rarely, lookups are hot)."""

    def __init__(self, ddb: DynamoDBClient, table: str, cache_seconds: float = 30.0) -> None:
        self._ddb = ddb
        self._table = table
        self._ttl = cache_seconds
        self._cache: dict[str, tuple[float, QmUser | None]] = {}

    def _check_os_login_free(self, username: str, os_login: str) -> None:
        others = [u for u in users_with_os_login(self._ddb, self._table, os_login) if u != username]
        if others:
            raise OsLoginTaken(f"that OS login is already mapped to {others[0]}")

    def put(self, user: QmUser, synced_at: str | None = None) -> None:
        if user.os_login:
            self._check_os_login_free(user.username, user.os_login)
        self._ddb.put_item(TableName=self._table, Item=_item(user, synced_at))
        self._cache.pop(user.username, None)

    def get(self, username: str) -> QmUser | None:
        return self.get_many([username]).get(username)

    def get_many(self, usernames: Iterable[str], *, fresh: bool = False) -> dict[str, QmUser]:
        """The known users among ``usernames``; ``fresh`` reads past the cache."""
        now = time.monotonic()
        wanted = {u for u in usernames if u}
        found: dict[str, QmUser] = {}
        missing: list[str] = []
        for name in wanted:
            cached = self._cache.get(name)
            if cached and not fresh and now - cached[0] < self._ttl:
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

    def by_agent_arn(self, agent_arn: str) -> QmUser | None:
        """The user of an Amazon Connect agent ARN (agent events without a snapshot)."""
        now = time.monotonic()
        key = f"arn:{agent_arn}"
        cached = self._cache.get(key)
        if cached and now - cached[0] < self._ttl:
            return cached[1]
        page = self._ddb.query(
            TableName=self._table,
            IndexName="agent_arn-index",
            KeyConditionExpression="agent_arn = :a",
            ExpressionAttributeValues={":a": {"S": agent_arn}},
            Limit=1,
        )
        items = page.get("Items", [])
        user = _user(items[0]) if items else None
        self._cache[key] = (now, user)
        return user

    def scan(self) -> Iterator[QmUser]:
        for page in self._ddb.get_paginator("scan").paginate(TableName=self._table):
            for item in page.get("Items", []):
                yield _user(item)


@dataclass(frozen=True)
class UserRow:
    """A user as the console's Users page shows it: the QM user plus sync and desktop state."""

    user: QmUser
    #: When a Connect sync last wrote this user (None: imported from a file only).
    synced_at: str | None = None
    #: Set when a later sync no longer found the user in Amazon Connect.
    gone_from_connect_at: str | None = None
    #: The desktop's last message to the server, and the queue depth it reported then.
    desktop_last_seen_at: str | None = None
    desktop_reported_queue_depth: int | None = None


def _row(item: dict[str, Any]) -> UserRow:
    def s(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return str(value) if value is not None else None

    depth = item.get("desktop_queue_depth", {}).get("N")
    return UserRow(
        user=_user(item),
        synced_at=s("synced_at"),
        gone_from_connect_at=s("gone_from_connect_at"),
        desktop_last_seen_at=s("desktop_last_seen_at"),
        desktop_reported_queue_depth=int(depth) if depth is not None else None,
    )


def _set_names(
    sets: list[str], removes: list[str], values: dict[str, Any], fields: dict[str, str | None]
) -> None:
    for name, value in fields.items():
        if value:
            sets.append(f"{name} = :{name}")
            values[f":{name}"] = {"S": value}
        else:
            removes.append(name)


class DynamoUserAdmin(DynamoUserDirectory):
    """The writes the console and the Connect sync make: attribute-level updates, so a sync
    never resets what QM administrators set (screen recording, desktop) and an
    administrator's change never loses a sync's names."""

    def _update(self, username: str, expression: str, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "Key": {"username": {"S": username}},
            "UpdateExpression": expression,
            **extra,
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        response = self._ddb.update_item(**kwargs)
        self._cache.pop(username, None)
        return dict(response)

    def upsert_synced(
        self,
        *,
        username: str,
        first_name: str | None,
        last_name: str | None,
        agent_arn: str | None,
        connect_user_id: str,
        synced_at: str,
    ) -> str:
        """Write a user read from Amazon Connect: ``created`` (new to QM), ``renamed`` (first or
        last name changed) or ``unchanged``."""
        sets = [
            "synced_at = :synced",
            "connect_user_id = :cid",
            "screen_recording = if_not_exists(screen_recording, :false)",
        ]
        removes = ["gone_from_connect_at"]
        values: dict[str, Any] = {
            ":synced": {"S": synced_at},
            ":cid": {"S": connect_user_id},
            ":false": {"BOOL": False},
        }
        _set_names(
            sets, removes, values, {"first_name": first_name, "last_name": last_name, "agent_arn": agent_arn}
        )
        expression = "SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes)
        response = self._update(username, expression, values, ReturnValues="ALL_OLD")
        old = response.get("Attributes")
        if not old:
            return "created"
        before = (old.get("first_name", {}).get("S"), old.get("last_name", {}).get("S"))
        return "renamed" if before != (first_name or None, last_name or None) else "unchanged"

    def upsert_imported(self, user: QmUser) -> None:
        """Write a user from an import file: names and screen recording as the file says;
        the desktop and ARN only when the file gives them."""
        sets = ["screen_recording = :sr"]
        removes: list[str] = []
        values: dict[str, Any] = {":sr": {"BOOL": user.screen_recording}}
        _set_names(sets, removes, values, {"first_name": user.first_name, "last_name": user.last_name})
        for name in ("agent_arn", "desktop_id"):
            value = getattr(user, name)
            if value:
                sets.append(f"{name} = :{name}")
                values[f":{name}"] = {"S": value}
        if user.os_login:
            self._check_os_login_free(user.username, user.os_login)
            sets.append("os_login = :os_login")
            values[":os_login"] = {"S": user.os_login}
        expression = "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")
        self._update(user.username, expression, values)

    def set_os_login(self, username: str, os_login: str | None) -> bool:
        """Map (or, with None or blank, unmap) the agent's OS login; False if no such user.
        A login mapped to another user is refused (:class:`OsLoginTaken`)."""
        login = normalise_os_login(os_login)
        if login is not None:
            self._check_os_login_free(username, login)
            expression, values = "SET os_login = :l", {":l": {"S": login}}
        else:
            expression, values = "REMOVE os_login", {}
        try:
            self._update(username, expression, values, ConditionExpression="attribute_exists(username)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def set_screen_recording(self, usernames: Iterable[str], enabled: bool) -> list[str]:
        """Turn screen recording on or off for existing users; returns those that changed."""
        changed = []
        for username in sorted(set(usernames)):
            try:
                self._update(
                    username,
                    "SET screen_recording = :v",
                    {":v": {"BOOL": enabled}},
                    ConditionExpression="attribute_exists(username) AND screen_recording <> :v",
                )
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                    raise
                continue
            changed.append(username)
        return changed

    def mark_gone(self, usernames: Iterable[str], at: str) -> None:
        for username in usernames:
            self._update(
                username,
                "SET gone_from_connect_at = if_not_exists(gone_from_connect_at, :at)",
                {":at": {"S": at}},
            )

    def record_desktop_contact(
        self, username: str, *, seen_at: str, desktop_id: str | None = None, queue_depth: int | None = None
    ) -> None:
        """What the results-queue consumer calls on every desktop message (heartbeats included)."""
        sets = ["desktop_last_seen_at = :seen"]
        values: dict[str, Any] = {":seen": {"S": seen_at}}
        if desktop_id:
            sets.append("desktop_id = :desk")
            values[":desk"] = {"S": desktop_id}
        if queue_depth is not None:
            sets.append("desktop_queue_depth = :depth")
            values[":depth"] = {"N": str(queue_depth)}
        try:
            self._update(
                username,
                "SET " + ", ".join(sets),
                values,
                # Messages arrive out of order on a standard queue: never move the time back.
                # A desktop updates its own user, never creates one.
                ConditionExpression=(
                    "attribute_exists(username) AND "
                    "(attribute_not_exists(desktop_last_seen_at) OR desktop_last_seen_at < :seen)"
                ),
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise

    def rows(self) -> list[UserRow]:
        out: list[UserRow] = []
        for page in self._ddb.get_paginator("scan").paginate(TableName=self._table):
            out.extend(_row(item) for item in page.get("Items", []))
        return sorted(out, key=lambda r: r.user.username.lower())

    def synced_usernames(self) -> list[str]:
        return [r.user.username for r in self.rows() if r.synced_at and not r.gone_from_connect_at]
