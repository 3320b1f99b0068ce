"""Pages of contacts for the console, straight from the contacts table's indexes.

A page is one or a few ``Query`` calls with ``Limit`` and ``ExclusiveStartKey`` on
``by_date`` (a day's partition, newest first, then the previous day) or ``by_agent``
(``acd_id`` with ``connected_at`` between the dates): the cost of a page does not grow
with the table. The raw CTR is never read for a listing (projection).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

from processor.core.contact_query import ContactFilter, Cursor, decode_cursor, encode_cursor

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

_PROJECTED = ("contact_id", "doc", "contact_date", "connected_at", "acd_id")
#: With a filter that DynamoDB applies after reading, read this many per call.
FILTERED_READ = 200


@dataclass(frozen=True)
class ContactPage:
    docs: list[dict[str, Any]]
    next_cursor: str | None
    queries: int


class ContactQuery:
    def __init__(self, ddb: DynamoDBClient, table: str) -> None:
        self._ddb = ddb
        self._table = table

    def page(self, flt: ContactFilter, cursor: str | None, limit: int) -> ContactPage:
        position = decode_cursor(cursor, flt)
        docs: list[dict[str, Any]] = []
        queries = 0
        if flt.agent:
            days: list[Any] = [None]
        else:
            days = list(flt.days_descending(position.day if position else None))
        start_key = position.key if position else None
        for index, day in enumerate(days):
            while True:
                response = self._query(flt, day, start_key, limit - len(docs))
                queries += 1
                items = response.get("Items", [])
                more_here = "LastEvaluatedKey" in response
                for position_in_page, item in enumerate(items):
                    doc = orjson.loads(item["doc"]["S"])
                    if flt.flag and flt.flag not in (doc.get("flags") or []):
                        continue
                    if not flt.holds(doc.get("connected_at")):
                        continue  # a UTC day's contact on a local day outside the range
                    docs.append(doc)
                    if len(docs) == limit:
                        rest = position_in_page < len(items) - 1 or more_here or index < len(days) - 1
                        key = {a: item[a]["S"] for a in flt.key_attributes}
                        token = encode_cursor(Cursor(day, key)) if rest else None
                        return ContactPage(docs, token, queries)
                if not more_here:
                    break
                start_key = {k: v["S"] for k, v in response["LastEvaluatedKey"].items()}
            start_key = None
        return ContactPage(docs, None, queries)

    def _query(
        self, flt: ContactFilter, day: Any, start_key: dict[str, str] | None, wanted: int
    ) -> dict[str, Any]:
        names: dict[str, str] = {f"#p{i}": name for i, name in enumerate(_PROJECTED)}
        values: dict[str, Any] = {}
        if flt.agent:
            condition = "acd_id = :agent AND connected_at BETWEEN :lo AND :hi"
            values[":agent"] = {"S": flt.agent}
            lo, hi = flt.utc_range
            values[":lo"] = {"S": lo}
            values[":hi"] = {"S": hi}
        else:
            condition = "contact_date = :day"
            values[":day"] = {"S": day.isoformat()}
        projection = ", ".join(names)
        filters = []
        if flt.direction:
            filters.append("#dir = :dir")
            names["#dir"] = "direction"
            values[":dir"] = {"S": flt.direction}
        if flt.flag:
            # The flags live in the JSON document; the exact check happens after parsing.
            filters.append("contains(#p1, :flag)")
            values[":flag"] = {"S": orjson.dumps(flt.flag).decode()}
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": flt.index,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ProjectionExpression": projection,
            "ScanIndexForward": False,
            "Limit": FILTERED_READ if filters else max(wanted, 1),
        }
        if filters:
            kwargs["FilterExpression"] = " AND ".join(filters)
        kwargs["ExpressionAttributeNames"] = names
        if start_key:
            kwargs["ExclusiveStartKey"] = {k: {"S": v} for k, v in start_key.items()}
        return dict(self._ddb.query(**kwargs))
