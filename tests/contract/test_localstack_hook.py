"""The LocalStack init hook (``localstack/ready.d``), run with the AWS CLI against the embedded
emulator: it creates exactly what ``qm-ingest bootstrap`` creates, and is idempotent.

The hook's ``aws`` is the real AWS CLI, imported once for the module (tests/warm_aws_cli.py):
each of its forty-odd invocations would otherwise spend a second starting up."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.ops.bootstrap import bootstrap
from tests.conftest import unique_names
from tests.warm_aws_cli import warm_aws_cli

HOOK = Path(__file__).resolve().parents[2] / "localstack" / "ready.d" / "10-qm-ingest-resources.sh"
ROLES = [
    "QM_CTR_STREAM",
    "QM_AGENT_EVENT_STREAM",
    "QM_OUTPUT_STREAM",
    "QM_RECORDINGS_BUCKET",
    "QM_RECORDINGS_QUEUE",
    "QM_QUARANTINE_BUCKET",
    "QM_CONTACTS_TABLE",
    "QM_QUARANTINE_TABLE",
    "QM_USERS_TABLE",
    "QM_JOIN_TABLE",
    "QM_CONFIG_TABLE",
    "QM_AUDIT_TABLE",
    "QM_COMMANDS_TABLE",
    "QM_AGENTS_TABLE",
    "QM_SCREEN_BUCKET",
    "QM_SCREEN_RESULTS_QUEUE",
    "QM_ARCHIVE_BUCKET",
    "QM_ARCHIVE_QUEUE",
    "QM_ARCHIVE_CURSOR_TABLE",
    "QM_RECORDINGS_COPY_BUCKET",
]


@pytest.fixture(scope="module")
def aws_cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    with warm_aws_cli(tmp_path_factory.mktemp("aws-cli")) as directory:
        yield directory


def run_hook(names: dict[str, str], endpoint: str, aws_cli: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        **names,
        "AWS_ENDPOINT_URL": endpoint,
        "PATH": os.pathsep.join((str(aws_cli), str(Path(sys.executable).parent), os.environ["PATH"])),
    }
    done = subprocess.run(
        ["bash", str(HOOK)], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def anonymise(value: Any, names: dict[str, str]) -> Any:
    """Replace every resource name with its variable, longest first (prefixes overlap)."""
    text = orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    for variable, name in sorted(names.items(), key=lambda kv: -len(kv[1])):
        text = text.replace(name, variable)
    return orjson.loads(text)


def inventory(aws, names: dict[str, str]) -> dict[str, Any]:
    """Every resource of one name set, with the configuration that matters, names anonymised."""
    out: dict[str, Any] = {}
    for role in ("QM_CTR_STREAM", "QM_AGENT_EVENT_STREAM", "QM_OUTPUT_STREAM"):
        summary = aws.kinesis.describe_stream_summary(StreamName=names[role])["StreamDescriptionSummary"]
        out[role] = {k: summary[k] for k in ("OpenShardCount", "RetentionPeriodHours", "StreamStatus")}
    for role in (
        "QM_CONTACTS_TABLE",
        "QM_QUARANTINE_TABLE",
        "QM_USERS_TABLE",
        "QM_JOIN_TABLE",
        "QM_CONFIG_TABLE",
        "QM_AUDIT_TABLE",
        "QM_COMMANDS_TABLE",
        "QM_AGENTS_TABLE",
        "QM_ARCHIVE_CURSOR_TABLE",
    ):
        table = aws.dynamodb.describe_table(TableName=names[role])["Table"]
        ttl = aws.dynamodb.describe_time_to_live(TableName=names[role])["TimeToLiveDescription"]
        out[role] = {
            "keys": table["KeySchema"],
            "attributes": sorted(table["AttributeDefinitions"], key=lambda a: a["AttributeName"]),
            "billing": table.get("BillingModeSummary", {}).get("BillingMode"),
            "indexes": sorted(
                (
                    {"name": i["IndexName"], "keys": i["KeySchema"], "projection": i["Projection"]}
                    for i in table.get("GlobalSecondaryIndexes", [])
                ),
                key=lambda i: i["name"],
            ),
            "ttl": {k: ttl.get(k) for k in ("TimeToLiveStatus", "AttributeName")},
        }
    for role in ("QM_RECORDINGS_BUCKET", "QM_QUARANTINE_BUCKET", "QM_SCREEN_BUCKET", "QM_ARCHIVE_BUCKET"):
        aws.s3.head_bucket(Bucket=names[role])
        out[role] = "exists"
    queues = {
        "QM_RECORDINGS_QUEUE": names["QM_RECORDINGS_QUEUE"],
        "DLQ": f"{names['QM_RECORDINGS_QUEUE']}-dlq",
        "QM_SCREEN_RESULTS_QUEUE": names["QM_SCREEN_RESULTS_QUEUE"],
        "QM_ARCHIVE_QUEUE": names["QM_ARCHIVE_QUEUE"],
        "ARCHIVE_DLQ": f"{names['QM_ARCHIVE_QUEUE']}-dlq",
    }
    for role, name in queues.items():
        url = aws.sqs.get_queue_url(QueueName=name)["QueueUrl"]
        attrs = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        kept = {k: attrs.get(k) for k in ("MessageRetentionPeriod", "VisibilityTimeout", "FifoQueue")}
        for key in ("RedrivePolicy", "Policy"):
            if key in attrs:
                kept[key] = orjson.loads(attrs[key])
        out[role] = kept
    for key, bucket in (
        ("notification", "QM_RECORDINGS_BUCKET"),
        ("archive_notification", "QM_ARCHIVE_BUCKET"),
    ):
        config = aws.s3.get_bucket_notification_configuration(Bucket=names[bucket])
        out[key] = sorted(
            (
                {
                    "Id": q.get("Id"),
                    "QueueArn": q["QueueArn"],
                    "Events": sorted(q["Events"]),
                    "Prefix": [
                        r["Value"]
                        for r in q.get("Filter", {}).get("Key", {}).get("FilterRules", [])
                        if r["Name"].lower() == "prefix"
                    ],
                }
                for q in config.get("QueueConfigurations", [])
            ),
            key=lambda q: q["Id"] or "",
        )
    return anonymise(out, names)


def test_hook_creates_what_bootstrap_creates(settings, aws, emulator: str, aws_cli: Path) -> None:
    # A Firehose prefix without its trailing slash: both make it a folder, and filter on it.
    settings = settings.model_copy(update={"archive_prefix": "connect/ctr"})
    bootstrap_names = {role: getattr(settings, role.removeprefix("QM_").lower()) for role in ROLES}
    report = bootstrap(settings, aws)
    hook_names = {k: v for k, v in unique_names("hook").items() if k in ROLES}
    done = run_hook({**hook_names, "QM_ARCHIVE_PREFIX": "connect/ctr"}, emulator, aws_cli)
    created = [
        line.split("created", 1)[1].strip() for line in done.stdout.splitlines() if " created " in line
    ]
    assert len(created) == len(report.created), (created, report.created)
    assert inventory(aws, hook_names) == inventory(aws, bootstrap_names)
    assert inventory(aws, hook_names)["archive_notification"][0]["Prefix"] == ["connect/ctr/"]
    # And the hook's notification really delivers S3 events to its queue.
    url = aws.sqs.get_queue_url(QueueName=hook_names["QM_RECORDINGS_QUEUE"])["QueueUrl"]
    aws.s3.put_object(
        Bucket=hook_names["QM_RECORDINGS_BUCKET"], Key="connect/x/CallRecordings/a.wav", Body=b"RIFF"
    )
    events = []
    for _ in range(10):
        for message in aws.sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1).get("Messages", []):
            events += [r["eventName"] for r in orjson.loads(message["Body"]).get("Records", [])]
        if events:
            break
    assert events and events[0].startswith("ObjectCreated:")


def test_hook_is_idempotent_and_keeps_other_notification_rules(emulator: str, aws, aws_cli: Path) -> None:
    names = {k: v for k, v in unique_names("hook").items() if k in ROLES}
    aws.s3.create_bucket(Bucket=names["QM_RECORDINGS_BUCKET"])
    other = aws.sqs.create_queue(QueueName=f"{names['QM_RECORDINGS_QUEUE']}-other")["QueueUrl"]
    other_arn = aws.sqs.get_queue_attributes(QueueUrl=other, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    aws.s3.put_bucket_notification_configuration(
        Bucket=names["QM_RECORDINGS_BUCKET"],
        NotificationConfiguration={
            "QueueConfigurations": [
                {"Id": "someone-else", "QueueArn": other_arn, "Events": ["s3:ObjectRemoved:*"]}
            ]
        },
    )
    run_hook(names, emulator, aws_cli)
    first = inventory(aws, names)
    again = run_hook(names, emulator, aws_cli)
    assert " created " not in again.stdout
    assert inventory(aws, names) == first
    assert {q["Id"] for q in first["notification"]} == {"someone-else", "qm-ingest-recordings"}
