"""The CloudFormation template: generated from bootstrap's specifications, committed current,
valid for cfn-lint, and holding every resource bootstrap creates with the same shape."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from processor.ops import roles
from processor.ops.bootstrap import bucket_names, queue_specs, stream_specs, table_specs
from processor.ops.stack import (
    CREATE_RECORDINGS_BUCKET,
    CREATE_STREAMS,
    ECS_STOP_TIMEOUT,
    HEALTH_COMMAND,
    default_settings,
    ecs_template,
    render,
    template,
)
from processor.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "deploy" / "qm-ingest.yaml"
COMMITTED_ECS = ROOT / "deploy" / "qm-ingest-ecs.yaml"


def test_the_committed_templates_are_current() -> None:
    assert COMMITTED.read_text() == render(template(default_settings())), "regenerate: make stack"
    assert COMMITTED_ECS.read_text() == render(ecs_template(default_settings())), "regenerate: make stack"


def test_cfn_lint_finds_nothing() -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(COMMITTED), str(COMMITTED_ECS)],
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


def test_each_component_has_its_role_and_none_grants_a_whole_service() -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    iam_roles = {k: r for k, r in doc["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert set(iam_roles) == {"RoleService", "RoleConsole", "RoleOperator", "RoleDesktop"}
    for name, role in iam_roles.items():
        assert f"{name}Arn" in doc["Outputs"]
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert trust["Principal"]["Service"] == "ecs-tasks.amazonaws.com"
        (policy,) = role["Properties"]["Policies"]
        for statement in policy["PolicyDocument"]["Statement"]:
            assert statement["Effect"] == "Allow"
            assert all(":" in a and not a.endswith(":*") for a in statement["Action"]), statement
            if statement["Resource"] == ["*"]:  # only actions that name no resource
                assert statement["Action"] == ["kinesis:ListStreams"], statement
    # The desktop holds no S3 permission: it uploads through the URLs the service signs.
    desktop = roles.desktop(default_settings()).policy()["Statement"]
    assert not [a for st in desktop for a in st["Action"] if a.startswith("s3:")]


def test_the_ecs_task_runs_the_service_as_the_image_does() -> None:
    settings = default_settings()
    doc = yaml.safe_load(COMMITTED_ECS.read_text())
    task = doc["Resources"]["EcsTaskDefinition"]["Properties"]
    (container,) = task["ContainerDefinitions"]
    assert container["Command"] == ["run"]
    assert container["HealthCheck"]["Command"] == HEALTH_COMMAND
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["python", "-m", "processor.entrypoints.probe", "healthz"]' in dockerfile
    assert container["PortMappings"] == [{"ContainerPort": settings.health_port}]
    assert 10 < ECS_STOP_TIMEOUT <= 120  # `run` stops within 10 s (tests/e2e); Fargate allows 120
    assert task["TaskRoleArn"]["Fn::ImportValue"]["Fn::Sub"].endswith("-RoleServiceArn")
    environment = {e["Name"]: e["Value"] for e in container["Environment"]}
    for name in environment:
        if name.startswith("QM_"):
            assert name[3:].lower() in Settings.model_fields, name
    exported = set(yaml.safe_load(COMMITTED.read_text())["Outputs"])
    for value in [*environment.values(), task["TaskRoleArn"]]:
        if isinstance(value, dict) and "Fn::ImportValue" in value:
            assert value["Fn::ImportValue"]["Fn::Sub"].split("}-", 1)[1] in exported
    # Every resource name the service reads from its settings reaches the task.
    for spec in table_specs(settings):
        assert spec.name in environment.values()
    for spec in queue_specs(settings):
        assert spec.name in environment.values()
    service = doc["Resources"]["EcsService"]["Properties"]
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100


def test_the_roles_table_in_the_docs_is_current() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    start, end = "<!-- roles-table:start -->\n", "<!-- roles-table:end -->"
    assert text[text.index(start) + len(start) : text.index(end)] == roles.roles_table(default_settings()), (
        "regenerate the table with processor.ops.roles.roles_table"
    )
