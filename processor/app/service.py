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
from typing import TYPE_CHECKING, Any

from processor.adapters.aws import AwsClients
from processor.adapters.kcl.daemon import KclApplication
from processor.adapters.kcl.supervisor import KclDaemon, WorkerSlot
from processor.app import health_endpoint
from processor.ops.doctor import preflight
from processor.platform import metrics_files
from processor.platform.logs import LogRelay, get_logger
from processor.platform.settings import CtrSource, Settings

if TYPE_CHECKING:
    from processor.app.joiner import Joiner

log = get_logger("processor.app.service")

CTR_PROCESSOR_MODULE = "processor.entrypoints.ctr_worker"
#: How long the KCL daemons get, together, to checkpoint and release their leases after SIGTERM.
STOP_TIMEOUT_S = 8.0
AGENT_PROCESSOR_MODULE = "processor.entrypoints.agent_worker"


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
        # Firehose -> S3 deployments: CTRs come from the archive queue, no KCL for the CTR stream.
        follow_archive = settings.ctr_source is CtrSource.FIREHOSE_S3
        slots = self._daemons(aws, relay.address, with_ctr_stream=not follow_archive)
        backoff = {d.app.application_name: 1.0 for d in self.daemons}
        threads = self._background(aws)
        if follow_archive:
            from processor.ops.backfill import archive_followers

            threads += archive_followers(settings, aws, self.stop_event)
        parts: dict[str, Any] = {}
        try:
            parts["ops"] = health_endpoint.start(settings, aws, lambda: self.daemons)
            for daemon in self.daemons:
                daemon.start()
            from processor.console.server import maybe_start_console

            parts["console"] = maybe_start_console(settings, aws)
            for thread in threads:
                thread.start()
            if self.on_started:
                self.on_started(self)
            while not self.stop_event.wait(0.5):
                for daemon in self.daemons:
                    self._supervise(daemon, backoff)
        finally:
            self._teardown(threads, parts, slots)
            metrics_files.remove(metrics_dir)
            relay.close()
        return 0

    def _teardown(
        self, threads: list[threading.Thread], parts: dict[str, Any], slots: list[WorkerSlot]
    ) -> None:
        log.info("stopping")
        self.stop_event.set()
        # Every daemon gets SIGTERM at once: their grace periods run side by side, not one after another.
        for daemon in self.daemons:
            daemon.request_stop()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        codes = [daemon.stop(max(0.1, deadline - time.monotonic())) for daemon in self.daemons]
        for thread in threads:
            # Daemon threads: one stuck in a retry (an outage) must not hold the exit back.
            thread.join(timeout=max(0.1, deadline + 1.0 - time.monotonic()))
        for name in ("console", "ops"):
            if parts.get(name) is not None:
                parts[name].stop()
        for slot in slots:
            slot.release()
        log.info("stopped", exit_codes=codes)

    def _daemons(self, aws: AwsClients, log_socket: str, *, with_ctr_stream: bool) -> list[WorkerSlot]:
        """One KCL daemon per application (the CTR stream, the agent event stream), each
        with its own stable worker slot; returns the slots to release at the end."""
        settings = self.settings
        applications = [
            (settings.agent_application_name, settings.agent_event_stream, AGENT_PROCESSOR_MODULE)
        ]
        if with_ctr_stream:
            applications.insert(0, (settings.application_name, settings.ctr_stream, CTR_PROCESSOR_MODULE))
        slots = []
        for application, stream, module in applications:
            slot = WorkerSlot(settings, application)
            slots.append(slot)
            app = KclApplication(
                application_name=application,
                stream_name=stream,
                processor_module=module,
                worker_id=slot.worker_id,
            )
            self.daemons.append(KclDaemon(settings, aws, app, log_socket))
        return slots

    def _supervise(self, daemon: KclDaemon, backoff: dict[str, float]) -> None:
        """Restart a daemon that died, with backoff (reset after a minute of good health)."""
        name = daemon.app.application_name
        code = daemon.poll()
        if code is None:
            if daemon.started_at is not None and time.monotonic() - daemon.started_at > 60:
                backoff[name] = 1.0
            return
        log.error("KCL daemon exited; restarting", application=name, exit_code=code, backoff_s=backoff[name])
        if self.stop_event.wait(backoff[name]):
            return
        backoff[name] = min(backoff[name] * 2, 30.0)
        daemon.start()

    def _background(self, aws: AwsClients) -> list[threading.Thread]:
        """The recordings-queue consumers and the sweeper (threads of this process)."""
        from processor.app.recording_events import run_sweeper
        from processor.app.wiring import build_joiner, build_recordings_consumer

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
            for index in range(settings.recording_consumers):
                consumer = build_recordings_consumer(settings, aws, joiner)
                threads.append(
                    threading.Thread(
                        target=consumer.run, args=(self.stop_event,), name=f"recordings-{index}", daemon=True
                    )
                )
        threads += self._screen_threads(aws, joiner)
        if settings.users_sync_interval_minutes:
            from processor.app.users_sync import run_scheduled_sync

            threads.append(
                threading.Thread(
                    target=run_scheduled_sync,
                    args=(settings, aws),
                    kwargs={"interval": settings.users_sync_interval_minutes * 60, "stop": self.stop_event},
                    name="users-sync",
                    daemon=True,
                )
            )
        return threads

    def _screen_threads(self, aws: AwsClients, joiner: Joiner) -> list[threading.Thread]:
        """The desktops' results consumer and the segment releaser."""
        from datetime import timedelta

        from processor.adapters.dynamodb.progress import ShardProgress
        from processor.adapters.dynamodb.users_table import DynamoUserAdmin
        from processor.adapters.sqs.commands import CommandStore
        from processor.app.ports import StreamProgress
        from processor.app.screen_control import run_recording_guard
        from processor.app.screen_results import ScreenResultConsumer, run_releaser
        from processor.app.wiring import build_quarantine, build_screen_control

        settings = self.settings
        control = build_screen_control(settings, aws)
        users = DynamoUserAdmin(aws.dynamodb, settings.users_table)
        threads = []
        if settings.results_consumers:
            url = aws.sqs.get_queue_url(QueueName=settings.screen_results_queue)["QueueUrl"]
            for index in range(settings.results_consumers):
                consumer = ScreenResultConsumer(
                    sqs=aws.sqs,
                    queue_url=url,
                    queue_name=settings.screen_results_queue,
                    joiner=joiner,
                    control=control,
                    commands=CommandStore(aws.dynamodb, settings.commands_table),
                    users=users,
                    quarantine=build_quarantine(settings, aws),
                )
                threads.append(
                    threading.Thread(
                        target=consumer.run, args=(self.stop_event,), name=f"results-{index}", daemon=True
                    )
                )
        progress: StreamProgress = ShardProgress(aws.dynamodb, settings.join_table, settings.application_name)
        threads.append(
            threading.Thread(
                target=run_releaser,
                args=(control,),
                kwargs={
                    "consumed_until": lambda: progress.consumed_until(aws.kinesis, settings.ctr_stream),
                    # Every agent with a recording state, configured today or not: a user
                    # switched off still has segments on her desktop to delete.
                    "agents": lambda: sorted(
                        {u.username for u in users.scan() if u.screen_recording}
                        | set(control.states.agents())
                    ),
                    "window": joiner.window,
                    "slack": timedelta(seconds=settings.release_slack_seconds),
                    "interval": settings.release_interval_seconds,
                    "stop": self.stop_event,
                },
                name="releaser",
                daemon=True,
            )
        )
        threads.append(
            threading.Thread(
                target=run_recording_guard,
                args=(control,),
                kwargs={"interval": settings.recording_guard_seconds, "stop": self.stop_event},
                name="recording-guard",
                daemon=True,
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
