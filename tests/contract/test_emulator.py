"""The embedded emulator is a real server: HTTP/1.1 for boto3, cleartext HTTP/2 for the KCL."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import boto3

from processor.devtools.emulator import control


def test_status_describes_the_session_emulator(emulator: str, tmp_path: Path) -> None:
    port = int(emulator.rsplit(":", 1)[1])
    status = control.status(port, tmp_path)
    assert status.listening and status.kind == "qm-ingest-emulator"
    assert not status.owned  # started by the session fixture with another state dir


def test_up_reuses_what_already_listens(emulator: str, tmp_path: Path) -> None:
    port = int(emulator.rsplit(":", 1)[1])
    status = control.up(port, tmp_path)
    assert status.listening and not status.owned
    assert control.down(port, tmp_path) is False  # never stops a server it did not start
    assert control.status(port, tmp_path).listening


def test_up_down_cycle_twice(tmp_path: Path) -> None:
    port = control.free_port()
    for _ in range(2):
        status = control.up(port, tmp_path)
        assert status.owned and status.kind == "qm-ingest-emulator"
        assert control.down(port, tmp_path) is True
        assert not control.port_open(port)


def test_empty_bodies_are_answered(emulator: str) -> None:
    # HEAD and 204 responses have no body; the server must still answer them.
    s3 = boto3.client("s3", endpoint_url=emulator, region_name="us-east-1")
    s3.create_bucket(Bucket="head-check")
    s3.head_bucket(Bucket="head-check")
    s3.put_object(Bucket="head-check", Key="k", Body=b"x")
    assert s3.head_object(Bucket="head-check", Key="k")["ContentLength"] == 1
    s3.delete_object(Bucket="head-check", Key="k")


def test_cleartext_http2_prior_knowledge(emulator: str) -> None:
    import h2.config
    import h2.connection
    import h2.events

    host, port = emulator.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        conn = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(
            1,
            [
                (":method", "GET"),
                (":path", "/_qm/health"),
                (":scheme", "http"),
                (":authority", f"{host}:{port}"),
            ],
            end_stream=True,
        )
        sock.sendall(conn.data_to_send())
        status = None
        body = b""
        while True:
            data = sock.recv(65536)
            if not data:
                break
            for event in conn.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers)[b":status"]
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                elif isinstance(event, h2.events.StreamEnded):
                    assert status == b"200"
                    assert b"qm-ingest-emulator" in body
                    return
            sock.sendall(conn.data_to_send())
    raise AssertionError("no HTTP/2 response")


def test_concurrent_puts_to_one_shard_keep_every_record(emulator: str) -> None:
    # The service puts its output in parallel chunks; two PutRecords on one shard at once must
    # never share a sequence number (one record would silently replace the other).
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    kinesis = boto3.client("kinesis", endpoint_url=emulator, region_name="us-east-1")
    stream = f"concurrent-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)

    def put(chunk: int) -> list[str]:
        client = boto3.client("kinesis", endpoint_url=emulator, region_name="us-east-1")
        records: Any = [{"Data": f"{chunk}-{i}".encode(), "PartitionKey": f"{chunk}-{i}"} for i in range(500)]
        answer = client.put_records(StreamName=stream, Records=records)
        assert answer["FailedRecordCount"] == 0
        return [r["SequenceNumber"] for r in answer["Records"]]

    with ThreadPoolExecutor(8) as pool:
        sequences = [s for chunk in pool.map(put, range(8)) for s in chunk]
    assert len(set(sequences)) == 8 * 500

    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    seen: list[bytes] = []
    while True:
        page = kinesis.get_records(ShardIterator=iterator, Limit=10000)
        seen += [r["Data"] for r in page["Records"]]
        if not page["Records"]:
            break
        iterator = page["NextShardIterator"]
    assert len(seen) == len(set(seen)) == 8 * 500


def test_sqs_delay_visibility_and_deep_queues_keep_their_semantics(emulator: str) -> None:
    # The emulator replaces moto's per-message retention, visibility and delay checks with
    # cheaper ones; a delayed message stays hidden until its delay ends, a received one until
    # its visibility timeout ends, and a deep queue hands out every message exactly once.
    import time
    import uuid

    sqs = boto3.client("sqs", endpoint_url=emulator, region_name="us-east-1")
    url = sqs.create_queue(QueueName=f"semantics-{uuid.uuid4().hex[:8]}")["QueueUrl"]

    sqs.send_message(QueueUrl=url, MessageBody="delayed", DelaySeconds=2)
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    time.sleep(2.2)
    first = sqs.receive_message(QueueUrl=url, VisibilityTimeout=2)["Messages"]
    assert [m["Body"] for m in first] == ["delayed"]
    assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)
    time.sleep(2.2)
    again = sqs.receive_message(QueueUrl=url)["Messages"]
    assert [m["Body"] for m in again] == ["delayed"]
    assert again[0]["ReceiptHandle"] != first[0]["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])

    bodies = {f"m{i}" for i in range(2000)}
    ordered = sorted(bodies)
    for start in range(0, len(ordered), 10):
        entries: Any = [{"Id": str(i), "MessageBody": b} for i, b in enumerate(ordered[start : start + 10])]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)
    received: list[str] = []
    while True:
        page = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        if "Messages" not in page:
            break
        received += [m["Body"] for m in page["Messages"]]
        done: Any = [
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(page["Messages"])
        ]
        assert not sqs.delete_message_batch(QueueUrl=url, Entries=done).get("Failed")
    assert sorted(received) == ordered
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_get_records_reads_from_the_iterators_position(emulator: str) -> None:
    """GetRecords answers as Kinesis does from every kind of position (with a limit, at and
    after a sequence number, at the end of a long shard, on the children of a split shard
    whose numbers are not consecutive): the emulator reads from the iterator's position
    instead of walking the shard (processor/devtools/emulator/moto_patches.py)."""
    import uuid

    kinesis = boto3.client("kinesis", endpoint_url=emulator, region_name="us-east-1")
    stream = f"positions-{uuid.uuid4().hex[:8]}"
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]

    def iterator(kind: str, **extra: Any) -> str:
        return kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType=kind, **extra)[
            "ShardIterator"
        ]

    def put(count: int, tag: str) -> list[str]:
        records: Any = [{"Data": f"{tag}-{i}".encode(), "PartitionKey": f"{tag}-{i}"} for i in range(count)]
        answer = kinesis.put_records(StreamName=stream, Records=records)
        return [r["SequenceNumber"] for r in answer["Records"]]

    sequences = put(10, "a")
    page = kinesis.get_records(ShardIterator=iterator("TRIM_HORIZON"), Limit=4)
    assert [r["Data"] for r in page["Records"]] == [f"a-{i}".encode() for i in range(4)]
    rest = kinesis.get_records(ShardIterator=page["NextShardIterator"], Limit=100)
    assert [r["Data"] for r in rest["Records"]] == [f"a-{i}".encode() for i in range(4, 10)]
    at = kinesis.get_records(
        ShardIterator=iterator("AT_SEQUENCE_NUMBER", StartingSequenceNumber=sequences[7]), Limit=100
    )
    assert [r["SequenceNumber"] for r in at["Records"]] == sequences[7:]
    after = kinesis.get_records(
        ShardIterator=iterator("AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=sequences[7]), Limit=100
    )
    assert [r["SequenceNumber"] for r in after["Records"]] == sequences[8:]
    for chunk in range(40):
        put(500, f"b{chunk}")
    long_end = iterator("LATEST")
    assert kinesis.get_records(ShardIterator=long_end, Limit=100)["Records"] == []
    put(3, "c")
    assert [r["Data"] for r in kinesis.get_records(ShardIterator=long_end)["Records"]] == [
        b"c-0",
        b"c-1",
        b"c-2",
    ]

    # Children of a split shard: moto moves each record to its child by hash, keeping its number.
    start, end_key = kinesis.list_shards(StreamName=stream)["Shards"][0]["HashKeyRange"].values()
    kinesis.split_shard(
        StreamName=stream, ShardToSplit=shard, NewStartingHashKey=str((int(start) + int(end_key)) // 2)
    )
    seen: list[bytes] = []
    for child in kinesis.list_shards(StreamName=stream)["Shards"]:
        at_child = kinesis.get_shard_iterator(
            StreamName=stream, ShardId=child["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            got = kinesis.get_records(ShardIterator=at_child, Limit=777)
            seen += [r["Data"] for r in got["Records"]]
            if not got["Records"]:
                break
            at_child = got["NextShardIterator"]
    assert len(seen) == len(set(seen)) and set(seen) >= {b"a-0", b"c-2", b"b39-499"}


def _pk_table(emulator: str, prefix: str) -> tuple[Any, str]:
    """A DynamoDB client on the emulator and a new on-demand table keyed by the string ``pk``."""
    import uuid

    dynamodb = boto3.client("dynamodb", endpoint_url=emulator, region_name="us-east-1")
    table = f"{prefix}-{uuid.uuid4().hex[:8]}"
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return dynamodb, table


def test_dynamodb_expressions_and_item_sizes_keep_their_semantics(emulator: str) -> None:
    """The emulator remembers parsed expressions by their text and measures an item once
    (processor/devtools/emulator/moto_patches.py): the same expression with other values writes those
    values, in one transaction too; a condition still decides per item; a malformed expression
    is refused every time; an item over DynamoDB's size limit is still refused."""

    import pytest
    from botocore.exceptions import ClientError

    dynamodb, table = _pk_table(emulator, "expressions")
    update = "SET #v = :v, #n = if_not_exists(#n, :zero) + :one"
    names = {"#v": "value", "#n": "count"}

    def values(v: str) -> dict[str, Any]:
        return {":v": {"S": v}, ":zero": {"N": "0"}, ":one": {"N": "1"}}

    def item(pk: str) -> dict[str, Any]:
        return dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True)["Item"]

    for pk, v in (("a", "first"), ("b", "second"), ("a", "third")):
        dynamodb.update_item(
            TableName=table,
            Key={"pk": {"S": pk}},
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values(v),
        )
    assert (item("a")["value"], item("a")["count"]) == ({"S": "third"}, {"N": "2"})
    assert (item("b")["value"], item("b")["count"]) == ({"S": "second"}, {"N": "1"})

    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Update": {
                    "TableName": table,
                    "Key": {"pk": {"S": pk}},
                    "UpdateExpression": update,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": values(f"in-transaction-{pk}"),
                }
            }
            for pk in ("a", "c")
        ]
    )
    assert item("a")["value"] == {"S": "in-transaction-a"} and item("c")["value"] == {"S": "in-transaction-c"}

    condition = "attribute_not_exists(pk) OR #n < :limit"
    for pk, limit, accepted in (("a", "10", True), ("a", "2", False), ("d", "0", True)):
        call = dict(
            TableName=table,
            Key={"pk": {"S": pk}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={**values("conditional"), ":limit": {"N": limit}},
        )
        if accepted:
            dynamodb.update_item(**call)
        else:
            with pytest.raises(ClientError) as refused:
                dynamodb.update_item(**call)
            assert refused.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert item("a")["count"] == {"N": "4"} and item("d")["count"] == {"N": "1"}

    for _ in range(2):
        with pytest.raises(ClientError) as malformed:
            dynamodb.update_item(
                TableName=table,
                Key={"pk": {"S": "a"}},
                UpdateExpression="SET #v = = :v",
                ExpressionAttributeNames={"#v": "value"},
                ExpressionAttributeValues={":v": {"S": "x"}},
            )
        assert malformed.value.response["Error"]["Code"] == "ValidationException"

    dynamodb.put_item(TableName=table, Item={"pk": {"S": "big"}, "blob": {"S": "x" * 300_000}})
    with pytest.raises(ClientError) as too_large:
        dynamodb.put_item(
            TableName=table,
            Item={"pk": {"S": "huge"}, **{f"part{i}": {"S": "x" * 100_000} for i in range(5)}},
        )
    assert too_large.value.response["Error"]["Code"] == "ValidationException"
    assert "size" in too_large.value.response["Error"]["Message"].lower()


#: An item with every attribute type, nested, with empty and unicode values.
EVERY_TYPE: dict[str, Any] = {
    "pk": {"S": "every-type"},
    "s": {"S": "Grüße ☎"},
    "empty": {"S": ""},
    "n": {"N": "-12.50"},
    "big": {"N": "123456789012345678901234567890"},
    "b": {"B": b"\x00\x01\xfe\xff"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"\x00", b"\xff"]},
    "bool": {"BOOL": False},
    "null": {"NULL": True},
    "l": {"L": [{"S": "x"}, {"N": "1"}, {"B": b"\x10"}, {"L": []}, {"M": {}}]},
    "m": {
        "M": {
            "inner": {"M": {"deep": {"BOOL": True}, "bytes": {"B": b"\x7f"}}},
            "list": {"L": [{"NULL": True}]},
        }
    },
}


def test_dynamodb_item_answers_are_the_generic_serializers_json() -> None:
    """The emulator writes item operations' answers with json.dumps (moto_patches.dynamo_json):
    the same JSON as moto's serializer for every attribute type, capacity and key shape."""
    import json

    from moto.core.serialize import XFormedAttributePicker, get_serializer_class
    from moto.core.utils import get_service_model
    from moto.dynamodb.models.dynamo_type import DynamoType
    from moto.dynamodb.models.utilities import dynamo_to_dict

    from processor.devtools.emulator.moto_patches import ITEM_OPERATIONS, dynamo_json

    model = get_service_model("dynamodb")
    serializer = get_serializer_class("dynamodb", model.protocol)

    def generic(operation: str, result: Any) -> Any:
        out = serializer(
            operation_model=model.operation_model(operation),
            pretty_print=False,
            value_picker=XFormedAttributePicker(response_transformers=None),
        ).serialize(result)
        assert out["status_code"] == 200
        return json.loads(out["body"])

    # As moto's handlers build them: DynamoType values turned into plain data by dynamo_to_dict.
    item = dynamo_to_dict({k: DynamoType(_wire(av)) for k, av in EVERY_TYPE.items()})
    key = {"pk": {"S": "every-type"}}
    capacity = {"TableName": "t", "CapacityUnits": 1.0, "Table": {"CapacityUnits": 1.0}}
    results: dict[str, list[Any]] = {
        "GetItem": [{"Item": item}, {}, {"Item": item, "ConsumedCapacity": capacity}],
        "PutItem": [{}, {"Attributes": item, "ConsumedCapacity": None}],
        "UpdateItem": [{"Attributes": item}, {"ConsumedCapacity": capacity}],
        "DeleteItem": [{"Attributes": item}, {}],
        "BatchGetItem": [
            {"Responses": {"t": [item, item]}, "UnprocessedKeys": {}, "ConsumedCapacity": []},
            {
                "Responses": {"t": []},
                "UnprocessedKeys": {"t": {"Keys": [key]}},
                "ConsumedCapacity": [capacity],
            },
        ],
        "BatchWriteItem": [
            {"UnprocessedItems": {}, "ConsumedCapacity": [capacity]},
            {"UnprocessedItems": {"t": [{"PutRequest": {"Item": item}}, {"DeleteRequest": {"Key": key}}]}},
        ],
        "Query": [
            {"Items": [item], "Count": 1, "ScannedCount": 1, "ConsumedCapacity": None},
            {"Items": [], "Count": 0, "ScannedCount": 3, "LastEvaluatedKey": key},
        ],
        "Scan": [{"Items": [item, item], "Count": 2, "ScannedCount": 2, "LastEvaluatedKey": None}],
        "TransactGetItems": [{"Responses": [{"Item": item}, {}], "ConsumedCapacity": [capacity]}],
        "TransactWriteItems": [{"ConsumedCapacity": [], "ItemCollectionMetrics": {}}],
    }
    assert set(results) == ITEM_OPERATIONS
    for operation, answers in results.items():
        for result in answers:
            fast = dynamo_json(result)
            assert fast is not None, operation
            assert json.loads(fast) == generic(operation, result), operation
    # Anything it cannot write as JSON goes to the serializer.
    from datetime import UTC, datetime

    assert dynamo_json({"Table": {"CreationDateTime": datetime.now(UTC)}}) is None


def _wire(attribute: dict[str, Any]) -> dict[str, Any]:
    """A request's form of an attribute value (binary as base64 text), nested values too."""
    import base64

    ((kind, value),) = attribute.items()
    if kind == "B":
        return {kind: base64.b64encode(value).decode()}
    if kind == "BS":
        return {kind: [base64.b64encode(v).decode() for v in value]}
    if kind == "L":
        return {kind: [_wire(v) for v in value]}
    if kind == "M":
        return {kind: {k: _wire(v) for k, v in value.items()}}
    return {kind: value}


def test_dynamodb_every_attribute_type_round_trips(emulator: str) -> None:
    """Through the emulator over HTTP, every read of an item gives back exactly what was
    written, binary values included, and capacities come when asked for."""

    dynamodb, table = _pk_table(emulator, "types")
    key = {"pk": EVERY_TYPE["pk"]}
    written = dynamodb.put_item(TableName=table, Item=EVERY_TYPE, ReturnConsumedCapacity="TOTAL")
    assert written["ConsumedCapacity"]["TableName"] == table
    assert dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True)["Item"] == EVERY_TYPE
    batch = dynamodb.batch_get_item(RequestItems={table: {"Keys": [key, {"pk": {"S": "absent"}}]}})
    assert batch["Responses"][table] == [EVERY_TYPE] and not batch["UnprocessedKeys"]
    query = dynamodb.query(
        TableName=table, KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": key["pk"]}
    )
    assert (query["Items"], query["Count"]) == ([EVERY_TYPE], 1)
    assert dynamodb.scan(TableName=table)["Items"] == [EVERY_TYPE]
    got = dynamodb.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": key}}])
    assert got["Responses"] == [{"Item": EVERY_TYPE}]
    updated = dynamodb.update_item(
        TableName=table,
        Key=key,
        UpdateExpression="SET #b = :b",
        ExpressionAttributeNames={"#b": "b"},
        ExpressionAttributeValues={":b": {"B": b"\xca\xfe"}},
        ReturnValues="ALL_NEW",
    )
    assert updated["Attributes"] == {**EVERY_TYPE, "b": {"B": b"\xca\xfe"}}
    deleted = dynamodb.delete_item(TableName=table, Key=key, ReturnValues="ALL_OLD")
    assert deleted["Attributes"] == {**EVERY_TYPE, "b": {"B": b"\xca\xfe"}}
    assert "Item" not in dynamodb.get_item(TableName=table, Key=key)
