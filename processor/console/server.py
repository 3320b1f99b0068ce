"""Serving the console: ``qm-ingest console`` (foreground) and inside ``qm-ingest run``.

hypercorn (already the embedded emulator's server) serves the ASGI app on
``QM_CONSOLE_HOST:QM_CONSOLE_PORT`` (127.0.0.1 by default). :class:`ConsoleServer` runs it
on its own thread and event loop, so the service can start and stop it next to its KCL
daemons: ``start_console(settings)`` returns once the socket listens.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

from hypercorn.asyncio import serve
from hypercorn.config import Config

from processor.adapters.aws import AwsClients
from processor.adapters.connect.user_listing import BotoConnectUsers, ConnectUserSource, SyncStateStore
from processor.adapters.dynamodb.console_audit_log import DynamoAuditLog
from processor.adapters.dynamodb.console_sessions import SessionStore
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.contacts_query import ContactQuery
from processor.adapters.dynamodb.runtime_config import RuntimeConfigStore
from processor.adapters.dynamodb.users_table import DynamoUserAdmin
from processor.adapters.sqs.agent_queue_depth import AgentQueueDepths
from processor.app.users_sync import ContactNamer
from processor.console.app import ConsoleDeps, create_app
from processor.console.auth import Authenticator, ConsoleAccount, accounts_from_settings
from processor.console.health_panel import HealthCheck, resource_health
from processor.console.media import (
    DecryptingScreenSource,
    RecordingInspector,
    S3Objects,
    S3ScreenSource,
    ScreenSource,
)
from processor.platform.exceptions import ConfigurationError
from processor.platform.logs import get_logger
from processor.platform.settings import Settings

log = get_logger("processor.console")


def build_deps(
    settings: Settings,
    aws: AwsClients | None = None,
    *,
    accounts: list[ConsoleAccount] | None = None,
    screen: ScreenSource | None = None,
    health: HealthCheck | None = None,
    connect_users: Callable[[], ConnectUserSource] | None = None,
    now: Callable[[], datetime] | None = None,
) -> ConsoleDeps:
    """The console's parts from the settings; each may be replaced (tests, the service)."""
    aws = aws or AwsClients(settings)
    accounts = accounts if accounts is not None else accounts_from_settings(settings)
    if not accounts:
        raise ConfigurationError(
            "the console has no users: set QM_CONSOLE_USERS (hashes from `qm-ingest console hash-password`) "
            "or QM_CONSOLE_PASSWORD"
        )
    objects = S3Objects(aws.s3)
    return ConsoleDeps(
        settings=settings,
        auth=Authenticator(accounts),
        config=RuntimeConfigStore(aws.dynamodb, settings.config_table),
        users=DynamoUserAdmin(aws.dynamodb, settings.users_table, cache_seconds=0),
        sync_state=SyncStateStore(aws.dynamodb, settings.config_table),
        connect_users=connect_users or (lambda: BotoConnectUsers(aws.client("connect"))),
        contacts=DynamoContactStore(aws.dynamodb, settings.contacts_table),
        contact_query=ContactQuery(aws.dynamodb, settings.contacts_table),
        audit=DynamoAuditLog(aws.dynamodb, settings.audit_table),
        objects=objects,
        inspector=RecordingInspector(objects),
        screen=screen or screen_source(settings, aws, objects),
        queue_depths=AgentQueueDepths(aws.sqs),
        health=health or (lambda: resource_health(settings, aws)),
        sessions=SessionStore(aws.dynamodb, settings.config_table),
        name_contacts=ContactNamer(settings, aws),
        now=now or (lambda: datetime.now(UTC)),
    )


def screen_source(settings: Settings, aws: AwsClients, objects: S3Objects) -> ScreenSource:
    """Uploads are encrypted for the server's key (qm-desktop): decrypt them for playback.
    Without a server key (a console run only to browse), recordings are served as stored."""
    from processor.adapters.screen_keys import load_server_key
    from processor.platform.exceptions import ConfigurationError as MissingKey

    try:
        key = load_server_key(settings)
    except MissingKey:
        log.warning(
            "no screen-recording server key (qm-ingest keys generate): recordings are served as stored"
        )
        return S3ScreenSource(objects)

    from processor.adapters.s3.screen_recordings import decrypt_to_file

    def decrypt(encrypted: BinaryIO, destination: Path) -> int:
        return decrypt_to_file(encrypted, key, destination)

    return DecryptingScreenSource(
        objects,
        aws.s3,
        decrypt,
        Path(settings.state_dir) / "console-screen-cache",
        max_bytes=settings.console_screen_max_mb << 20,
    )


@dataclass
class ConsoleServer:
    """The console on a background thread; ``url`` is known once :meth:`start` returns."""

    app: Any
    host: str = "127.0.0.1"
    port: int = 8081
    _thread: threading.Thread | None = field(default=None, init=False)
    _loop: asyncio.AbstractEventLoop | None = field(default=None, init=False)
    _stop: asyncio.Event | None = field(default=None, init=False)
    _sock: socket.socket | None = field(default=None, init=False)
    _error: BaseException | None = field(default=None, init=False)
    _url: str | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        assert self._url is not None, "start() first"
        return self._url

    def start(self, timeout: float = 15.0) -> ConsoleServer:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise ConfigurationError(
                f"the console cannot listen on {self.host}:{self.port} ({exc.strerror}): "
                "set QM_CONSOLE_PORT to a free port"
            ) from None
        sock.listen(128)
        host, port = sock.getsockname()[:2]
        self._url = f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
        self._sock = sock
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="qm-console", daemon=True)
        self._thread.start()
        if not ready.wait(timeout) or self._error is not None:
            raise ConfigurationError(f"the console did not start: {self._error}")
        log.info("console listening", url=self.url)
        return self

    def _run(self, ready: threading.Event) -> None:
        assert self._sock is not None
        config = Config()
        config.bind = [f"fd://{self._sock.fileno()}"]
        config.accesslog = None
        config.loglevel = "WARNING"
        config.graceful_timeout = 2.0

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            ready.set()
            await serve(self.app, config, shutdown_trigger=self._stop.wait)

        try:
            asyncio.run(main())
        except BaseException as exc:
            self._error = exc
            ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout)
        if self._sock is not None:
            # hypercorn adopted the descriptor and closed it: only forget it here.
            self._sock.detach()
            self._sock = None

    def wait(self) -> None:
        """Block until the server stops (the foreground ``qm-ingest console``)."""
        if self._thread is not None:
            while self._thread.is_alive():
                self._thread.join(0.5)


def start_console(settings: Settings, aws: AwsClients | None = None, **parts: Any) -> ConsoleServer:
    """Build and start the console on the configured address: what ``qm-ingest run`` calls
    when ``QM_CONSOLE_ENABLED`` is true (stop it with ``.stop()`` on shutdown)."""
    app = create_app(build_deps(settings, aws, **parts))
    return ConsoleServer(app, settings.console_host, settings.console_port).start()


def maybe_start_console(settings: Settings, aws: AwsClients | None = None) -> ConsoleServer | None:
    """For ``qm-ingest run``: the console when ``QM_CONSOLE_ENABLED`` is true, else None."""
    if not settings.console_enabled:
        return None
    return start_console(settings, aws)
