"""Imported versions of contacts, read in bulk from the contacts table (gap reports).

The table stores each contact's version in ``last_update`` (UTC ISO 8601, milliseconds:
string order is time order).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from processor.core.ctr import format_instant
from processor.platform.retry import retry_transient

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def imported_versions(ddb: DynamoDBClient, table: str, contact_ids: Iterable[str]) -> dict[str, str]:
    """contact id -> imported ``last_update`` (BatchGetItem, 100 at a time)."""
    ids = list(dict.fromkeys(contact_ids))
    out: dict[str, str] = {}
    for start in range(0, len(ids), 100):
        request: dict[str, Any] = {
            table: {
                "Keys": [{"contact_id": {"S": cid}} for cid in ids[start : start + 100]],
                "ProjectionExpression": "contact_id, last_update",
                "ConsistentRead": True,
            }
        }
        while request:
            response = retry_transient(
                lambda r=request: ddb.batch_get_item(RequestItems=r),  # type: ignore[misc]
                "contacts.batch_get",
            )
            for item in response.get("Responses", {}).get(table, []):
                out[item["contact_id"]["S"]] = item["last_update"]["S"]
            request = dict(response.get("UnprocessedKeys") or {})
            if request:
                time.sleep(0.2)
    return out


def imported_between(
    ddb: DynamoDBClient, table: str, since: datetime, until: datetime
) -> list[tuple[str, str]]:
    """Imported contacts whose version (``last_update``) lies in ``[since, until)``."""
    out: list[tuple[str, str]] = []
    paginator = ddb.get_paginator("scan")
    for page in paginator.paginate(
        TableName=table,
        FilterExpression="last_update >= :a AND last_update < :b",
        ExpressionAttributeValues={":a": {"S": format_instant(since)}, ":b": {"S": format_instant(until)}},
        ProjectionExpression="contact_id, last_update",
    ):
        out += [(item["contact_id"]["S"], item["last_update"]["S"]) for item in page.get("Items", [])]
    return out
