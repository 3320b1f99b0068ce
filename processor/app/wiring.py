"""The composition root: adapters built from settings and wired into the join and the CTR path."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import TYPE_CHECKING

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.join_store import DynamoJoinStore
from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.adapters.dynamodb.runtime_config import RuntimeConfigReader, RuntimeConfigStore
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.adapters.kinesis.output import OutputStream
from processor.adapters.s3.call_recordings import S3Media
from processor.adapters.s3.recording_copy import RecordingCopier
from processor.app.ctr_path import CtrIngest, utc_now
from processor.app.joiner import Joiner
from processor.core.ctr import AcceptedInstances
from processor.core.join import Tolerance
from processor.platform.exceptions import ConfigurationError
from processor.platform.metrics import CountingQuarantine, JoinMetrics
from processor.platform.settings import Settings

if TYPE_CHECKING:
    from processor.app.recording_events import RecordingEventConsumer
    from processor.app.screen_control import ScreenControl


def join_window(settings: Settings, config: RuntimeConfigReader) -> timedelta:
    """The configured window: the console's saved value, else the setting."""
    stored = config.get()
    if stored.version > 0:
        return timedelta(minutes=stored.join_window_minutes)
    return timedelta(seconds=settings.join_window_seconds)


def accepted_instances(settings: Settings, config: RuntimeConfigReader) -> AcceptedInstances:
    """The tenant check: the setting's instances and the one saved on the console's page."""
    return settings.accepted_instances.with_arn(config.get().instance_arn)


NO_TENANT = (
    "no Amazon Connect instance is named, so CTRs of any tenant would be imported",
    "set QM_INSTANCE_ARN to your instance's ARN (comma-separated for several), save it on the "
    "console's ACD Configuration page, or set QM_INSTANCE_ARN=any to accept every instance on purpose",
)


def instances_now(settings: Settings, aws: AwsClients) -> AcceptedInstances | None:
    """The accepted instances read once (for reports that import nothing); None: none named."""
    reader = RuntimeConfigReader(RuntimeConfigStore(aws.dynamodb, settings.config_table))
    accepted = accepted_instances(settings, reader)
    return accepted if accepted.configured else None


def instances_of(settings: Settings, aws: AwsClients) -> Callable[[], AcceptedInstances]:
    """The accepted instances as the running service sees them (the console's within seconds).

    Raises :class:`ConfigurationError` when none is named: nothing imports without the check.
    """
    reader = RuntimeConfigReader(RuntimeConfigStore(aws.dynamodb, settings.config_table))
    if not accepted_instances(settings, reader).configured:
        raise ConfigurationError(f"refusing to import: {NO_TENANT[0]} (fix: {NO_TENANT[1]})")
    return lambda: accepted_instances(settings, reader)


def build_screen_control(settings: Settings, aws: AwsClients) -> ScreenControl:
    from processor.adapters.sqs.commands import AgentQueues, AgentStates, CommandPublisher, CommandStore
    from processor.app.screen_control import ScreenControl

    commands = CommandStore(aws.dynamodb, settings.commands_table)
    return ScreenControl(
        users=DynamoUserDirectory(aws.dynamodb, settings.users_table),
        config=RuntimeConfigReader(RuntimeConfigStore(aws.dynamodb, settings.config_table)),
        publisher=CommandPublisher(commands, AgentQueues(aws.sqs), aws.sqs),
        commands=commands,
        states=AgentStates(aws.dynamodb, settings.agents_table),
        s3=aws.s3,
        bucket=settings.screen_bucket,
        server_key=cached_server_key(settings),
        clock=utc_now,
        url_days=settings.screen_upload_url_days,
        instances=instances_of(settings, aws),
    )


def cached_server_key(settings: Settings) -> Callable[[], tuple[str, str] | None]:
    """The server's public key for extraction commands, read once; None when there is none
    (then no extraction is published: `qm-ingest doctor` says so)."""
    from processor.adapters.screen_keys import server_public_key
    from processor.platform.exceptions import ConfigurationError

    cache: list[tuple[str, str] | None] = []

    def get() -> tuple[str, str] | None:
        if not cache:
            try:
                cache.append(server_public_key(settings))
            except ConfigurationError:
                cache.append(None)
        return cache[0]

    return get


def build_joiner(settings: Settings, aws: AwsClients, *, screen: bool = True) -> Joiner:
    config = RuntimeConfigReader(RuntimeConfigStore(aws.dynamodb, settings.config_table))
    # One pool for the requests of a wave, shared by the stores and the join.
    io = ThreadPoolExecutor(max_workers=16, thread_name_prefix="join-io")
    return Joiner(
        contacts=DynamoContactStore(aws.dynamodb, settings.contacts_table, pool=io),
        joins=DynamoJoinStore(
            aws.dynamodb, settings.join_table, timedelta(hours=settings.join_retention_hours), pool=io
        ),
        io=io,
        media=S3Media(aws.s3, own_buckets=settings.recording_locations.buckets),
        output=OutputStream(aws.kinesis_output, settings.output_stream),
        users=DynamoUserDirectory(aws.dynamodb, settings.users_table),
        window=lambda: join_window(settings, config),
        tolerance=Tolerance(settings.duration_tolerance_seconds, settings.duration_tolerance_ratio),
        clock=utc_now,
        locations=settings.recording_locations,
        observer=JoinMetrics(),
        screen=build_screen_control(settings, aws) if screen else None,
        copier=RecordingCopier(aws.s3, settings.recordings_copy_bucket) if settings.recordings_copy else None,
    )


def build_recordings_consumer(
    settings: Settings, aws: AwsClients, joiner: Joiner, *, wait_seconds: int = 5
) -> RecordingEventConsumer:
    """The consumer of the recordings queue (S3 notifications) feeding ``joiner``."""
    from processor.app.recording_events import RecordingEventConsumer

    queue_url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
    dlq_url = aws.sqs.get_queue_url(QueueName=f"{settings.recordings_queue}-dlq")["QueueUrl"]
    return RecordingEventConsumer(
        sqs=aws.sqs,
        queue_url=queue_url,
        dlq_url=dlq_url,
        queue_name=settings.recordings_queue,
        joiner=joiner,
        quarantine=build_quarantine(settings, aws),
        clock=joiner.clock,
        wait_seconds=wait_seconds,
    )


def build_quarantine(settings: Settings, aws: AwsClients) -> CountingQuarantine:
    # The counting wrapper feeds qm_quarantined_total (by reason and source).
    return CountingQuarantine(
        DynamoQuarantine(aws.dynamodb, settings.quarantine_table, aws.s3, settings.quarantine_bucket)
    )


def build_ingest(settings: Settings, aws: AwsClients | None = None) -> CtrIngest:
    aws = aws or AwsClients(settings)
    return CtrIngest(
        joiner=build_joiner(settings, aws),
        quarantine=build_quarantine(settings, aws),
        instances=instances_of(settings, aws),
        max_record_bytes=settings.max_record_bytes,
    )
