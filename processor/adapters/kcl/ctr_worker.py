"""Entry point of the per-shard CTR record processor (started by the KCL daemon).

``python -m processor.adapters.kcl.ctr_worker`` — stdin/stdout are the KCL protocol.
"""

from __future__ import annotations

from processor.adapters.aws import AwsClients
from processor.adapters.contacts import DynamoContactStore
from processor.adapters.kcl.record_processor import KclRecordProcessor, run_kcl_process
from processor.adapters.quarantine import DynamoQuarantine
from processor.adapters.users import DynamoUserDirectory
from processor.logs import configure_logging
from processor.pipeline import CtrIngest
from processor.settings import get_settings


def build_ingest() -> CtrIngest:
    from processor.metrics import CountingContactStore, CountingQuarantine

    settings = get_settings()
    aws = AwsClients(settings)
    return CtrIngest(
        # The counting wrappers feed qm_contacts_emitted_total and qm_quarantined_total.
        contacts=CountingContactStore(DynamoContactStore(aws.dynamodb, settings.contacts_table)),
        quarantine=CountingQuarantine(
            DynamoQuarantine(aws.dynamodb, settings.quarantine_table, aws.s3, settings.quarantine_bucket)
        ),
        users=DynamoUserDirectory(aws.dynamodb, settings.users_table),
        instance_arn=settings.instance_arn,
        max_record_bytes=settings.max_record_bytes,
    )


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    run_kcl_process(KclRecordProcessor(settings.ctr_stream, lambda _shard: build_ingest()))


if __name__ == "__main__":
    main()
