"""``qm-ingest doctor``: is this environment able to run the service, and if not, what to do.

Checks the settings, the AWS endpoint and credentials, every resource and its
configuration (stream retention against the replay window, encryption and whether this
role may decrypt, join-table TTL, queue retention and dead-letter queue, the recordings
bucket's notification covering both ``ObjectCreated:Put`` and
``ObjectCreated:CompleteMultipartUpload``), Java and the KCL jars. Each problem comes
with its fix. ``qm-ingest run`` runs the same checks at start (:func:`preflight`) and
refuses to start on a fatal one.

Severity: ``fatal`` (the service cannot work: it will not start), ``warning`` (it works,
but something will hurt: data loss on a long outage, personal data unencrypted, ...),
``unknown`` (this environment cannot answer the question; the message says why), ``ok``.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from processor.adapters.aws import NETWORK_ERRORS, AwsClients, error_code
from processor.ops.bootstrap import DLQ_MAX_RECEIVES, TableSpec, table_specs
from processor.platform.exceptions import ConfigurationError
from processor.platform.logs import get_logger
from processor.platform.settings import SETTINGS_FILE_ENV, CtrSource, Settings, unknown_variables

log = get_logger("processor.ops.doctor")

BOOTSTRAP_FIX = "run `qm-ingest bootstrap` (creates what is missing, leaves the rest alone)"
#: An extra recordings bucket is Connect's (an earlier one): bootstrap does not create it.
EXTRA_BUCKET_FIX = (
    "name only buckets that hold Connect's call recordings in QM_RECORDINGS_EXTRA_BUCKETS "
    "(remove one that is gone), or grant the service s3:ListBucket and s3:GetObject on it"
)
REQUIRED_EVENTS = ("s3:ObjectCreated:Put", "s3:ObjectCreated:CompleteMultipartUpload")
MIN_JAVA = 17
MIN_VISIBILITY_TIMEOUT_S = 30
DECRYPT_TEST_SHARDS = 8
_MISSING_QUEUE = ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist")
_KMS_ERRORS = (
    "KMSAccessDeniedException",
    "KMSDisabledException",
    "KMSInvalidStateException",
    "KMSNotFoundException",
    "KMSOptInRequired",
    "AccessDeniedException",
    "KMS.DisabledException",
    "KMS.NotFoundException",
)


class Severity(StrEnum):
    OK = "ok"
    UNKNOWN = "unknown"
    WARNING = "warning"
    FATAL = "fatal"


@dataclass(frozen=True)
class Finding:
    subject: str
    severity: Severity
    message: str
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


class Findings(list[Finding]):
    def ok(self, subject: str, message: str) -> None:
        self.append(Finding(subject, Severity.OK, message))

    def warn(self, subject: str, message: str, fix: str) -> None:
        self.append(Finding(subject, Severity.WARNING, message, fix))

    def fatal(self, subject: str, message: str, fix: str) -> None:
        self.append(Finding(subject, Severity.FATAL, message, fix))

    def unknown(self, subject: str, message: str) -> None:
        self.append(Finding(subject, Severity.UNKNOWN, message))

    @property
    def fatal_ones(self) -> list[Finding]:
        return [f for f in self if f.severity is Severity.FATAL]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self if f.severity is Severity.WARNING]


def _code(exc: BaseException) -> str:
    return error_code(exc) or type(exc).__name__


class Doctor:
    def __init__(
        self,
        settings: Settings,
        aws: AwsClients | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        run: Callable[..., subprocess.CompletedProcess[str]] = subprocess.run,
    ) -> None:
        self.settings = settings
        # Two attempts, not eight: an unreachable endpoint must be reported in seconds.
        self.aws = aws or AwsClients(settings.model_copy(update={"aws_max_attempts": 2}))
        self.environ = os.environ if environ is None else environ
        self._run = run
        self.findings = Findings()
        self._caller_arn: str | None = None

    # --- entry points ---------------------------------------------------------------------
    def check_all(self) -> Findings:
        self.check_settings()
        if self.check_endpoint():
            self.check_credentials()
            self.check_streams()
            self.check_tables()
            self.check_tenant()
            queue_arn = self.check_queues()
            self.check_buckets()
            self.check_notification(queue_arn)
            self.check_archive()
            self.check_connect()
        self.check_java()
        self.check_jars()
        return self.findings

    # --- settings ---------------------------------------------------------------------------
    def check_settings(self) -> None:
        f = self.findings
        source = self.environ.get(SETTINGS_FILE_ENV)
        f.ok("settings", "valid" + (f" (environment and {source})" if source else " (environment)"))
        for name, suggestion in unknown_variables(self.environ):
            hint = f"did you mean {suggestion}?" if suggestion else "see `qm-ingest settings`"
            f.warn("settings", f"{name} is not a setting and is ignored", f"rename or remove it ({hint})")

    # --- endpoint and credentials -------------------------------------------------------------
    def check_endpoint(self) -> bool:
        endpoint = self.settings.aws_endpoint_url or f"AWS ({self.settings.aws_region})"
        subject = "aws endpoint"
        try:
            self.aws.kinesis.list_streams(Limit=1)
        except NETWORK_ERRORS as exc:
            fix = (
                "start the emulator (`qm-ingest local up`) or LocalStack, or fix AWS_ENDPOINT_URL"
                if self.settings.aws_endpoint_url
                else "check the network path to AWS (VPC endpoints, proxy, DNS) and AWS_REGION"
            )
            self.findings.fatal(subject, f"cannot reach {endpoint}: {exc}", fix)
            return False
        except NoCredentialsError:
            self.findings.fatal(
                "aws credentials",
                "no AWS credentials found",
                "attach an IAM role to the task/instance or set AWS_PROFILE / AWS_ACCESS_KEY_ID",
            )
            return False
        except ClientError:
            pass  # answered: reachable; what the answer means is for the checks below
        self.findings.ok(subject, f"{endpoint} answers")
        return True

    def check_credentials(self) -> None:
        subject = "aws credentials"
        try:
            identity = self.aws.client("sts").get_caller_identity()
        except ClientError as exc:
            code = _code(exc)
            if code in ("InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "AccessDenied"):
                self.findings.fatal(
                    subject,
                    f"rejected by AWS ({code})",
                    "renew or replace the credentials (role, profile, keys)",
                )
            else:
                self.findings.unknown(
                    subject, f"STS cannot be asked here ({code}); the resource checks test access"
                )
            return
        except BotoCoreError as exc:
            self.findings.unknown(subject, f"STS cannot be asked here ({_code(exc)})")
            return
        self._caller_arn = identity.get("Arn")
        self.findings.ok(subject, f"account {identity.get('Account')}, identity {identity.get('Arn')}")

    # --- Kinesis --------------------------------------------------------------------------------
    def check_streams(self) -> None:
        s = self.settings
        streams = [(s.ctr_stream, True), (s.agent_event_stream, True), (s.output_stream, False)]
        if s.ctr_source is CtrSource.FIREHOSE_S3:
            # CTRs come from the Firehose archive: the stream is only needed by `replay`.
            streams = streams[1:]
            self.findings.ok(f"kinesis stream {s.ctr_stream}", "not read: QM_CTR_SOURCE=firehose-s3")
        for name, consumed in streams:
            self._check_stream(name, consumed)

    def _check_stream(self, name: str, consumed: bool) -> None:
        subject = f"kinesis stream {name}"
        f = self.findings
        try:
            summary = self.aws.kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                f.fatal(subject, "does not exist", BOOTSTRAP_FIX)
            else:
                f.fatal(subject, f"cannot be described ({_code(exc)})", "grant kinesis:DescribeStreamSummary")
            return
        status = summary["StreamStatus"]
        if status not in ("ACTIVE", "UPDATING"):
            f.warn(subject, f"status {status}", "wait until the stream is ACTIVE")
        retention = int(summary["RetentionPeriodHours"])
        window = self.settings.replay_window_hours
        shards = summary.get("OpenShardCount", "?")
        if consumed and retention < window:
            f.warn(
                subject,
                f"retention {retention} h is shorter than the replay window of {window} h: an outage or a "
                "replay longer than the retention loses records",
                f"aws kinesis increase-stream-retention-period --stream-name {name} "
                f"--retention-period-hours {window} (or lower QM_REPLAY_WINDOW_HOURS)",
            )
        else:
            f.ok(subject, f"{status}, {shards} open shard(s), retention {retention} h")
        encryption = summary.get("EncryptionType", "NONE")
        if encryption != "KMS":
            f.warn(
                subject,
                "not encrypted at rest (its records carry personal data)",
                f"aws kinesis start-stream-encryption --stream-name {name} --encryption-type KMS "
                "--key-id alias/aws/kinesis",
            )
            return
        key = str(summary.get("KeyId", ""))
        self._check_key(subject, key)
        if consumed:
            self._check_stream_decrypt(subject, name, key)

    def _check_stream_decrypt(self, subject: str, name: str, key: str) -> None:
        kinesis = self.aws.kinesis
        records: list[Any] = []
        try:
            # The oldest record of the first shards that have one: decrypting it is the proof.
            for shard in kinesis.list_shards(StreamName=name, MaxResults=DECRYPT_TEST_SHARDS)["Shards"]:
                iterator = kinesis.get_shard_iterator(
                    StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
                )["ShardIterator"]
                records = list(kinesis.get_records(ShardIterator=iterator, Limit=1)["Records"])
                if records:
                    break
        except ClientError as exc:
            code = _code(exc)
            if code in _KMS_ERRORS:
                self.findings.fatal(
                    subject,
                    f"this identity may not decrypt the stream ({code})",
                    f"allow kms:Decrypt on {key} for {self._caller_arn or 'the service role'}",
                )
            else:
                self.findings.fatal(
                    subject, f"cannot be read ({code})", "grant kinesis:GetShardIterator/GetRecords"
                )
            return
        except BotoCoreError as exc:
            self.findings.unknown(subject, f"read test not possible: {exc}")
            return
        if records:
            self.findings.ok(subject, f"encrypted with KMS key {key}; a record was read and decrypted")
        else:
            self.findings.unknown(
                subject, f"encrypted with KMS key {key}; no record to read, so decryption is unproven"
            )
        self._simulate_decrypt(subject, key)

    # --- KMS ------------------------------------------------------------------------------------
    def _check_key(self, subject: str, key: str) -> None:
        try:
            meta = self.aws.client("kms").describe_key(KeyId=key)["KeyMetadata"]
        except ClientError as exc:
            code = _code(exc)
            if code in ("NotFoundException",):
                self.findings.fatal(subject, f"KMS key {key} does not exist", "encrypt with an existing key")
            else:
                self.findings.unknown(subject, f"KMS key {key} cannot be described here ({code})")
            return
        except BotoCoreError as exc:
            self.findings.unknown(subject, f"KMS cannot be asked here ({_code(exc)})")
            return
        state = meta.get("KeyState")
        if state != "Enabled":
            self.findings.fatal(
                subject,
                f"KMS key {meta.get('KeyId')} is {state}: nothing encrypted with it can be read",
                f"aws kms enable-key --key-id {meta.get('KeyId')} (or cancel its deletion)",
            )

    def _simulate_decrypt(self, subject: str, key: str) -> None:
        """Ask IAM whether the role may kms:Decrypt (a policy check; the read test is the proof)."""
        arn = self._caller_arn or ""
        match = re.match(r"arn:aws[\w-]*:sts::(\d+):assumed-role/([^/]+)/", arn)
        if not match:
            return
        iam = self.aws.client("iam")
        try:
            role_arn = iam.get_role(RoleName=match.group(2))["Role"]["Arn"]
            result = iam.simulate_principal_policy(
                PolicySourceArn=role_arn, ActionNames=["kms:Decrypt"], ResourceArns=[key]
            )["EvaluationResults"][0]["EvalDecision"]
        except (ClientError, BotoCoreError, KeyError, IndexError) as exc:
            self.findings.unknown(subject, f"IAM policy simulation not possible ({_code(exc)})")
            return
        if result != "allowed":
            self.findings.warn(
                subject,
                f"IAM policy simulation says kms:Decrypt on {key} is {result} for {role_arn}",
                f"add kms:Decrypt on {key} to the role's policy (and the key policy)",
            )

    # --- DynamoDB -------------------------------------------------------------------------------
    def check_tables(self) -> None:
        follow = self.settings.ctr_source is CtrSource.FIREHOSE_S3
        for spec in table_specs(self.settings):
            if spec.name == self.settings.archive_cursor_table and not follow:
                self._check_optional_table(spec.name, "backfill and follow mode")
                continue
            self._check_table(spec)
        lease = self.settings.application_name
        try:
            self.aws.dynamodb.describe_table(TableName=lease)
            self.findings.ok(f"dynamodb table {lease}", "KCL lease table exists")
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                self.findings.ok(
                    f"dynamodb table {lease}", "KCL lease table: created by the KCL at first start"
                )
            else:
                self.findings.fatal(
                    f"dynamodb table {lease}", f"cannot be described ({_code(exc)})", "grant dynamodb:* on it"
                )

    def check_tenant(self) -> None:
        """Which Connect instances are imported: at least one must be named, or 'any' on purpose."""
        from processor.adapters.dynamodb.runtime_config import RuntimeConfigStore

        subject = "tenant check"
        try:
            saved = RuntimeConfigStore(self.aws.dynamodb, self.settings.config_table).load().instance_arn
        except ClientError:
            saved = None  # the config table's own check reports why
        accepted = self.settings.accepted_instances.with_arn(saved)
        if accepted.any_instance:
            self.findings.warn(
                subject,
                "QM_INSTANCE_ARN=any: CTRs and agent events of every Connect instance are imported",
                "name your instance(s) in QM_INSTANCE_ARN or on the console's ACD Configuration page",
            )
        elif not accepted.configured:
            from processor.app.wiring import NO_TENANT

            self.findings.fatal(subject, *NO_TENANT)
        else:
            where = " (with the console's)" if saved else ""
            self.findings.ok(subject, f"imports CTRs of {accepted.describe()}{where}")

    def _check_table(self, spec: TableSpec) -> None:
        subject = f"dynamodb table {spec.name}"
        f = self.findings
        ddb = self.aws.dynamodb
        try:
            table = ddb.describe_table(TableName=spec.name)["Table"]
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                f.fatal(subject, "does not exist", BOOTSTRAP_FIX)
            else:
                f.fatal(subject, f"cannot be described ({_code(exc)})", "grant dynamodb:DescribeTable")
            return
        hash_key = next((k["AttributeName"] for k in table["KeySchema"] if k["KeyType"] == "HASH"), None)
        if hash_key != spec.key:
            f.fatal(
                subject,
                f"partition key is {hash_key!r}, expected {spec.key!r}",
                "point the setting at the right table, or recreate it with `qm-ingest bootstrap`",
            )
            return
        have = {i["IndexName"] for i in table.get("GlobalSecondaryIndexes", [])}
        missing = [name for name, _, _ in spec.indexes if name not in have]
        if missing:
            f.fatal(
                subject,
                f"missing index(es) {', '.join(missing)}",
                "recreate the table with `qm-ingest bootstrap` or add the index"
                " (see processor/ops/bootstrap.py)",
            )
            return
        if spec.ttl_attribute:
            try:
                ttl = ddb.describe_time_to_live(TableName=spec.name)["TimeToLiveDescription"]
            except ClientError as exc:
                f.unknown(subject, f"TTL cannot be read here ({_code(exc)})")
                return
            status = ttl.get("TimeToLiveStatus")
            if status not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != spec.ttl_attribute:
                f.warn(
                    subject,
                    f"TTL on {spec.ttl_attribute!r} is {status} (attribute {ttl.get('AttributeName')!r}): "
                    "expired join state is filtered on read but never deleted, so the table grows forever",
                    f"aws dynamodb update-time-to-live --table-name {spec.name} "
                    f"--time-to-live-specification Enabled=true,AttributeName={spec.ttl_attribute}",
                )
                return
        f.ok(
            subject,
            f"{table.get('TableStatus')}, key {spec.key}"
            + (f", TTL on {spec.ttl_attribute}" if spec.ttl_attribute else ""),
        )

    # --- SQS ------------------------------------------------------------------------------------
    def _check_optional_table(self, name: str, needed_by: str) -> None:
        subject = f"dynamodb table {name}"
        try:
            self.aws.dynamodb.describe_table(TableName=name)
        except ClientError as exc:
            if _code(exc) == "ResourceNotFoundException":
                self.findings.warn(subject, f"does not exist ({needed_by} need it)", BOOTSTRAP_FIX)
            else:
                self.findings.warn(
                    subject, f"cannot be described ({_code(exc)})", "grant dynamodb:DescribeTable"
                )
            return
        self.findings.ok(subject, "exists")

    def check_archive(self) -> None:
        """Follow mode (QM_CTR_SOURCE=firehose-s3): the archive bucket, its queue and the
        notification between them."""
        s = self.settings
        if s.ctr_source is not CtrSource.FIREHOSE_S3:
            return
        f = self.findings
        self._check_bucket(s.archive_bucket, False)
        attrs = self._checked_queue(s.archive_queue)
        if attrs is None:
            return
        f.ok(f"sqs queue {s.archive_queue}", "exists")
        subject = f"s3 notification {s.archive_bucket} -> {s.archive_queue}"
        try:
            config = self.aws.s3.get_bucket_notification_configuration(Bucket=s.archive_bucket)
        except ClientError as exc:
            if _code(exc) not in ("NoSuchBucket", "404"):
                f.fatal(subject, f"cannot be read ({_code(exc)})", "grant s3:GetBucketNotification")
            return
        rules = [
            q for q in config.get("QueueConfigurations", []) if q.get("QueueArn") == attrs.get("QueueArn")
        ]
        events: set[str] = {e for q in rules for e in q.get("Events", [])}
        if not rules or not _covered("s3:ObjectCreated:Put", events):
            f.fatal(
                subject,
                "the archive bucket sends no ObjectCreated events to the queue: new Firehose objects are "
                "never imported",
                BOOTSTRAP_FIX,
            )
        else:
            f.ok(subject, "new Firehose objects reach the queue")

    def _queue(self, name: str) -> tuple[str, dict[str, str]] | None:
        sqs = self.aws.sqs
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as exc:
            if _code(exc) in _MISSING_QUEUE:
                return None
            raise
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
        return url, {str(k): v for k, v in attributes.items()}

    def check_queues(self) -> str | None:
        """Returns the recordings queue's ARN (for the notification check) when it exists."""
        s = self.settings
        f = self.findings
        found = self._checked_queue(s.recordings_queue)
        arn = None
        if found is not None:
            arn = found.get("QueueArn")
            self._check_recordings_queue(s.recordings_queue, found)
        results = self._checked_queue(s.screen_results_queue)
        if results is not None:
            f.ok(f"sqs queue {s.screen_results_queue}", "exists")
        return arn

    def _checked_queue(self, name: str) -> dict[str, str] | None:
        try:
            found = self._queue(name)
        except ClientError as exc:
            self.findings.fatal(
                f"sqs queue {name}", f"cannot be read ({_code(exc)})", "grant sqs:GetQueueUrl/Attributes"
            )
            return None
        if found is None:
            self.findings.fatal(f"sqs queue {name}", "does not exist", BOOTSTRAP_FIX)
            return None
        return found[1]

    def _check_recordings_queue(self, name: str, attrs: dict[str, str]) -> None:
        subject = f"sqs queue {name}"
        f = self.findings
        problems = 0
        retention = int(attrs.get("MessageRetentionPeriod", "0"))
        window_s = self.settings.replay_window_hours * 3600
        if retention < window_s:
            problems += 1
            f.warn(
                subject,
                f"retention {retention // 3600} h is shorter than the replay window of "
                f"{self.settings.replay_window_hours} h: recording notifications are lost in a longer outage",
                "aws sqs set-queue-attributes --queue-url <url> "
                f"--attributes MessageRetentionPeriod={max(window_s, 1209600)}",
            )
        visibility = int(attrs.get("VisibilityTimeout", "30"))
        if visibility < MIN_VISIBILITY_TIMEOUT_S:
            problems += 1
            f.warn(
                subject,
                f"visibility timeout {visibility} s: a slow join would see its message delivered twice",
                "aws sqs set-queue-attributes --queue-url <url> --attributes VisibilityTimeout=120",
            )
        key = attrs.get("KmsMasterKeyId")
        if key and key.endswith("alias/aws/sqs"):
            problems += 1
            f.fatal(
                subject,
                "encrypted with the AWS managed key alias/aws/sqs: S3 cannot send notifications to it",
                "use SQS-managed encryption (SqsManagedSseEnabled=true) or a customer managed key whose "
                "policy lets s3.amazonaws.com use kms:GenerateDataKey and kms:Decrypt",
            )
        problems += self._check_dead_letter(subject, attrs, retention)
        policy = attrs.get("Policy")
        if not policy or "s3.amazonaws.com" not in policy or "sqs:SendMessage" not in policy:
            problems += 1
            f.warn(
                subject,
                "its policy does not let S3 send messages: AWS drops the bucket's notifications",
                BOOTSTRAP_FIX + " (it adds the statement)",
            )
        if not problems:
            f.ok(
                subject, f"retention {retention // 3600} h, visibility {visibility} s, dead-letter queue set"
            )

    def _check_dead_letter(self, subject: str, attrs: dict[str, str], retention: int) -> int:
        f = self.findings
        raw = attrs.get("RedrivePolicy")
        if not raw:
            f.warn(
                subject,
                "no dead-letter queue: a notification that always fails is received again and again",
                BOOTSTRAP_FIX
                + f" on a new queue, or set a RedrivePolicy (maxReceiveCount={DLQ_MAX_RECEIVES})",
            )
            return 1
        redrive = orjson.loads(raw)
        dlq_name = str(redrive.get("deadLetterTargetArn", "")).rsplit(":", 1)[-1]
        try:
            dlq = self._queue(dlq_name)
        except ClientError as exc:
            f.unknown(subject, f"dead-letter queue {dlq_name} cannot be read ({_code(exc)})")
            return 0
        if dlq is None:
            f.fatal(subject, f"its dead-letter queue {dlq_name} does not exist", BOOTSTRAP_FIX)
            return 1
        dlq_retention = int(dlq[1].get("MessageRetentionPeriod", "0"))
        if dlq_retention < retention:
            # The enqueue time carries over to the DLQ: a shorter retention expires messages early.
            f.warn(
                subject,
                f"dead-letter queue {dlq_name} keeps messages {dlq_retention // 3600} h, less than the "
                f"queue's {retention // 3600} h: failed notifications expire before anyone looks",
                "aws sqs set-queue-attributes --queue-url <dlq url> "
                "--attributes MessageRetentionPeriod=1209600",
            )
            return 1
        return 0

    # --- S3 -------------------------------------------------------------------------------------
    def check_buckets(self) -> None:
        for bucket, recordings in (
            (self.settings.recordings_bucket, True),
            (self.settings.quarantine_bucket, False),
        ):
            self._check_bucket(bucket, recordings)
        if self.settings.recordings_copy:
            # QM's copies of the recordings: a bucket that is gone fails every batch with a recording.
            self._check_bucket(self.settings.recordings_copy_bucket, False)
        self._check_missing_recording_answer(self.settings.recordings_bucket)
        # The other buckets CTRs may name (an instance's earlier bucket): the service reads their
        # recordings' headers itself, and a bucket that is gone fails every batch naming it.
        for bucket in sorted(self.settings.recording_locations.buckets):
            if bucket != self.settings.recordings_bucket:
                self._check_bucket(bucket, True, fix=EXTRA_BUCKET_FIX)
                self._check_missing_recording_answer(bucket)

    def _check_missing_recording_answer(self, bucket: str) -> None:
        """A recording not there yet must answer 404, not 403: S3 answers 403 for a missing key
        to a caller without s3:ListBucket, and the service takes 403 for a permission problem
        (it fails the batch rather than give the contact up as ``recording_missing``)."""
        subject = f"s3 bucket {bucket}"
        try:
            self.aws.s3.get_object(Bucket=bucket, Key=self._missing_recording_key(), Range="bytes=0-0")
        except ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                self.findings.ok(subject, "a recording not there yet answers 404 (NoSuchKey)")
            elif code in ("403", "AccessDenied"):
                self.findings.fatal(
                    subject,
                    "a recording not there yet answers 403 AccessDenied: every CTR that comes before "
                    "its recording would fail its batch",
                    "grant the service s3:GetObject and s3:ListBucket on the recordings bucket",
                )
            elif code not in ("NoSuchBucket",):  # the bucket's own check reports that
                self.findings.unknown(subject, f"reading a missing recording answers {code}")
        except NETWORK_ERRORS:
            return
        else:
            self.findings.unknown(subject, f"{self._missing_recording_key()} exists (left by someone?)")

    def _missing_recording_key(self) -> str:
        """A key in Connect's layout that no recording has: a role may read only that layout."""
        prefix = self.settings.recordings_key_prefix.replace("*", "qm-ingest-doctor")
        return f"{prefix}/1970/01/01/qm-ingest-doctor-not-there.wav"

    def _check_bucket(self, bucket: str, recordings: bool, fix: str = "") -> None:
        subject = f"s3 bucket {bucket}"
        f = self.findings
        s3 = self.aws.s3
        try:
            s3.head_bucket(Bucket=bucket)
        except ClientError as exc:
            code = _code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                f.fatal(subject, "does not exist", fix or BOOTSTRAP_FIX)
            else:
                f.fatal(subject, f"not accessible ({code})", "grant s3:ListBucket/GetObject on it")
            return
        try:
            rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
        except ClientError as exc:
            if _code(exc) == "ServerSideEncryptionConfigurationNotFoundError":
                # AWS encrypts every bucket (SSE-S3) since 2023; only emulators answer this.
                f.unknown(
                    subject, "no default encryption reported (AWS always applies SSE-S3; emulators may not)"
                )
            else:
                f.unknown(subject, f"encryption cannot be read here ({_code(exc)})")
            return
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        algorithm = default.get("SSEAlgorithm", "none")
        if algorithm.startswith("aws:kms"):
            key = default.get("KMSMasterKeyID", "alias/aws/s3")
            self._check_key(subject, key)
            if recordings:
                self._check_object_decrypt(subject, bucket, key)
                return
        f.ok(subject, f"exists, default encryption {algorithm}")

    def _check_object_decrypt(self, subject: str, bucket: str, key: str) -> None:
        s3 = self.aws.s3
        try:
            listed = s3.list_objects_v2(Bucket=bucket, MaxKeys=1).get("Contents", [])
            if not listed:
                self.findings.unknown(
                    subject, f"encrypted with KMS key {key}; the bucket is empty, so decryption is unproven"
                )
                return
            # One byte: the same KMS decrypt as the WAV-header read, without reading a recording.
            s3.get_object(Bucket=bucket, Key=listed[0]["Key"], Range="bytes=0-0")["Body"].close()
        except ClientError as exc:
            code = _code(exc)
            self.findings.fatal(
                subject,
                f"a recording cannot be read ({code}): this identity may lack kms:Decrypt on {key}",
                f"allow s3:GetObject on the bucket and kms:Decrypt on {key} for "
                f"{self._caller_arn or 'the service role'}",
            )
            return
        self.findings.ok(subject, f"encrypted with KMS key {key}; a recording was read and decrypted")
        self._simulate_decrypt(subject, key)

    def check_notification(self, queue_arn: str | None) -> None:
        s = self.settings
        subject = f"s3 notification {s.recordings_bucket} -> {s.recordings_queue}"
        f = self.findings
        if queue_arn is None:
            f.fatal(subject, "cannot be checked: the queue is missing", BOOTSTRAP_FIX)
            return
        try:
            config = self.aws.s3.get_bucket_notification_configuration(Bucket=s.recordings_bucket)
        except ClientError as exc:
            if _code(exc) in ("NoSuchBucket", "404"):
                return  # reported with the bucket
            f.fatal(subject, f"cannot be read ({_code(exc)})", "grant s3:GetBucketNotification")
            return
        rules = [q for q in config.get("QueueConfigurations", []) if q.get("QueueArn") == queue_arn]
        events: set[str] = {e for q in rules for e in q.get("Events", [])}
        missing = [e for e in REQUIRED_EVENTS if not _covered(e, events)]
        if not rules:
            f.fatal(
                subject,
                "the recordings bucket sends no ObjectCreated events to the queue: recordings that arrive "
                "after their CTR are never joined",
                BOOTSTRAP_FIX + " (merges its rule with the bucket's other notification rules)",
            )
        elif missing:
            f.fatal(
                subject,
                f"events {', '.join(missing)} are not sent (covered: {', '.join(sorted(events)) or 'none'})",
                "send s3:ObjectCreated:* to the queue (" + BOOTSTRAP_FIX + ")",
            )
        else:
            filters = [_filter_text(dict(q)) for q in rules if q.get("Filter")]
            f.ok(
                subject,
                "ObjectCreated:Put and :CompleteMultipartUpload reach the queue"
                + (f" ({'; '.join(filters)})" if filters else ""),
            )

    # --- Java and the KCL -----------------------------------------------------------------------
    def check_connect(self) -> None:
        """Connect's data streaming and call recordings point at this deployment (a real
        account only: the emulator serves no Connect API)."""
        from processor.core import connect_storage

        subject = "connect instance"
        instance = self.settings.named_instance_arn
        if self.settings.aws_endpoint_url:
            self.findings.ok(subject, "not checked against the emulator (it serves no Connect API)")
            return
        if not instance:
            return  # the tenant check reports it
        instance_id = instance.rsplit("/", 1)[-1]
        connect = self.aws.client("connect")
        configs: dict[str, list[dict[str, Any]]] = {}
        try:
            for resource_type in connect_storage.RESOURCE_TYPES:
                pages = connect.get_paginator("list_instance_storage_configs").paginate(
                    InstanceId=instance_id, ResourceType=resource_type
                )
                configs[resource_type] = [c for page in pages for c in page.get("StorageConfigs", [])]
        except ClientError as exc:
            self.findings.warn(
                subject,
                f"storage configuration cannot be read ({_code(exc)})",
                "grant connect:ListInstanceStorageConfigs (the stack's service and operator roles have it)",
            )
            return
        except NETWORK_ERRORS as exc:
            self.findings.unknown(subject, f"Connect cannot be reached: {exc}")
            return
        expected = connect_storage.Expected(
            ctr_stream=self.settings.ctr_stream,
            agent_event_stream=self.settings.agent_event_stream,
            recordings_buckets=self.settings.recording_locations.buckets,
            recordings_key_prefix=self.settings.recordings_key_prefix,
            ctrs_through_firehose=self.settings.ctr_source is CtrSource.FIREHOSE_S3,
        )
        for verdict in connect_storage.judge(configs, expected, instance_id):
            what = f"{subject} {verdict.resource_type.lower().replace('_', ' ')}"
            if verdict.ok:
                self.findings.ok(what, verdict.detail)
            else:
                self.findings.warn(what, verdict.detail, verdict.fix)

    def check_java(self) -> None:
        java = self.settings.java
        subject = "java"
        try:
            done = self._run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.findings.fatal(
                subject,
                f"{java} cannot run: {exc}",
                f"install a Java {MIN_JAVA} runtime (Debian: openjdk-17-jre-headless) or set QM_JAVA",
            )
            return
        text = (done.stderr or "") + (done.stdout or "")
        match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
        if done.returncode != 0 or not match:
            self.findings.fatal(
                subject, f"{java} -version failed: {text.strip()[:200]}", "set QM_JAVA to a Java 17+"
            )
            return
        major = int(match.group(1))
        if major == 1 and match.group(2):  # "1.8" is Java 8
            major = int(match.group(2))
        if major < MIN_JAVA:
            self.findings.fatal(
                subject,
                f"Java {major}; the KCL needs {MIN_JAVA}+",
                f"install Java {MIN_JAVA}+ or set QM_JAVA",
            )
            return
        self.findings.ok(subject, f"Java {major} ({java})")

    def check_jars(self) -> None:
        from processor.adapters.kcl.daemon import jars_dir

        try:
            path = jars_dir(self.settings)
        except ConfigurationError as exc:
            self.findings.fatal("kcl jars", str(exc).split(":")[0], str(exc))
            return
        multilang = sorted(path.glob("amazon-kinesis-client-multilang-*.jar"))
        version = multilang[0].name.removeprefix("amazon-kinesis-client-multilang-").removesuffix(".jar")
        count = len(list(path.glob("*.jar")))
        self.findings.ok("kcl jars", f"KCL {version}, {count} jars in {path}")


def _covered(event: str, configured: Iterable[str]) -> bool:
    return any(c == event or (c.endswith("*") and event.startswith(c[:-1])) for c in configured)


def _filter_text(rule: dict[str, Any]) -> str:
    parts = rule.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return " ".join(f"{p.get('Name')}={p.get('Value')}" for p in parts)


# --- run's preflight and the CLI's rendering -------------------------------------------------------
def preflight(settings: Settings, aws: AwsClients | None = None) -> Findings:
    """The doctor's checks at ``run`` start: warnings are logged, a fatal problem stops the start.

    Raises :class:`ConfigurationError` listing every fatal problem with its fix.
    """
    findings = Doctor(settings, aws).check_all()
    for finding in findings.warnings:
        log.warning("doctor: " + finding.message, subject=finding.subject, fix=finding.fix)
    fatal = findings.fatal_ones
    if fatal:
        lines = [f"{x.subject}: {x.message} (fix: {x.fix})" for x in fatal]
        raise ConfigurationError(
            f"refusing to start, {len(fatal)} fatal problem(s) (`qm-ingest doctor` shows all):\n  "
            + "\n  ".join(lines)
        )
    log.info("doctor: no fatal problem", warnings=len(findings.warnings))
    return findings


_LABELS = {
    Severity.OK: "ok",
    Severity.UNKNOWN: "unknown",
    Severity.WARNING: "WARNING",
    Severity.FATAL: "FATAL",
}


def render(findings: Iterable[Finding], settings: Settings) -> str:
    found = list(findings)
    lines = [
        f"qm-ingest doctor: endpoint {settings.aws_endpoint_url or 'AWS'}, region {settings.aws_region}",
        "",
    ]
    for x in found:
        lines.append(f"{_LABELS[x.severity]:8} {x.subject}: {x.message}")
        if x.fix:
            lines.append(f"{'':8} fix: {x.fix}")
    fatal = sum(1 for x in found if x.severity is Severity.FATAL)
    warnings = sum(1 for x in found if x.severity is Severity.WARNING)
    lines += ["", f"{fatal} fatal, {warnings} warning(s), {len(found)} checks"]
    return "\n".join(lines)
