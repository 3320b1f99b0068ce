"""The CloudFormation template: generated from bootstrap's specifications, committed current,
valid for cfn-lint, and holding every resource bootstrap creates with the same shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from processor.bootstrap import bucket_names, queue_specs, stream_specs, table_specs
from processor.stack import CREATE_RECORDINGS_BUCKET, CREATE_STREAMS, default_settings, render, template

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "qm-ingest.yaml"


def test_the_committed_template_is_current() -> None:
    assert COMMITTED.read_text() == render(template(default_settings())), "regenerate: make stack"


def test_cfn_lint_finds_nothing() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(COMMITTED)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _of_type(doc: dict, kind: str) -> list[dict]:
    return [r for r in doc["Resources"].values() if r["Type"] == kind]


def test_every_resource_bootstrap_creates_is_in_the_template() -> None:
    settings = default_settings()
    doc = yaml.safe_load(COMMITTED.read_text())
    streams = {r["Properties"]["Name"]: r for r in _of_type(doc, "AWS::Kinesis::Stream")}
    assert {n: r["Properties"]["ShardCount"] for n, r in streams.items()} == dict(stream_specs(settings))
    connect = {n for n, r in streams.items() if r.get("Condition") == CREATE_STREAMS}
    assert connect == {settings.ctr_stream, settings.agent_event_stream}
    tables = {r["Properties"]["TableName"]: r["Properties"] for r in _of_type(doc, "AWS::DynamoDB::Table")}
    for spec in table_specs(settings):
        request = spec.create_request()
        for key, value in request.items():
            assert tables[spec.name][key] == value, (spec.name, key)
        ttl = tables[spec.name].get("TimeToLiveSpecification")
        assert ttl == ({"AttributeName": spec.ttl_attribute, "Enabled": True} if spec.ttl_attribute else None)
    assert len(tables) == len(table_specs(settings))
    queues = {r["Properties"]["QueueName"]: r["Properties"] for r in _of_type(doc, "AWS::SQS::Queue")}
    expected_queues = set()
    for spec in queue_specs(settings):
        expected_queues.add(spec.name)
        if spec.dead_letter:
            expected_queues.add(spec.dead_letter_name)
            assert queues[spec.name]["RedrivePolicy"]["maxReceiveCount"] == 5
        assert queues[spec.name].get("VisibilityTimeout") == spec.visibility_seconds
    assert set(queues) == expected_queues
    defaults = {k: v["Default"] for k, v in doc["Parameters"].items() if k.endswith("BucketName")}
    assert sorted(defaults.values()) == sorted(bucket_names(settings))
    buckets = _of_type(doc, "AWS::S3::Bucket")
    assert len(buckets) == len(bucket_names(settings))
    for bucket in buckets:
        assert bucket["Properties"]["PublicAccessBlockConfiguration"]["BlockPublicPolicy"] is True
        assert "BucketEncryption" in bucket["Properties"]
    [recordings] = [b for b in buckets if b.get("Condition") == CREATE_RECORDINGS_BUCKET]
    [rule] = recordings["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    assert rule["Event"] == "s3:ObjectCreated:*"
