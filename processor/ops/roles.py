"""What each component may do in AWS: one IAM role per component, least privilege.

The stack (:mod:`processor.ops.stack`) renders these as ``AWS::IAM::Role`` resources, and the
IAM enforcement test (``tests/e2e/test_iam_roles.py``) deploys that stack into the embedded
emulator with enforcement on and runs the end-to-end scenario with each role's credentials,
so a permission the code needs and this module forgets fails a test, as does one it grants
and should not (the test tries those too). docs/deploy.md lists each role's actions.

Resources are written as CloudFormation ``Fn::Sub`` strings: ``${AWS::Region}``,
``${AWS::AccountId}``, ``${AWS::Partition}`` and the stack's bucket parameters
(``${RecordingsBucketName}``...).

Components:

* **service**: ``qm-ingest run`` (the KCL workers, the joiner, recordings, screen control,
  screen results, users sync, follow mode).
* **console**: ``qm-ingest console``.
* **operator**: the commands that write (``replay``, ``backfill``, ``quarantine retry``,
  ``reconcile --fix``) and those that read (``doctor``, ``audit``, ``contacts list``).
* **desktop**: qm-desktop on the agent PCs: its commands from the agents' queues, results to
  the results queue; it uploads only through the pre-signed URLs a command carries (those are
  signed by the service role, so the desktop role itself holds no S3 permission at all).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from processor.adapters.dynamodb.users_table import OS_LOGIN_INDEX
from processor.ops.bootstrap import bucket_names, queue_specs, stream_specs, table_specs
from processor.platform.settings import Settings

PARTITION = "${AWS::Partition}"
ACCOUNT = "${AWS::Region}:${AWS::AccountId}"
AGENT_QUEUES = "qm-agent-*"  # processor/core/agent_queue.py: every agent's FIFO queue

ITEM_READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:Scan")
ITEM_WRITE = (
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
)
# TransactWriteItems / TransactGetItems are authorised as the item actions they hold.
STREAM_READ = (
    "kinesis:DescribeStream",
    "kinesis:DescribeStreamSummary",
    "kinesis:ListShards",
    "kinesis:GetShardIterator",
    "kinesis:GetRecords",
)
STREAM_WRITE = ("kinesis:PutRecord", "kinesis:PutRecords")
QUEUE_CONSUME = (
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueUrl",
    "sqs:GetQueueAttributes",
)
# The batch actions (DeleteMessageBatch, SendMessageBatch...) are authorised as these.
QUEUE_SEND = ("sqs:SendMessage", "sqs:GetQueueUrl", "sqs:GetQueueAttributes")
# The KCL's own tables: leases, coordinator state, worker metrics (it creates them itself).
KCL_TABLES = (
    "dynamodb:CreateTable",
    "dynamodb:DescribeTable",
    "dynamodb:UpdateTable",
    "dynamodb:DescribeContinuousBackups",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:TagResource",
    "dynamodb:DescribeTimeToLive",
    *ITEM_READ,
    *ITEM_WRITE,
)
CONNECT_USERS = (
    "connect:ListUsers",
    "connect:DescribeUser",
    "connect:ListRoutingProfiles",
    "connect:ListUserHierarchyGroups",
)


@dataclass(frozen=True)
class Statement:
    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]

    def document(self) -> dict[str, Any]:
        return {
            "Sid": self.sid,
            "Effect": "Allow",
            "Action": sorted(set(self.actions)),
            "Resource": list(self.resources),
        }


@dataclass(frozen=True)
class Role:
    component: str
    description: str
    statements: tuple[Statement, ...]

    def policy(self) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [s.document() for s in self.statements]}


def table(name: str) -> str:
    return f"arn:{PARTITION}:dynamodb:{ACCOUNT}:table/{name}"


def tables(*names: str) -> tuple[str, ...]:
    """The tables and their indexes (a Query on an index is authorised on the index's ARN)."""
    return tuple(arn for name in names for arn in (table(name), f"{table(name)}/index/*"))


def stream(name: str) -> str:
    return f"arn:{PARTITION}:kinesis:{ACCOUNT}:stream/{name}"


def queue(name: str) -> str:
    return f"arn:{PARTITION}:sqs:{ACCOUNT}:{name}"


def bucket_parameters(settings: Settings) -> dict[str, str]:
    """Bucket name -> the stack's parameter naming it (S3 names are global)."""
    names = (
        "RecordingsBucketName",
        "QuarantineBucketName",
        "ScreenBucketName",
        "ArchiveBucketName",
        "RecordingCopiesBucketName",
    )
    return dict(zip(bucket_names(settings), names, strict=True))


def _bucket(settings: Settings, name: str) -> str:
    parameter = bucket_parameters(settings).get(name)
    return "${" + parameter + "}" if parameter else name


def bucket(settings: Settings, name: str) -> str:
    return f"arn:{PARTITION}:s3:::{_bucket(settings, name)}"


def objects(settings: Settings, name: str, prefix: str = "") -> str:
    return f"arn:{PARTITION}:s3:::{_bucket(settings, name)}/{prefix}*"


def kcl_tables(*applications: str) -> tuple[str, ...]:
    return tuple(arn for app in applications for arn in (*tables(app), table(f"{app}-*")))


def recordings_buckets(settings: Settings) -> tuple[str, ...]:
    extra = (b.strip() for b in settings.recordings_extra_buckets.split(","))
    return (settings.recordings_bucket, *(b for b in extra if b))


def connect_instances(settings: Settings) -> tuple[str, ...]:
    instances = tuple(sorted(settings.accepted_instances.arns)) or (
        f"arn:{PARTITION}:connect:{ACCOUNT}:instance/*",
    )
    return tuple(arn for instance in instances for arn in (instance, f"{instance}/*"))


def _probes(s: Settings) -> tuple[Statement, ...]:
    """What /readyz, doctor and the console's health page look at (metadata, no data)."""
    return (
        Statement(
            "DescribeTables",
            ("dynamodb:DescribeTable", "dynamodb:DescribeTimeToLive"),
            tuple(table(spec.name) for spec in table_specs(s)),
        ),
        # The reachability probe: ListStreams names no stream.
        Statement("ProbeKinesis", ("kinesis:ListStreams",), ("*",)),
        Statement(
            "DescribeStreams",
            ("kinesis:DescribeStreamSummary",),
            tuple(stream(name) for name, _ in stream_specs(s)),
        ),
        Statement(
            "DescribeQueues",
            ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"),
            tuple(
                queue(name)
                for q in queue_specs(s)
                for name in ((q.name, q.dead_letter_name) if q.dead_letter else (q.name,))
            ),
        ),
        # HeadBucket is authorised as ListBucket; GetBucketNotification: doctor checks the rules.
        Statement(
            "CheckBuckets",
            (
                "s3:ListBucket",
                "s3:GetBucketLocation",
                "s3:GetBucketNotification",
                "s3:GetEncryptionConfiguration",
            ),
            tuple(bucket(s, b) for b in (*recordings_buckets(s), *bucket_names(s)[1:])),
        ),
    )


def _emission(s: Settings, sid: str) -> tuple[Statement, ...]:
    """The join and the emission of QM contacts (the CTR path, re-emission after a user's
    names arrive): contacts, join state, users, quarantine, the output stream, recordings."""
    return (
        Statement(
            f"{sid}Tables",
            ITEM_READ + ITEM_WRITE,
            tables(s.contacts_table, s.join_table, s.quarantine_table),
        ),
        # The QM users' names go into each contact (the seed's First/Last Name).
        Statement(f"{sid}ReadUsers", ITEM_READ, tables(s.users_table)),
        Statement(f"{sid}Output", STREAM_READ + STREAM_WRITE, (stream(s.output_stream),)),
        Statement(
            f"{sid}ReadRecordings",
            ("s3:GetObject",),
            tuple(objects(s, b, s.recordings_key_prefix) for b in recordings_buckets(s)),
        ),
        # QM's own copy of each recording: copied server-side when first read (CopyObject, or
        # UploadPartCopy in parts: AbortMultipartUpload when one fails), played by the console.
        Statement(
            f"{sid}KeepRecordingCopies",
            ("s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"),
            (objects(s, s.recordings_copy_bucket),),
        ),
        # Quarantined payloads hold phone numbers: written here, read only by the operator.
        Statement(f"{sid}WriteQuarantine", ("s3:PutObject",), (objects(s, s.quarantine_bucket),)),
        Statement(f"{sid}ReadConfig", ("dynamodb:GetItem",), (table(s.config_table),)),
    )


def service(settings: Settings) -> Role:
    s = settings
    return Role(
        "service",
        "qm-ingest run: the CTR and agent event consumers, the join, recordings, screen control",
        (
            *_probes(s),
            *_emission(s, "Import"),
            Statement(
                "ReadConnectStreams", STREAM_READ, (stream(s.ctr_stream), stream(s.agent_event_stream))
            ),
            Statement("KclLeases", KCL_TABLES, kcl_tables(s.application_name, s.agent_application_name)),
            Statement(
                "ServiceTables",
                ITEM_READ + ITEM_WRITE,
                tables(s.commands_table, s.agents_table, s.archive_cursor_table, s.users_table),
            ),
            Statement(
                "ConsumeQueues",
                QUEUE_CONSUME,
                (queue(s.recordings_queue), queue(s.screen_results_queue), queue(s.archive_queue)),
            ),
            Statement(
                "AgentCommandQueues",
                ("sqs:CreateQueue", "sqs:TagQueue", *QUEUE_SEND),
                (queue(AGENT_QUEUES),),
            ),
            Statement("ReadArchive", ("s3:GetObject",), (objects(s, s.archive_bucket),)),
            # The screen-extraction commands carry pre-signed PUT URLs signed with this role.
            Statement("SignScreenUploads", ("s3:PutObject",), (objects(s, s.screen_bucket),)),
            Statement("SyncUsersFromConnect", CONNECT_USERS, connect_instances(s)),
            # doctor before run starts: Connect's streaming and recordings point here.
            Statement("CheckConnectStorage", ("connect:ListInstanceStorageConfigs",), connect_instances(s)),
        ),
    )


def console(settings: Settings) -> Role:
    s = settings
    return Role(
        "console",
        "qm-ingest console: contacts, playback, users (names reach waiting contacts), configuration",
        (
            *_probes(s),
            *_emission(s, "Names"),
            Statement(
                "ConsoleTables",
                ITEM_READ + ITEM_WRITE,
                tables(s.config_table, s.audit_table, s.users_table),
            ),
            Statement("ReadAgents", ITEM_READ, tables(s.agents_table, s.commands_table)),
            Statement("PlayScreenRecordings", ("s3:GetObject",), (objects(s, s.screen_bucket),)),
            # The users page shows how many commands wait on each agent's queue.
            Statement(
                "AgentQueueDepths", ("sqs:GetQueueUrl", "sqs:GetQueueAttributes"), (queue(AGENT_QUEUES),)
            ),
            Statement("SyncUsersFromConnect", CONNECT_USERS, connect_instances(s)),
        ),
    )


def operator(settings: Settings) -> Role:
    s = settings
    return Role(
        "operator",
        "replay, backfill, quarantine retry, reconcile, doctor, audit, contacts list",
        (
            *_probes(s),
            *_emission(s, "Reimport"),
            Statement("ReadCtrStream", STREAM_READ, (stream(s.ctr_stream),)),
            # replay --from-checkpoints reads the leases; --stop-workers moves them.
            Statement(
                "KclLeases",
                ("dynamodb:DescribeTable", *ITEM_READ, *ITEM_WRITE),
                kcl_tables(s.application_name),
            ),
            Statement("ArchiveCursor", ITEM_READ + ITEM_WRITE, tables(s.archive_cursor_table)),
            Statement("ReadArchive", ("s3:GetObject",), (objects(s, s.archive_bucket),)),
            Statement("ListArchive", ("s3:ListBucket",), (bucket(s, s.archive_bucket),)),
            # doctor: Connect's data streaming and call recordings point at this deployment.
            Statement("CheckConnectStorage", ("connect:ListInstanceStorageConfigs",), connect_instances(s)),
            # quarantine retry reads the payloads it imports again.
            Statement(
                "ReadQuarantine", ("s3:GetObject", "s3:DeleteObject"), (objects(s, s.quarantine_bucket),)
            ),
        ),
    )


def desktop(settings: Settings) -> Role:
    s = settings
    return Role(
        "desktop",
        "qm-desktop on agent PCs: its commands, its results; uploads only through pre-signed URLs",
        (
            Statement(
                "ReceiveCommands",
                ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueUrl"),
                (queue(AGENT_QUEUES),),
            ),
            Statement(
                "SendResults", ("sqs:SendMessage", "sqs:GetQueueUrl"), (queue(s.screen_results_queue),)
            ),
            # Which agent holds the PC's session: the users table's OS-login index (keys only).
            Statement(
                "FindAgentByOsLogin", ("dynamodb:Query",), (f"{table(s.users_table)}/index/{OS_LOGIN_INDEX}",)
            ),
        ),
    )


def roles(settings: Settings) -> list[Role]:
    return [service(settings), console(settings), operator(settings), desktop(settings)]


def roles_table(settings: Settings) -> str:
    """Markdown: each role's statements (docs/deploy.md holds it; a test checks it is current)."""
    lines: list[str] = []
    for role in roles(settings):
        lines += [
            f"**{role.component}**: {role.description}",
            "",
            "| Statement | Actions | Resources |",
            "|---|---|---|",
        ]
        for statement in role.statements:
            actions = ", ".join(f"`{a}`" for a in sorted(set(statement.actions)))
            resources = "<br>".join(f"`{r}`" for r in statement.resources)
            lines.append(f"| {statement.sid} | {actions} | {resources} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
