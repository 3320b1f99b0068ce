"""Entry point of the per-shard CTR record processor (started by the KCL daemon).

``python -m processor.entrypoints.ctr_worker`` — stdin/stdout are the KCL protocol.
"""

from __future__ import annotations

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.progress import ShardProgress
from processor.adapters.kcl.record_processor import KclRecordProcessor, run_kcl_process
from processor.app.wiring import build_ingest
from processor.platform.logs import configure_logging
from processor.platform.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    aws = AwsClients(settings)
    progress = ShardProgress(aws.dynamodb, settings.join_table, settings.application_name)
    run_kcl_process(
        KclRecordProcessor(settings.ctr_stream, lambda _shard: build_ingest(settings, aws), progress)
    )


if __name__ == "__main__":
    main()
