"""The composition root: adapters built from settings and wired into the join and the CTR path."""

from __future__ import annotations

from datetime import timedelta

from processor.adapters.aws import AwsClients
from processor.adapters.contacts import DynamoContactStore
from processor.adapters.join_store import DynamoJoinStore
from processor.adapters.media import S3Media
from processor.adapters.output import OutputStream
from processor.adapters.quarantine import DynamoQuarantine
from processor.adapters.runtime_config import RuntimeConfigReader, RuntimeConfigStore
from processor.adapters.users import DynamoUserDirectory
from processor.core.join import Tolerance
from processor.joiner import Joiner
from processor.metrics import CountingQuarantine, JoinMetrics
from processor.pipeline import CtrIngest, utc_now
from processor.settings import Settings


def join_window(settings: Settings, config: RuntimeConfigReader) -> timedelta:
    """The configured window: the console's saved value, else the setting."""
    stored = config.get()
    if stored.version > 0:
        return timedelta(minutes=stored.join_window_minutes)
    return timedelta(seconds=settings.join_window_seconds)


def build_joiner(settings: Settings, aws: AwsClients) -> Joiner:
    config = RuntimeConfigReader(RuntimeConfigStore(aws.dynamodb, settings.config_table))
    return Joiner(
        contacts=DynamoContactStore(aws.dynamodb, settings.contacts_table),
        joins=DynamoJoinStore(
            aws.dynamodb, settings.join_table, timedelta(hours=settings.join_retention_hours)
        ),
        media=S3Media(aws.s3),
        output=OutputStream(aws.kinesis, settings.output_stream),
        users=DynamoUserDirectory(aws.dynamodb, settings.users_table),
        window=lambda: join_window(settings, config),
        tolerance=Tolerance(settings.duration_tolerance_seconds, settings.duration_tolerance_ratio),
        clock=utc_now,
        observer=JoinMetrics(),
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
        instance_arn=settings.instance_arn,
        max_record_bytes=settings.max_record_bytes,
    )
