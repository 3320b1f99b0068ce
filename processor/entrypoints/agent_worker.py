"""Entry point of the per-shard agent-event record processor (started by the KCL daemon).

``python -m processor.entrypoints.agent_worker`` — stdin/stdout are the KCL protocol.
"""

from __future__ import annotations

from processor.adapters.aws import AwsClients
from processor.adapters.kcl.record_processor import KclRecordProcessor, run_kcl_process
from processor.app.ctr_path import utc_now
from processor.app.screen_control import AgentEventIngest
from processor.app.wiring import build_quarantine, build_screen_control
from processor.platform.logs import configure_logging
from processor.platform.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format.value)
    aws = AwsClients(settings)

    def handler(_shard: str) -> AgentEventIngest:
        return AgentEventIngest(build_screen_control(settings, aws), build_quarantine(settings, aws), utc_now)

    run_kcl_process(KclRecordProcessor(settings.agent_event_stream, handler))


if __name__ == "__main__":
    main()
