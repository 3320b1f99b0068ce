"""``qm-ingest bootstrap``: create every resource qm-ingest needs, idempotently.

Safe to run again and again, against the embedded emulator, LocalStack or AWS: what
exists is left as it is (the recordings bucket's other notification rules included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from botocore.exceptions import ClientError

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.users_table import OS_LOGIN_INDEX
from processor.core.archive_layout import folder
from processor.platform.settings import Settings

NOTIFICATION_ID = "qm-ingest-recordings"
ARCHIVE_NOTIFICATION_ID = "qm-ingest-ctr-archive"
DLQ_MAX_RECEIVES = 5
ARCHIVE_VISIBILITY_SECONDS = 900
RECORDINGS_VISIBILITY_SECONDS = 120
MAX_RETENTION_SECONDS = 14 * 24 * 3600


@dataclass
class BootstrapReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    def note(self, name: str, created: bool) -> None:
        (self.created if created else self.existing).append(name)


@dataclass(frozen=True)
class TableSpec:
    name: str
    key: str
    ttl_attribute: str | None = None
    indexes: tuple[tuple[str, str, str | None], ...] = ()  # (index name, hash key, range key)
    range_key: str | None = None
    #: Indexes that project the keys only (what desktops may read; see adapters.users).
    keys_only: frozenset[str] = frozenset()

    def gsi(self, index: str, hash_key: str, range_key: str | None) -> dict[str, Any]:
        schema: list[dict[str, Any]] = [{"AttributeName": hash_key, "KeyType": "HASH"}]
        if range_key:
            schema.append({"AttributeName": range_key, "KeyType": "RANGE"})
        projection = "KEYS_ONLY" if index in self.keys_only else "ALL"
        return {"IndexName": index, "KeySchema": schema, "Projection": {"ProjectionType": projection}}

    def create_request(self) -> dict[str, Any]:
        """The table as DynamoDB's CreateTable takes it (CloudFormation's
        ``AWS::DynamoDB::Table`` takes the same keys)."""
        attributes = {self.key}
        gsis: list[dict[str, Any]] = []
        for index, hash_key, range_key in self.indexes:
            attributes.add(hash_key)
            if range_key:
                attributes.add(range_key)
            gsis.append(self.gsi(index, hash_key, range_key))
        request: dict[str, Any] = {
            "TableName": self.name,
            "KeySchema": [{"AttributeName": self.key, "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in sorted(attributes)],
            "BillingMode": "PAY_PER_REQUEST",
        }
        if gsis:
            request["GlobalSecondaryIndexes"] = gsis
        return request


@dataclass(frozen=True)
class QueueSpec:
    """A queue qm-ingest reads; with ``dead_letter``, its dead-letter queue ``<name>-dlq``
    takes a message after ``DLQ_MAX_RECEIVES`` receives."""

    name: str
    visibility_seconds: int | None = None  # None: SQS's default (30 s)
    dead_letter: bool = False
    #: The bucket whose ``s3:ObjectCreated:*`` events the queue receives, the rule's id, the
    #: policy statement's id and the key prefix the rule covers.
    notified_by: tuple[str, str, str, str] | None = None

    @property
    def dead_letter_name(self) -> str:
        return f"{self.name}-dlq"


def stream_specs(settings: Settings) -> list[tuple[str, int]]:
    """The Kinesis streams (name, shards): Connect's CTR and agent event streams, the output."""
    return [
        (settings.ctr_stream, settings.ctr_stream_shards),
        (settings.agent_event_stream, 1),
        (settings.output_stream, 1),
    ]


def bucket_names(settings: Settings) -> list[str]:
    return [
        settings.recordings_bucket,
        settings.quarantine_bucket,
        settings.screen_bucket,
        settings.archive_bucket,
        settings.recordings_copy_bucket,
    ]


def queue_specs(settings: Settings) -> list[QueueSpec]:
    return [
        QueueSpec(
            settings.recordings_queue,
            visibility_seconds=RECORDINGS_VISIBILITY_SECONDS,
            dead_letter=True,
            notified_by=(settings.recordings_bucket, NOTIFICATION_ID, "AllowS3RecordingEvents", ""),
        ),
        QueueSpec(settings.screen_results_queue),
        # Follow mode (`run --ctr-source firehose-s3`): new Firehose objects announced on a queue.
        QueueSpec(
            settings.archive_queue,
            # An object of several MB is read and imported before its message is deleted.
            visibility_seconds=ARCHIVE_VISIBILITY_SECONDS,
            dead_letter=True,
            notified_by=(
                settings.archive_bucket,
                ARCHIVE_NOTIFICATION_ID,
                "AllowS3CtrArchiveEvents",
                folder(settings.archive_prefix),
            ),
        ),
    ]


def table_specs(settings: Settings) -> list[TableSpec]:
    return [
        TableSpec(
            settings.contacts_table,
            "contact_id",
            indexes=(("by_date", "contact_date", "connected_at"), ("by_agent", "acd_id", "connected_at")),
        ),
        TableSpec(settings.quarantine_table, "id"),
        TableSpec(
            settings.users_table,
            "username",
            indexes=(("agent_arn-index", "agent_arn", None), (OS_LOGIN_INDEX, "os_login", None)),
            keys_only=frozenset({OS_LOGIN_INDEX}),
        ),
        TableSpec(
            settings.join_table,
            "pk",
            ttl_attribute="expires_at",
            indexes=(("by_due", "due_shard", "due_at"),),
        ),
        TableSpec(settings.config_table, "name"),
        TableSpec(settings.commands_table, "command_id", indexes=(("by_agent", "agent", "issued_at"),)),
        TableSpec(settings.agents_table, "agent"),
        TableSpec(settings.audit_table, "id", indexes=(("by_day", "day", "at"),)),
        TableSpec(settings.archive_cursor_table, "object"),
    ]


def _exists(call: Callable[[], Any], *missing_codes: str) -> bool:
    try:
        call()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in missing_codes:
            return False
        raise
    return True


def ensure_stream(aws: AwsClients, name: str, shards: int) -> bool:
    kinesis = aws.kinesis
    if _exists(lambda: kinesis.describe_stream_summary(StreamName=name), "ResourceNotFoundException"):
        return False
    try:
        kinesis.create_stream(StreamName=name, ShardCount=shards)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    return True


def ensure_table(aws: AwsClients, spec: TableSpec) -> bool:
    ddb = aws.dynamodb
    try:
        described = ddb.describe_table(TableName=spec.name)["Table"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
    else:
        add_missing_indexes(aws, spec, dict(described))
        return False
    kwargs = spec.create_request()
    try:
        ddb.create_table(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceInUseException":
            raise
    ddb.get_waiter("table_exists").wait(TableName=spec.name, WaiterConfig={"Delay": 1, "MaxAttempts": 120})
    if spec.ttl_attribute:
        ddb.update_time_to_live(
            TableName=spec.name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": spec.ttl_attribute},
        )
    return True


def add_missing_indexes(aws: AwsClients, spec: TableSpec, described: dict[str, Any]) -> None:
    """A table created by an older version gets the indexes added since (UpdateTable)."""
    have = {g["IndexName"] for g in described.get("GlobalSecondaryIndexes", [])}
    for index, hash_key, range_key in spec.indexes:
        if index in have:
            continue
        keys = [k for k in (hash_key, range_key) if k]
        request: dict[str, Any] = {
            "TableName": spec.name,
            "AttributeDefinitions": [{"AttributeName": k, "AttributeType": "S"} for k in keys],
            "GlobalSecondaryIndexUpdates": [{"Create": spec.gsi(index, hash_key, range_key)}],
        }
        aws.dynamodb.update_table(**request)


def ensure_bucket(aws: AwsClients, name: str) -> bool:
    s3 = aws.s3
    if _exists(lambda: s3.head_bucket(Bucket=name), "404", "NoSuchBucket", "NotFound"):
        return False
    kwargs: dict[str, Any] = {"Bucket": name}
    if aws.settings.aws_region != "us-east-1":
        kwargs["CreateBucketConfiguration"] = {"LocationConstraint": aws.settings.aws_region}
    try:
        s3.create_bucket(**kwargs)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return True


#: The copies bucket's lifecycle rule that expires QM's copies of call recordings.
COPIES_EXPIRY_RULE = "expire-recording-copies"


def copies_expiry_rule(days: int) -> dict[str, Any]:
    return {
        "ID": COPIES_EXPIRY_RULE,
        "Status": "Enabled",
        "Filter": {"Prefix": ""},
        "Expiration": {"Days": days},
    }


def ensure_copies_retention(aws: AwsClients, bucket: str, days: int) -> bool:
    """The copies bucket's expiry rule as ``recordings_copy_retention_days`` says (0: none),
    the bucket's other rules kept. True when it changed."""
    s3 = aws.s3
    try:
        rules = list(s3.get_bucket_lifecycle_configuration(Bucket=bucket).get("Rules", []))
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchLifecycleConfiguration":
            raise
        rules = []
    others = [r for r in rules if r.get("ID") != COPIES_EXPIRY_RULE]
    wanted = [*others, copies_expiry_rule(days)] if days else others
    if wanted == rules:
        return False
    if wanted:
        s3.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": wanted})  # type: ignore[typeddict-item]
    else:
        s3.delete_bucket_lifecycle(Bucket=bucket)
    return True


def ensure_queue(aws: AwsClients, name: str, attributes: dict[str, Any]) -> tuple[str, bool]:
    sqs = aws.sqs
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        return url, False
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in (
            "AWS.SimpleQueueService.NonExistentQueue",
            "QueueDoesNotExist",
        ):
            raise
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]  # type: ignore[arg-type]
    return url, True


def queue_arn(aws: AwsClients, url: str) -> str:
    attrs = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]
    return attrs["QueueArn"]


def s3_sends_to_queue(sid: str, queue: Any, bucket_arn: Any) -> dict[str, Any]:
    """The queue policy statement that lets one bucket's notifications reach the queue (here
    with ARNs, in the stack with CloudFormation's intrinsics for them)."""
    return {
        "Sid": sid,
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue,
        "Condition": {"ArnLike": {"aws:SourceArn": bucket_arn}},
    }


def ensure_queue_notification(
    aws: AwsClients, bucket: str, queue_url: str, *, notification_id: str, sid: str, prefix: str = ""
) -> bool:
    """One ``s3:ObjectCreated:*`` rule (``notification_id``, optionally for keys under
    ``prefix``) from ``bucket`` to the queue, merged with the bucket's other rules."""
    s3 = aws.s3
    arn = queue_arn(aws, queue_url)
    # Let S3 send to the queue (AWS checks this when the notification is configured).
    policy = {"Version": "2012-10-17", "Statement": [s3_sends_to_queue(sid, arn, f"arn:aws:s3:::{bucket}")]}
    aws.sqs.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": orjson.dumps(policy).decode()})
    current: dict[str, Any] = dict(s3.get_bucket_notification_configuration(Bucket=bucket))
    current.pop("ResponseMetadata", None)
    queues: list[dict[str, Any]] = list(current.get("QueueConfigurations", []))
    ours: dict[str, Any] = {"Id": notification_id, "QueueArn": arn, "Events": ["s3:ObjectCreated:*"]}
    if prefix:
        ours["Filter"] = {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix}]}}
    for existing in queues:
        same = existing.get("Id") == notification_id and existing.get("QueueArn") == arn
        if same and "s3:ObjectCreated:*" in existing.get("Events", []) and _prefix_of(existing) == prefix:
            return False
    queues = [q for q in queues if q.get("Id") != notification_id] + [ours]
    config: dict[str, Any] = {k: v for k, v in current.items() if k != "QueueConfigurations" and v}
    config["QueueConfigurations"] = queues
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)  # type: ignore[arg-type]
    return True


def _prefix_of(rule: dict[str, Any]) -> str:
    for item in rule.get("Filter", {}).get("Key", {}).get("FilterRules", []):
        if str(item.get("Name", "")).lower() == "prefix":
            return str(item.get("Value", ""))
    return ""


def bootstrap(settings: Settings, aws: AwsClients | None = None) -> BootstrapReport:
    aws = aws or AwsClients(settings)
    report = BootstrapReport()
    for name, shards in stream_specs(settings):
        report.note(f"kinesis stream {name}", ensure_stream(aws, name, shards))
    for spec in table_specs(settings):
        report.note(f"dynamodb table {spec.name}", ensure_table(aws, spec))
    for bucket in bucket_names(settings):
        report.note(f"s3 bucket {bucket}", ensure_bucket(aws, bucket))
    # The copies' retention: noted only when the rule changed (there is none to create at 0).
    copies, days = settings.recordings_copy_bucket, settings.recordings_copy_retention_days
    if ensure_copies_retention(aws, copies, days):
        report.note(f"s3 lifecycle {copies}", True)
    for queue in queue_specs(settings):
        attributes = {"MessageRetentionPeriod": str(MAX_RETENTION_SECONDS)}
        if queue.dead_letter:
            dlq_url, created = ensure_queue(aws, queue.dead_letter_name, dict(attributes))
            report.note(f"sqs queue {queue.dead_letter_name}", created)
            redrive = {
                "deadLetterTargetArn": queue_arn(aws, dlq_url),
                "maxReceiveCount": str(DLQ_MAX_RECEIVES),
            }
            attributes["RedrivePolicy"] = orjson.dumps(redrive).decode()
        if queue.visibility_seconds is not None:
            attributes["VisibilityTimeout"] = str(queue.visibility_seconds)
        url, created = ensure_queue(aws, queue.name, attributes)
        report.note(f"sqs queue {queue.name}", created)
        if queue.notified_by is not None:
            bucket, rule_id, sid, prefix = queue.notified_by
            report.note(
                f"s3 notification {bucket} -> {queue.name}",
                ensure_queue_notification(aws, bucket, url, notification_id=rule_id, sid=sid, prefix=prefix),
            )
    return report


def wait_for_endpoint(aws: AwsClients, timeout: float = 60.0) -> None:
    """Wait until the AWS endpoint answers (the emulator may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            aws.kinesis.list_streams(Limit=1)
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
