"""Wiring of qm-desktop from its settings (``DesktopSettings``; what ``qm-ingest desktop`` and
``qm-desktop`` run)."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

from processor.adapters.aws import AwsClients
from processor.core.agent_queue import agent_queue_name
from processor.core.desktop_trust import LOOPBACK, CommandTrust
from processor.desktop.agent import DesktopAgent, DesktopConfig, default_base_dir, user_folder
from processor.desktop.capture import FrameSource, ScreenSource, SyntheticSource
from processor.desktop.clock import Clock, SystemClock
from processor.desktop.desktop_settings import DesktopSettings, DesktopSource
from processor.desktop.pc import PcDesktop
from processor.desktop.segments import EncoderSettings
from processor.desktop.session import DynamoLoginDirectory, SessionUser, session_from_setting
from processor.desktop.transport import S3Uploader, SqsCommandQueue, SqsResultSink


def base_folder(settings: DesktopSettings) -> Path:
    return Path(settings.desktop_dir) if settings.desktop_dir else default_base_dir()


def agent_folder(settings: DesktopSettings, agent: str, base: Path | None = None) -> Path:
    return user_folder(base or base_folder(settings), agent)


def frame_source(settings: DesktopSettings) -> FrameSource:
    if settings.desktop_source is DesktopSource.SYNTHETIC:
        width, height = (int(v) for v in settings.desktop_synthetic_size.split("x"))
        return SyntheticSource(width, height)
    return ScreenSource(settings.desktop_monitor)


def desktop_config(settings: DesktopSettings, agent: str, folder: Path | None = None) -> DesktopConfig:
    return DesktopConfig(
        agent=agent,
        folder=folder or agent_folder(settings, agent),
        encoder=EncoderSettings(
            fps=settings.desktop_fps,
            crf=settings.desktop_crf,
            preset=settings.desktop_preset,
            fsync=settings.desktop_fsync,
        ),
        segment_seconds=settings.desktop_segment_seconds,
        quota_bytes=settings.desktop_quota_mb * 1024 * 1024,
        warn_fraction=settings.desktop_quota_warn_percent / 100,
        poll_seconds=settings.desktop_poll_seconds,
        desktop_id=socket.gethostname(),
        trust=command_trust(settings),
    )


def command_trust(settings: DesktopSettings) -> CommandTrust:
    """What this desktop's configuration lets a command ask (see ``core.desktop_trust``)."""
    endpoint = settings.endpoint_for("s3")
    loopback = endpoint is not None and (urlsplit(endpoint).hostname or "") in LOOPBACK
    return CommandTrust(
        server_key_sha256=settings.desktop_server_key_sha256,
        screen_bucket=settings.screen_bucket,
        region=settings.aws_region,
        emulator_endpoint=endpoint if loopback else None,
    )


def build_agent(
    settings: DesktopSettings,
    agent: str,
    *,
    folder: Path | None = None,
    clock: Clock | None = None,
    source: FrameSource | None = None,
) -> DesktopAgent:
    aws = AwsClients(settings)
    return DesktopAgent(
        desktop_config(settings, agent, folder),
        queue=SqsCommandQueue(aws.sqs, agent_queue_name(agent)),
        results=SqsResultSink(aws.sqs, settings.screen_results_queue),
        uploader=S3Uploader(aws.s3),
        source=source or frame_source(settings),
        clock=clock or SystemClock(),
    )


def stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def run_desktop(settings: DesktopSettings, agent: str, folder: Path | None = None) -> int:
    """Run until SIGTERM or SIGINT; the current segment is finished before exiting."""
    stop = stop_on_signals()
    build_agent(settings, agent, folder=folder).run(stop)
    return 0


def build_pc_desktop(
    settings: DesktopSettings,
    *,
    base: Path | None = None,
    session: SessionUser | None = None,
    clock: Clock | None = None,
) -> PcDesktop:
    """The PC recorder: serves the agent whose OS login holds the console session, each
    agent in her own folder under ``base`` (default ``QM_DESKTOP_DIR``)."""
    aws = AwsClients(settings)
    root = base or base_folder(settings)
    clock = clock or SystemClock()
    return PcDesktop(
        session=session or session_from_setting(settings.desktop_session),
        logins=DynamoLoginDirectory(aws.dynamodb, settings.users_table),
        build=lambda agent: build_agent(
            settings, agent, folder=agent_folder(settings, agent, root), clock=clock
        ),
        clock=clock,
        poll_seconds=settings.desktop_poll_seconds,
    )


def run_pc_desktop(settings: DesktopSettings, base: Path | None = None) -> int:
    """Follow the PC's console session until SIGTERM or SIGINT."""
    stop = stop_on_signals()
    build_pc_desktop(settings, base=base).run(stop)
    return 0
