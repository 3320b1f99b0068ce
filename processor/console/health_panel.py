"""The health panel of the ACD Configuration page: what is wrong, and how to fix it.

:func:`resource_health` checks what the console itself depends on (the endpoint, every
table, stream, bucket and queue that ``bootstrap`` creates, and the ACD configuration
against the service's settings). Any ``() -> ProblemReport`` can be given to the console
instead, e.g. the full ``doctor`` checks.
"""

from __future__ import annotations

from collections.abc import Callable

from botocore.exceptions import ClientError

from processor.adapters.aws import NETWORK_ERRORS, AwsClients
from processor.adapters.dynamodb.runtime_config import RuntimeConfigStore
from processor.ops.bootstrap import table_specs
from processor.platform.exceptions import ProblemReport
from processor.platform.settings import Settings

HealthCheck = Callable[[], ProblemReport]
_MISSING = {
    "ResourceNotFoundException",
    "404",
    "NoSuchBucket",
    "NotFound",
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
}


def resource_health(settings: Settings, aws: AwsClients) -> ProblemReport:
    report = ProblemReport()
    fix = "run `qm-ingest bootstrap`"
    checks: list[tuple[str, Callable[[], object]]] = []

    def table(name: str) -> Callable[[], object]:
        return lambda: aws.dynamodb.describe_table(TableName=name)

    def stream(name: str) -> Callable[[], object]:
        return lambda: aws.kinesis.describe_stream_summary(StreamName=name)

    def queue(name: str) -> Callable[[], object]:
        return lambda: aws.sqs.get_queue_url(QueueName=name)

    for spec in table_specs(settings):
        checks.append((f"DynamoDB table {spec.name}", table(spec.name)))
    for name in (settings.ctr_stream, settings.agent_event_stream, settings.output_stream):
        checks.append((f"Kinesis stream {name}", stream(name)))
    checks.append(
        (
            f"S3 bucket {settings.recordings_bucket}",
            lambda: aws.s3.head_bucket(Bucket=settings.recordings_bucket),
        )
    )
    for name in (settings.recordings_queue, settings.screen_results_queue):
        checks.append((f"SQS queue {name}", queue(name)))
    for what, call in checks:
        try:
            call()
        except NETWORK_ERRORS as exc:
            endpoint = settings.aws_endpoint_url or "AWS"
            report.add(
                f"cannot reach {endpoint}: {type(exc).__name__}",
                "start the emulator (`qm-ingest local up`) or fix AWS_ENDPOINT_URL and the credentials",
            )
            return report
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in _MISSING:
                report.add(f"{what} does not exist", fix)
            else:
                report.add(f"{what}: {code}", "check the credentials' permissions for this resource")
    try:
        acd = RuntimeConfigStore(aws.dynamodb, settings.config_table).load()
    except ClientError:
        return report
    if not settings.accepted_instances.with_arn(acd.instance_arn).configured:
        report.add(
            "no Amazon Connect instance is configured: the service refuses to import CTRs and users "
            "cannot be synced",
            "enter the instance ARN on this page (or set QM_INSTANCE_ARN; 'any' accepts every instance)",
        )
    return report
