"""DynamoDB in bulk, against the emulator: chunking, unprocessed keys, and transactions in
which one refused group never fails or drops the others."""

from __future__ import annotations

from typing import Any

from processor.adapters.dynamodb import bulk
from processor.adapters.dynamodb.contacts import DynamoContactStore


def put(table: str, contact_id: str, version: str, *, condition: str | None = None) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TableName": table,
        "Item": {"contact_id": {"S": contact_id}, "version": {"S": version}},
    }
    if condition:
        request["ConditionExpression"] = condition
    return {"Put": request}


def test_bulk_reads_and_writes_cross_the_request_limits(bootstrapped, aws) -> None:
    table = bootstrapped.contacts_table
    DynamoContactStore(aws.dynamodb, table)  # registers the table's key
    ids = [f"bulk-{i}" for i in range(260)]
    requests = [(table, {"PutRequest": {"Item": {"contact_id": {"S": c}, "n": {"N": "1"}}}}) for c in ids]
    # The same item twice in one call: the later request wins (one BatchWriteItem may not hold both).
    requests.append((table, {"PutRequest": {"Item": {"contact_id": {"S": "bulk-0"}, "n": {"N": "2"}}}}))
    bulk.batch_write(aws.dynamodb, requests)
    keys = [(table, {"contact_id": {"S": c}}) for c in [*ids, "absent-1", "bulk-0"]]
    found = bulk.batch_get(aws.dynamodb, keys)
    assert len(found) == 260
    assert found[bulk.item_id(table, {"contact_id": {"S": "bulk-0"}})]["n"] == {"N": "2"}
    assert bulk.item_id(table, {"contact_id": {"S": "absent-1"}}) not in found


def test_a_refused_condition_fails_its_group_alone(bootstrapped, aws) -> None:
    table = bootstrapped.contacts_table
    aws.dynamodb.put_item(TableName=table, Item={"contact_id": {"S": "tx-taken"}, "version": {"S": "v9"}})
    groups = [[put(table, f"tx-{i}", "v1", condition="attribute_not_exists(contact_id)")] for i in range(150)]
    groups.insert(70, [put(table, "tx-taken", "v1", condition="attribute_not_exists(contact_id)")])
    outcomes = bulk.transact_groups(aws.dynamodb, groups)
    assert outcomes[70].reason == bulk.CONDITION_FAILED and not outcomes[70].written
    assert all(o.written for i, o in enumerate(outcomes) if i != 70)
    stored = aws.dynamodb.get_item(TableName=table, Key={"contact_id": {"S": "tx-taken"}})["Item"]
    assert stored["version"] == {"S": "v9"}  # the refused write changed nothing
    assert aws.dynamodb.get_item(TableName=table, Key={"contact_id": {"S": "tx-149"}}).get("Item")


def test_an_item_dynamodb_refuses_is_that_groups_error(bootstrapped, aws) -> None:
    table = bootstrapped.contacts_table
    huge = {
        "Put": {
            "TableName": table,
            "Item": {"contact_id": {"S": "tx-huge"}, "blob": {"S": "x" * 500_000}},  # over 400 KB
        }
    }
    groups = [[put(table, "tx-small-1", "v1")], [huge], [put(table, "tx-small-2", "v1")]]
    outcomes = bulk.transact_groups(aws.dynamodb, groups)
    assert outcomes[0].written and outcomes[2].written
    assert not outcomes[1].written and outcomes[1].error is not None


def test_a_group_is_all_or_nothing(bootstrapped, aws) -> None:
    table = bootstrapped.contacts_table
    aws.dynamodb.put_item(TableName=table, Item={"contact_id": {"S": "tx-pair-b"}, "version": {"S": "v2"}})
    pair = [
        put(table, "tx-pair-a", "v1"),
        put(table, "tx-pair-b", "v1", condition="version = :v"),
    ]
    pair[1]["Put"]["ExpressionAttributeValues"] = {":v": {"S": "v1"}}
    [outcome] = bulk.transact_groups(aws.dynamodb, [pair])
    assert outcome.reason == bulk.CONDITION_FAILED
    assert "Item" not in aws.dynamodb.get_item(TableName=table, Key={"contact_id": {"S": "tx-pair-a"}})
