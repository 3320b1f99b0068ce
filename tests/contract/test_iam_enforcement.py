"""The embedded emulator's IAM enforcement (processor/devtools/emulator/iam_enforcement.py) refuses what a
policy does not grant, resource by resource: the stack's role tests rely on it, so a check that
let everything through would make them pass for nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from processor.core.desktop_protocol import UploadTarget
from processor.desktop.transport import S3Uploader, UploadRejected
from processor.devtools.emulator import control
from tests.helpers import EMULATOR_CREDENTIALS, REGION, credentials_env, iam_admin
from tests.helpers import signed_client as client

ACCOUNT = "123456789012"


def code(call: Any) -> str:
    try:
        call()
    except ClientError as exc:
        return str(exc.response["Error"]["Code"])
    return "ok"


@pytest.fixture
def world(iam_endpoint: str) -> Iterator[dict[str, Any]]:
    """Tables a and b, buckets a and b, stream s, queues a and b; a role that may use only
    the first of each; enforcement on."""
    t = uuid.uuid4().hex[:8]
    root = EMULATOR_CREDENTIALS
    names = {k: f"iam-{t}-{k}" for k in ("ta", "tb", "ba", "bb", "s", "qa", "qb", "admin", "role")}
    admin_arn, admin = iam_admin(iam_endpoint, names["admin"])
    iam = client("iam", iam_endpoint, root)
    trust = {"Effect": "Allow", "Principal": {"AWS": admin_arn}, "Action": "sts:AssumeRole"}
    iam.create_role(
        RoleName=names["role"],
        AssumeRolePolicyDocument=orjson.dumps({"Version": "2012-10-17", "Statement": [trust]}).decode(),
    )
    arn = f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/"
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem"],
                "Resource": arn + names["ta"],
            },
            {"Effect": "Allow", "Action": "dynamodb:Query", "Resource": arn + names["ta"] + "/index/*"},
            {"Effect": "Allow", "Action": "s3:PutObject", "Resource": f"arn:aws:s3:::{names['ba']}/*"},
            {
                "Effect": "Allow",
                "Action": ["kinesis:GetRecords", "kinesis:GetShardIterator"],
                "Resource": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{names['s']}",
            },
            {
                "Effect": "Allow",
                "Action": ["sqs:GetQueueUrl", "sqs:SendMessage"],
                "Resource": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{names['qa']}",
            },
        ],
    }
    iam.put_role_policy(RoleName=names["role"], PolicyName="p", PolicyDocument=orjson.dumps(policy).decode())
    ddb = client("dynamodb", iam_endpoint, root)
    for table in (names["ta"], names["tb"]):
        ddb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    s3 = client("s3", iam_endpoint, root)
    for bucket in (names["ba"], names["bb"]):
        s3.create_bucket(Bucket=bucket)
    client("kinesis", iam_endpoint, root).create_stream(StreamName=names["s"], ShardCount=1)
    sqs = client("sqs", iam_endpoint, root)
    for queue in (names["qa"], names["qb"]):
        sqs.create_queue(QueueName=queue)
    control.iam_enforcement(iam_endpoint, True, clear=True)
    try:
        role = credentials_env(
            client("sts", iam_endpoint, admin).assume_role(
                RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{names['role']}", RoleSessionName="enforcement-test"
            )["Credentials"]
        )
        yield {"names": names, "role": role, "admin": admin, "endpoint": iam_endpoint}
    finally:
        control.iam_enforcement(iam_endpoint, False)


def test_dynamodb_requests_are_checked_against_every_table_they_name(world: dict[str, Any]) -> None:
    n = world["names"]
    ddb = client("dynamodb", world["endpoint"], world["role"])
    key = {"k": {"S": "1"}}
    assert code(lambda: ddb.get_item(TableName=n["ta"], Key=key)) == "ok"
    assert code(lambda: ddb.get_item(TableName=n["tb"], Key=key)) == "AccessDeniedException"
    assert code(lambda: ddb.batch_get_item(RequestItems={n["ta"]: {"Keys": [key]}})) == "ok"
    both = {n["ta"]: {"Keys": [key]}, n["tb"]: {"Keys": [key]}}
    assert code(lambda: ddb.batch_get_item(RequestItems=both)) == "AccessDeniedException"
    # A transaction is authorised as its item actions: PutItem on ta is granted, on tb not.
    put_a = {"Put": {"TableName": n["ta"], "Item": {"k": {"S": "2"}}}}
    put_b = {"Put": {"TableName": n["tb"], "Item": {"k": {"S": "2"}}}}
    assert code(lambda: ddb.transact_write_items(TransactItems=[put_a])) == "ok"
    assert code(lambda: ddb.transact_write_items(TransactItems=[put_a, put_b])) == "AccessDeniedException"
    assert code(lambda: ddb.delete_item(TableName=n["ta"], Key=key)) == "AccessDeniedException"


def test_kinesis_reads_are_checked_against_the_stream_of_their_iterator(world: dict[str, Any]) -> None:
    n = world["names"]
    kinesis = client("kinesis", world["endpoint"], world["role"])
    iterator = kinesis.get_shard_iterator(
        StreamName=n["s"], ShardId="shardId-000000000000", ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    assert code(lambda: kinesis.get_records(ShardIterator=iterator)) == "ok"
    assert (
        code(lambda: kinesis.put_record(StreamName=n["s"], Data=b"x", PartitionKey="x"))
        == "AccessDeniedException"
    )


def test_s3_keys_with_colons_and_presigned_urls_are_checked_against_their_credentials(
    world: dict[str, Any],
) -> None:
    n = world["names"]
    s3 = client("s3", world["endpoint"], world["role"])
    key = "connect/x/CallRecordings/2026/03/03/c_20260303T09:00_UTC.wav"  # signed encoded
    assert code(lambda: s3.put_object(Bucket=n["ba"], Key=key, Body=b"x")) == "ok"
    assert code(lambda: s3.put_object(Bucket=n["bb"], Key=key, Body=b"x")) == "AccessDenied"
    assert code(lambda: s3.get_object(Bucket=n["ba"], Key=key)) == "AccessDenied"
    uploader = S3Uploader(None)
    for signing in (
        s3,
        client("s3", world["endpoint"], world["role"], config=Config(signature_version="s3v4")),
    ):
        url = signing.generate_presigned_url("put_object", Params={"Bucket": n["ba"], "Key": "up"})
        uploader.put(UploadTarget(n["ba"], "up", url), b"segment")
        other = signing.generate_presigned_url("put_object", Params={"Bucket": n["bb"], "Key": "up"})
        with pytest.raises(UploadRejected, match="403"):
            uploader.put(UploadTarget(n["bb"], "up", other), b"segment")
    with pytest.raises(UploadRejected, match="403"):  # no credentials at all
        uploader.put(UploadTarget(n["ba"], "anon", f"{world['endpoint']}/{n['ba']}/anon"), b"x")
    admin = client("s3", world["endpoint"], world["admin"])
    assert admin.get_object(Bucket=n["ba"], Key="up")["Body"].read() == b"segment"


def test_sqs_queues_are_named_by_their_arn_before_they_are_looked_up(world: dict[str, Any]) -> None:
    n = world["names"]
    sqs = client("sqs", world["endpoint"], world["role"])
    url = sqs.get_queue_url(QueueName=n["qa"])["QueueUrl"]
    assert code(lambda: sqs.send_message(QueueUrl=url, MessageBody="x")) == "ok"
    assert code(lambda: sqs.get_queue_url(QueueName=n["qb"])) == "AccessDenied"
    denied = [d for d in control.iam_enforcement(world["endpoint"])["decisions"] if not d["allowed"]]
    assert any(d["action"] == "sqs:GetQueueUrl" and d["resource"].endswith(n["qb"]) for d in denied)
