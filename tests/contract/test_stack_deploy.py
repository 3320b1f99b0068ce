"""The CloudFormation template deployed into the embedded emulator (moto's CloudFormation):
the stack creates every resource bootstrap would, so bootstrap on top of it finds them all
and doctor finds no fatal problem.

moto's CloudFormation does not apply everything the template says (measured with moto 5.2.5):
a bucket's ``NotificationConfiguration``, ``AWS::SQS::QueuePolicy``, a table's
``TimeToLiveSpecification`` and a stream's ``StreamEncryption`` are accepted and left out. So
bootstrap, run after the stack, adds the two notification rules (with their queue policies)
here, which on AWS the stack has made; cfn-lint checks those parts of the template
(``tests/unit/test_stack.py``).
"""

from __future__ import annotations

import time

import orjson

from processor.ops.bootstrap import bootstrap, queue_specs
from processor.ops.doctor import Doctor
from processor.ops.stack import ecs_template, template

#: What moto's CloudFormation leaves out, which bootstrap then adds (see the docstring).
EMULATOR_GAPS = ("s3 notification ",)


def deploy(aws, settings, name: str, body: dict | None = None, parameters: dict | None = None) -> dict:  # type: ignore[no-untyped-def]
    cloudformation = aws.client("cloudformation")
    cloudformation.create_stack(
        StackName=name,
        TemplateBody=orjson.dumps(body or template(settings)).decode(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in (parameters or {}).items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    deadline = time.monotonic() + 120
    while True:
        stack = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.monotonic() > deadline:
            return stack
        time.sleep(0.5)


def test_the_stack_creates_everything_bootstrap_would(settings, aws) -> None:
    stack = deploy(aws, settings, "qm-ingest-" + settings.contacts_table.replace("_", "-")[:40])
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    report = bootstrap(settings, aws)
    created = [c for c in report.created if not c.startswith(EMULATOR_GAPS)]
    assert created == [], f"in bootstrap but not in the template: {created}"
    findings = Doctor(settings, aws).check_all()
    assert not findings.fatal_ones, findings.fatal_ones
    for spec in queue_specs(settings):
        url = aws.sqs.get_queue_url(QueueName=spec.name)["QueueUrl"]
        attributes = aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        assert attributes["MessageRetentionPeriod"] == str(14 * 24 * 3600)
        if spec.visibility_seconds is not None:
            assert attributes["VisibilityTimeout"] == str(spec.visibility_seconds)
        assert ("RedrivePolicy" in attributes) == spec.dead_letter


def test_the_ecs_stack_deploys_on_top_of_the_stack(settings, aws) -> None:  # type: ignore[no-untyped-def]
    """deploy/qm-ingest-ecs.yaml imports the first stack's outputs: the task's environment gets
    its bucket names. (moto keeps neither the task role nor CPU and memory of a task definition
    made by CloudFormation; tests/unit/test_stack.py checks those in the template.)"""
    name = "qm-" + settings.contacts_table.replace("_", "-")[:40]
    assert deploy(aws, settings, name)["StackStatus"] == "CREATE_COMPLETE"
    ec2 = aws.client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=name, Description="qm-ingest tasks", VpcId=vpc)["GroupId"]
    parameters = {
        "QmStackName": name,
        "ContainerImage": "registry.example/qm-ingest:1.0",
        "Subnets": subnet,
        "SecurityGroups": group,
        "ConnectInstanceArn": "arn:aws:connect:us-east-1:123456789012:instance/abc",
        "DesiredCount": "2",
    }
    stack = deploy(
        aws,
        settings,
        name + "-ecs",
        body=ecs_template(settings),
        parameters=parameters,
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    ecs = aws.client("ecs")
    cluster = next(c for c in ecs.list_clusters()["clusterArns"] if name in c)
    (service,) = ecs.describe_services(
        cluster=cluster, services=ecs.list_services(cluster=cluster)["serviceArns"]
    )["services"]
    assert service["desiredCount"] == 2
    task = ecs.describe_task_definition(taskDefinition=service["taskDefinition"])["taskDefinition"]
    (container,) = task["containerDefinitions"]
    environment = {e["name"]: e["value"] for e in container["environment"]}
    assert environment["QM_RECORDINGS_BUCKET"] == settings.recordings_bucket
    assert environment["QM_SCREEN_BUCKET"] == settings.screen_bucket
    assert environment["QM_CONTACTS_TABLE"] == settings.contacts_table
    assert environment["QM_INSTANCE_ARN"] == parameters["ConnectInstanceArn"]
    assert container["image"] == parameters["ContainerImage"]
