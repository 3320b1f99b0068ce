"""Console sessions that can end: one item per signed-in session in the config table.

The session cookie is signed, but a signature alone cannot be taken back: a cookie captured
before sign-out would work until it expires. So the cookie also names a session id, the
session lives here while it is open, and every request checks it is still here. Sign-out
deletes it; a password or role change changes the account's fingerprint, which the cookie
and the item carry, so every session opened before the change stops working.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PREFIX = "console-session#"


class SessionStore:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def open(self, sid: str, username: str, fingerprint: str, expires: datetime) -> None:
        self._ddb.put_item(
            TableName=self._table,
            Item={
                "name": {"S": PREFIX + sid},
                "user": {"S": username},
                "fingerprint": {"S": fingerprint},
                # Epoch seconds: a TTL attribute where the table has TTL on; checked here anyway.
                "expires_at": {"N": str(int(expires.timestamp()))},
            },
        )

    def alive(self, sid: str, username: str, fingerprint: str, now: datetime) -> bool:
        try:
            item = self._ddb.get_item(
                TableName=self._table, Key={"name": {"S": PREFIX + sid}}, ConsistentRead=True
            ).get("Item")
        except ClientError:
            return False  # cannot tell: refuse (the user signs in again)
        return bool(
            item
            and item.get("user", {}).get("S") == username
            and item.get("fingerprint", {}).get("S") == fingerprint
            and int(item.get("expires_at", {}).get("N", "0")) > now.timestamp()
        )

    def close(self, sid: str) -> None:
        self._ddb.delete_item(TableName=self._table, Key={"name": {"S": PREFIX + sid}})
