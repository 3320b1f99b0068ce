"""The CloudFormation template of every resource qm-ingest needs, generated from the same
specifications ``qm-ingest bootstrap`` creates them from (:mod:`processor.ops.bootstrap`), so the
two cannot drift apart: ``deploy/qm-ingest.yaml`` is this module's output for the default
settings (``make stack`` writes it, a test checks it is current), and
``python -m processor.ops.stack`` renders it for the settings in effect (names from ``QM_*``).

Parameters say what exists already in a contact centre's account: Connect's CTR and agent
event streams (``CreateConnectStreams=false``) and Connect's recordings bucket
(``CreateRecordingsBucket=false``; CloudFormation cannot add a notification rule to a
bucket outside the stack, so ``qm-ingest bootstrap`` merges it in, leaving the bucket's other
rules alone). Bucket names are parameters because S3's are global.

Rendering needs PyYAML (the development install has it; the server image does not render).
"""

from __future__ import annotations

import sys
from typing import Any

from processor.ops import roles
from processor.ops.bootstrap import (
    DLQ_MAX_RECEIVES,
    MAX_RETENTION_SECONDS,
    QueueSpec,
    bucket_names,
    queue_specs,
    s3_sends_to_queue,
    stream_specs,
    table_specs,
)
from processor.platform.settings import Settings

#: Incomplete multipart uploads (long recordings, archive objects) are removed after this.
ABORT_MULTIPART_DAYS = 7
CREATE_STREAMS = "CreateConnectStreams"
CREATE_RECORDINGS_BUCKET = "CreateRecordingsBucket"
COPIES_RETENTION = "RecordingCopiesRetentionDays"
EXPIRE_COPIES = "ExpireRecordingCopies"
TRUSTED_PRINCIPAL = "TrustedPrincipalArn"
HAS_TRUSTED_PRINCIPAL = "HasTrustedPrincipal"


def logical_id(kind: str, name: str) -> str:
    """``Table`` + ``qm-contacts`` -> ``TableQmContacts``: CloudFormation's ids are alphanumeric."""
    return kind + "".join(part.capitalize() for part in name.replace("_", "-").replace(".", "-").split("-"))


def _bucket_parameter(settings: Settings, bucket: str) -> str:
    return roles.bucket_parameters(settings)[bucket]


def _streams(settings: Settings) -> dict[str, Any]:
    connect = {settings.ctr_stream, settings.agent_event_stream}
    retention = max(24, int(settings.replay_window_hours))
    resources: dict[str, Any] = {}
    for name, shards in stream_specs(settings):
        resource: dict[str, Any] = {
            "Type": "AWS::Kinesis::Stream",
            "Properties": {
                "Name": name,
                "ShardCount": shards,
                "RetentionPeriodHours": retention,
                "StreamEncryption": {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"},
            },
        }
        if name in connect:
            resource["Condition"] = CREATE_STREAMS
        resources[logical_id("Stream", name)] = resource
    return resources


def _tables(settings: Settings) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for spec in table_specs(settings):
        properties = spec.create_request()
        properties["SSESpecification"] = {"SSEEnabled": True}
        properties["PointInTimeRecoverySpecification"] = {"PointInTimeRecoveryEnabled": True}
        if spec.ttl_attribute:
            properties["TimeToLiveSpecification"] = {"AttributeName": spec.ttl_attribute, "Enabled": True}
        resources[logical_id("Table", spec.name)] = {
            "Type": "AWS::DynamoDB::Table",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": properties,
        }
    return resources


def _queue(name: str, attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        "Type": "AWS::SQS::Queue",
        "Properties": {
            "QueueName": name,
            "MessageRetentionPeriod": MAX_RETENTION_SECONDS,
            "SqsManagedSseEnabled": True,
            **attributes,
        },
    }


def _queues(settings: Settings) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    for spec in queue_specs(settings):
        queue_id = logical_id("Queue", spec.name)
        attributes: dict[str, Any] = {}
        if spec.dead_letter:
            dlq_id = logical_id("Queue", spec.dead_letter_name)
            resources[dlq_id] = _queue(spec.dead_letter_name, {})
            attributes["RedrivePolicy"] = {
                "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
                "maxReceiveCount": DLQ_MAX_RECEIVES,
            }
        if spec.visibility_seconds is not None:
            attributes["VisibilityTimeout"] = spec.visibility_seconds
        resources[queue_id] = _queue(spec.name, attributes)
        if spec.notified_by is not None:
            resources[queue_id + "Policy"] = _queue_policy(settings, spec, queue_id)
    return resources


def _queue_policy(settings: Settings, spec: QueueSpec, queue_id: str) -> dict[str, Any]:
    assert spec.notified_by is not None
    bucket, _, sid, _ = spec.notified_by
    source = f"arn:${{AWS::Partition}}:s3:::${{{_bucket_parameter(settings, bucket)}}}"
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": queue_id}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [s3_sends_to_queue(sid, {"Fn::GetAtt": [queue_id, "Arn"]}, {"Fn::Sub": source})],
            },
        },
    }


def _buckets(settings: Settings) -> dict[str, Any]:
    notifications: dict[str, list[dict[str, Any]]] = {}
    waits: dict[str, list[str]] = {}
    for spec in queue_specs(settings):
        if spec.notified_by is None:
            continue
        bucket, _, _, prefix = spec.notified_by
        queue_id = logical_id("Queue", spec.name)
        rule: dict[str, Any] = {"Event": "s3:ObjectCreated:*", "Queue": {"Fn::GetAtt": [queue_id, "Arn"]}}
        if prefix:
            rule["Filter"] = {"S3Key": {"Rules": [{"Name": "prefix", "Value": prefix}]}}
        notifications.setdefault(bucket, []).append(rule)
        waits.setdefault(bucket, []).append(queue_id + "Policy")  # S3 checks it may send
    resources: dict[str, Any] = {}
    for bucket in bucket_names(settings):
        properties: dict[str, Any] = {
            "BucketName": {"Ref": _bucket_parameter(settings, bucket)},
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
            "LifecycleConfiguration": {
                "Rules": [
                    {
                        "Id": "abort-incomplete-multipart-uploads",
                        "Status": "Enabled",
                        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_MULTIPART_DAYS},
                    }
                ]
            },
        }
        if bucket == settings.recordings_copy_bucket:
            properties["LifecycleConfiguration"]["Rules"].append(
                {
                    "Fn::If": [
                        EXPIRE_COPIES,
                        {
                            "Id": "expire-recording-copies",
                            "Status": "Enabled",
                            "ExpirationInDays": {"Ref": COPIES_RETENTION},
                        },
                        {"Ref": "AWS::NoValue"},
                    ]
                }
            )
        if bucket in notifications:
            properties["NotificationConfiguration"] = {"QueueConfigurations": notifications[bucket]}
        resource: dict[str, Any] = {
            "Type": "AWS::S3::Bucket",
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": properties,
        }
        if bucket in waits:
            resource["DependsOn"] = waits[bucket]
        if bucket == settings.recordings_bucket:
            resource["Condition"] = CREATE_RECORDINGS_BUCKET
        resources[logical_id("Bucket", bucket)] = resource
    return resources


def role_id(role: roles.Role) -> str:
    return logical_id("Role", role.component)


def _roles(settings: Settings) -> dict[str, Any]:
    """One role per component (processor/ops/roles.py): ECS tasks and the trusted principal
    (the account by default: its users and roles that may call sts:AssumeRole) assume it."""
    trusted = {
        "Fn::If": [
            HAS_TRUSTED_PRINCIPAL,
            {"Ref": TRUSTED_PRINCIPAL},
            {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"},
        ]
    }
    resources: dict[str, Any] = {}
    for role in roles.roles(settings):
        policy = role.policy()
        for statement in policy["Statement"]:
            statement["Resource"] = [{"Fn::Sub": r} if "${" in r else r for r in statement["Resource"]]
        resources[role_id(role)] = {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": role.description,
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ecs-tasks.amazonaws.com", "AWS": trusted},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "Policies": [{"PolicyName": f"qm-ingest-{role.component}", "PolicyDocument": policy}],
            },
        }
    return resources


#: Settings whose values name the stack's resources: the ECS task gets them in its environment.
NAMED_SETTINGS = (
    "ctr_stream",
    "agent_event_stream",
    "output_stream",
    "contacts_table",
    "quarantine_table",
    "users_table",
    "join_table",
    "config_table",
    "commands_table",
    "agents_table",
    "audit_table",
    "archive_cursor_table",
    "recordings_queue",
    "screen_results_queue",
    "archive_queue",
    "application_name",
    "agent_application_name",
)
QM_STACK = "QmStackName"
#: Seconds ECS waits after SIGTERM before SIGKILL: `run` stops in under 10 (its KCL workers
#: checkpoint and release their leases); Fargate allows at most 120.
ECS_STOP_TIMEOUT = 60
HEALTH_COMMAND = ["CMD", "python", "-m", "processor.entrypoints.probe", "healthz"]  # as the Dockerfile's


def _imported(output: str) -> dict[str, Any]:
    """An output of the main stack (exported as ``<stack name>-<output>``)."""
    return {"Fn::ImportValue": {"Fn::Sub": "${" + QM_STACK + "}-" + output}}


def _environment(settings: Settings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"Name": "QM_" + name.upper(), "Value": str(getattr(settings, name))} for name in NAMED_SETTINGS
    ]
    for bucket, setting in (
        (settings.recordings_bucket, "QM_RECORDINGS_BUCKET"),
        (settings.quarantine_bucket, "QM_QUARANTINE_BUCKET"),
        (settings.screen_bucket, "QM_SCREEN_BUCKET"),
        (settings.archive_bucket, "QM_ARCHIVE_BUCKET"),
        (settings.recordings_copy_bucket, "QM_RECORDINGS_COPY_BUCKET"),
    ):
        env.append({"Name": setting, "Value": _imported(_bucket_parameter(settings, bucket))})
    env.append({"Name": "QM_INSTANCE_ARN", "Value": {"Ref": "ConnectInstanceArn"}})
    env.append({"Name": "AWS_REGION", "Value": {"Ref": "AWS::Region"}})
    return sorted(env, key=lambda e: e["Name"])


def _ecs(settings: Settings) -> dict[str, Any]:
    """``qm-ingest run`` on ECS (Fargate): a cluster, the task with the service role, and a
    service of ``DesiredCount`` tasks. The KCL balances the shards' leases between the tasks."""
    service_role = _imported(role_id(roles.service(settings)) + "Arn")
    return {
        "EcsCluster": {"Type": "AWS::ECS::Cluster", "Properties": {}},
        "EcsLogGroup": {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {"RetentionInDays": 30},
        },
        "EcsExecutionRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "Description": "ECS pulls the image and writes the task's logs (not the task's own rights)",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "ManagedPolicyArns": [
                    {
                        "Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                        "AmazonECSTaskExecutionRolePolicy"
                    }
                ],
            },
        },
        "EcsTaskDefinition": {
            "Type": "AWS::ECS::TaskDefinition",
            "Properties": {
                "Family": "qm-ingest",
                "RequiresCompatibilities": ["FARGATE"],
                "NetworkMode": "awsvpc",
                "Cpu": "1024",
                "Memory": "2048",
                "TaskRoleArn": service_role,
                "ExecutionRoleArn": {"Fn::GetAtt": ["EcsExecutionRole", "Arn"]},
                "ContainerDefinitions": [
                    {
                        "Name": "qm-ingest",
                        "Image": {"Ref": "ContainerImage"},
                        "Command": ["run"],
                        "Essential": True,
                        "StopTimeout": ECS_STOP_TIMEOUT,
                        "PortMappings": [{"ContainerPort": settings.health_port}],
                        "HealthCheck": {
                            "Command": HEALTH_COMMAND,
                            "Interval": 30,
                            "Timeout": 5,
                            "Retries": 3,
                            "StartPeriod": 60,
                        },
                        "Environment": _environment(settings),
                        "LogConfiguration": {
                            "LogDriver": "awslogs",
                            "Options": {
                                "awslogs-group": {"Ref": "EcsLogGroup"},
                                "awslogs-region": {"Ref": "AWS::Region"},
                                "awslogs-stream-prefix": "qm-ingest",
                            },
                        },
                    }
                ],
            },
        },
        "EcsService": {
            "Type": "AWS::ECS::Service",
            "Properties": {
                "Cluster": {"Ref": "EcsCluster"},
                "TaskDefinition": {"Ref": "EcsTaskDefinition"},
                "DesiredCount": {"Ref": "DesiredCount"},
                "LaunchType": "FARGATE",
                # A new task starts before an old one stops: the KCL hands the leases over.
                "DeploymentConfiguration": {
                    "MinimumHealthyPercent": 100,
                    "MaximumPercent": 200,
                    "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
                },
                "NetworkConfiguration": {
                    "AwsvpcConfiguration": {
                        "AssignPublicIp": "DISABLED",
                        "Subnets": {"Ref": "Subnets"},
                        "SecurityGroups": {"Ref": "SecurityGroups"},
                    }
                },
            },
        },
    }


def _ecs_parameters() -> dict[str, Any]:
    return {
        QM_STACK: {
            "Type": "String",
            "Default": "qm-ingest",
            "Description": "The stack of deploy/qm-ingest.yaml (its roles and bucket names are imported)",
        },
        "ContainerImage": {
            "Type": "String",
            "Description": "The qm-ingest image "
            "(e.g. <account>.dkr.ecr.<region>.amazonaws.com/qm-ingest:1.0)",
        },
        "DesiredCount": {
            "Type": "Number",
            "Default": 1,
            "MinValue": 0,
            "Description": "Tasks of `qm-ingest run`; "
            "more than the CTR stream's shards only wait for a lease",
        },
        "Subnets": {
            "Type": "List<AWS::EC2::Subnet::Id>",
            "Description": "Private subnets of the tasks (a route to AWS: NAT or VPC endpoints)",
        },
        "SecurityGroups": {
            "Type": "List<AWS::EC2::SecurityGroup::Id>",
            "Description": "Security groups of the tasks (outbound HTTPS; inbound only for /metrics)",
        },
        "ConnectInstanceArn": {
            "Type": "String",
            "AllowedPattern": "^(any|arn:aws[a-z-]*:connect:.+)$",
            "Description": "QM_INSTANCE_ARN of the tasks: the Connect instance(s) whose CTRs are imported "
            "(comma-separated ARNs, or `any`)",
        },
    }


def ecs_template(settings: Settings) -> dict[str, Any]:
    """``qm-ingest run`` on ECS, a second stack on top of :func:`template`'s (deploy/qm-ingest-ecs.yaml)."""
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "qm-ingest on ECS Fargate "
        "(generated by processor/ops/stack.py; do not edit, run `make stack`)",
        "Parameters": _ecs_parameters(),
        "Resources": _ecs(settings),
        "Outputs": {
            "Cluster": {"Value": {"Ref": "EcsCluster"}},
            "Service": {"Value": {"Fn::GetAtt": ["EcsService", "Name"]}},
        },
    }


def _yes_no(description: str) -> dict[str, Any]:
    return {
        "Type": "String",
        "AllowedValues": ["true", "false"],
        "Default": "true",
        "Description": description,
    }


def template(settings: Settings) -> dict[str, Any]:
    """The stack as a CloudFormation template (a dict: render it with :func:`render`)."""
    parameters: dict[str, Any] = {
        CREATE_STREAMS: _yes_no(
            f"Create the CTR ({settings.ctr_stream}) and agent event ({settings.agent_event_stream}) "
            "streams; false when Amazon Connect's data streaming already has them"
        ),
        CREATE_RECORDINGS_BUCKET: _yes_no(
            "Create the recordings bucket; false when it is Amazon Connect's (then run "
            "`qm-ingest bootstrap` once to add the ObjectCreated rule to it)"
        ),
    }
    parameters[COPIES_RETENTION] = {
        "Type": "Number",
        "MinValue": 0,
        "Default": settings.recordings_copy_retention_days,
        "Description": "Days QM keeps its copy of a call recording (QM_RECORDINGS_COPY_RETENTION_DAYS); "
        "0: until deleted",
    }
    parameters[TRUSTED_PRINCIPAL] = {
        "Type": "String",
        "Default": "",
        "Description": "Who may assume the component roles besides ECS tasks (an IAM user or role "
        "ARN); empty: any principal of this account allowed to call sts:AssumeRole",
    }
    for bucket in bucket_names(settings):
        parameters[_bucket_parameter(settings, bucket)] = {
            "Type": "String",
            "Default": bucket,
            "Description": "S3 bucket names are global: choose your own",
        }
    resources = {
        **_streams(settings),
        **_tables(settings),
        **_queues(settings),
        **_buckets(settings),
        **_roles(settings),
    }
    outputs: dict[str, Any] = {
        role_id(role) + "Arn": {"Value": {"Fn::GetAtt": [role_id(role), "Arn"]}}
        for role in roles.roles(settings)
    }
    for bucket in bucket_names(settings):
        parameter = _bucket_parameter(settings, bucket)
        outputs[parameter] = {"Value": {"Ref": parameter}}
    for key, output in outputs.items():
        output["Export"] = {"Name": {"Fn::Sub": "${AWS::StackName}-" + key}}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "qm-ingest: Amazon Connect contacts into QM (generated by processor/ops/stack.py; "
        "do not edit, run `make stack`)",
        "Parameters": parameters,
        "Conditions": {
            CREATE_STREAMS: {"Fn::Equals": [{"Ref": CREATE_STREAMS}, "true"]},
            CREATE_RECORDINGS_BUCKET: {"Fn::Equals": [{"Ref": CREATE_RECORDINGS_BUCKET}, "true"]},
            HAS_TRUSTED_PRINCIPAL: {"Fn::Not": [{"Fn::Equals": [{"Ref": TRUSTED_PRINCIPAL}, ""]}]},
            EXPIRE_COPIES: {"Fn::Not": [{"Fn::Equals": [{"Ref": COPIES_RETENTION}, 0]}]},
        },
        "Resources": resources,
        "Outputs": outputs,
    }


def render(document: dict[str, Any]) -> str:
    import yaml  # development install only (see the module's docstring)

    header = "# Generated by `make stack` (processor/ops/stack.py) from bootstrap's specifications.\n"

    class Dumper(yaml.SafeDumper):  # type: ignore[misc]  # PyYAML ships no types
        def ignore_aliases(self, data: Any) -> bool:  # CloudFormation rejects YAML aliases
            return True

    body: str = yaml.dump(document, Dumper=Dumper, sort_keys=False, width=110)
    return header + body


def default_settings() -> Settings:
    """The settings' defaults, whatever the environment says (what the committed file holds)."""
    return Settings.model_construct()


def main() -> None:
    """``python -m processor.ops.stack [--defaults] [--ecs]``: the template (or the ECS one) for the
    settings in effect."""
    settings = default_settings() if "--defaults" in sys.argv[1:] else Settings()
    build = ecs_template if "--ecs" in sys.argv[1:] else template
    sys.stdout.write(render(build(settings)))


if __name__ == "__main__":
    main()
