"""``qm-ingest run``: the long-running service.

Starts the KCL MultiLangDaemon for the CTR stream (one Python record processor per shard)
and keeps it running: a daemon that dies is restarted with backoff; SIGTERM/SIGINT stop
it gracefully (the KCL checkpoints and releases its leases within 10 s).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from processor import health, metrics_files
from processor.adapters.aws import AwsClients
from processor.adapters.kcl.daemon import KclApplication
from processor.adapters.kcl.supervisor import KclDaemon, WorkerSlot
from processor.doctor import preflight
from processor.logs import LogRelay, get_logger
from processor.settings import CtrSource, Settings

log = get_logger("processor.service")

CTR_PROCESSOR_MODULE = "processor.adapters.kcl.ctr_worker"


@dataclass
class Service:
    settings: Settings
    stop_event: threading.Event = field(default_factory=threading.Event)
    daemons: list[KclDaemon] = field(default_factory=list)
    on_started: Callable[[Service], None] | None = None

    def run(self) -> int:
        settings = self.settings
        aws = AwsClients(settings)
        # Before anything imports prometheus_client: this process and the KCL's children write here.
        metrics_dir = metrics_files.prepare(Path(settings.state_dir))
        preflight(settings, aws)
        relay = LogRelay()
        slot = WorkerSlot(settings, settings.application_name)
        app = KclApplication(
            application_name=settings.application_name,
            stream_name=settings.ctr_stream,
            processor_module=CTR_PROCESSOR_MODULE,
            worker_id=slot.worker_id,
        )
        daemon = KclDaemon(settings, aws, app, relay.address)
        # Firehose -> S3 deployments: CTRs come from the archive queue, no KCL for the CTR stream.
        follow_archive = settings.ctr_source is CtrSource.FIREHOSE_S3
        self.daemons = [] if follow_archive else [daemon]
        backoff = 1.0
        threads = self._background(aws)
        if follow_archive:
            from processor.backfill import archive_followers

            threads += archive_followers(settings, aws, self.stop_event)
        ops: health.Operations | None = None
        try:
            ops = health.start(settings, aws, lambda: self.daemons)
            if not follow_archive:
                daemon.start()
            for thread in threads:
                thread.start()
            if self.on_started:
                self.on_started(self)
            while not self.stop_event.wait(0.5):
                if follow_archive:
                    continue
                code = daemon.poll()
                if code is None:
                    continue
                log.error("KCL daemon exited; restarting", exit_code=code, backoff_s=backoff)
                if self.stop_event.wait(backoff):
                    break
                backoff = min(backoff * 2, 30.0)
                started = time.monotonic()
                daemon.start()
                if time.monotonic() - started < 60:
                    continue
                backoff = 1.0
        finally:
            log.info("stopping")
            self.stop_event.set()
            code = daemon.stop()
            for thread in threads:
                thread.join(timeout=15)
            if ops is not None:
                ops.stop()
            metrics_files.remove(metrics_dir)
            relay.close()
            slot.release()
            log.info("stopped", exit_code=code)
        return 0

    def _background(self, aws: AwsClients) -> list[threading.Thread]:
        """The recordings-queue consumers and the sweeper (threads of this process)."""
        from processor.recording_events import RecordingEventConsumer, run_sweeper
        from processor.wiring import build_joiner, build_quarantine

        settings = self.settings
        joiner = build_joiner(settings, aws)
        threads = [
            threading.Thread(
                target=run_sweeper,
                args=(joiner, settings.sweep_interval_seconds, self.stop_event),
                name="sweeper",
                daemon=True,
            )
        ]
        if settings.recording_consumers:
            queue_url = aws.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
            dlq_url = aws.sqs.get_queue_url(QueueName=f"{settings.recordings_queue}-dlq")["QueueUrl"]
            for index in range(settings.recording_consumers):
                consumer = RecordingEventConsumer(
                    sqs=aws.sqs,
                    queue_url=queue_url,
                    dlq_url=dlq_url,
                    queue_name=settings.recordings_queue,
                    joiner=joiner,
                    quarantine=build_quarantine(settings, aws),
                    clock=joiner.clock,
                )
                threads.append(
                    threading.Thread(
                        target=consumer.run, args=(self.stop_event,), name=f"recordings-{index}", daemon=True
                    )
                )
        return threads

    def request_stop(self, *_: object) -> None:
        self.stop_event.set()


def run_service(settings: Settings) -> int:
    service = Service(settings)

    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received; shutting down gracefully", signal=signal.Signals(signum).name)
        service.request_stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return service.run()
