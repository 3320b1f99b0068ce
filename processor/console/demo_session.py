"""The console at the end of ``make demo``: its address and a login, then it serves the
demo's contacts until Ctrl-C (on a terminal) or for ``seconds``."""

from __future__ import annotations

import contextlib
import secrets
import sys
import time
from collections.abc import Callable

from processor.adapters.aws import AwsClients
from processor.console.auth import ConsoleAccount, accounts_from_settings, hash_password
from processor.console.server import ConsoleServer, start_console
from processor.platform.exceptions import ConfigurationError
from processor.platform.settings import ConsoleRole, Settings


def demo_console(
    settings: Settings,
    aws: AwsClients,
    say: Callable[[str], None],
    seconds: float | None = None,
) -> None:
    """Start the console, print where and how to sign in, serve, stop."""
    from processor.devtools.emulator import control  # the demo's only: the local extra

    accounts = accounts_from_settings(settings)
    login = "as configured (QM_CONSOLE_USERS / QM_CONSOLE_PASSWORD)"
    if not accounts:
        password = secrets.token_urlsafe(12)
        accounts = [
            ConsoleAccount("admin", frozenset(ConsoleRole), hash_password(password), reveal_numbers=True)
        ]
        login = f"admin / {password} (administrator and evaluator; this run only)"
    port = settings.console_port
    if port and control.port_open(port):
        port = 0  # the usual port is taken: any free one
    try:
        server: ConsoleServer = start_console(
            settings.model_copy(update={"console_port": port}), aws, accounts=accounts
        )
    except ConfigurationError as exc:
        say(f"console: not started ({exc})")
        return
    say(f"console: {server.url}  login: {login}")
    if seconds is None:
        seconds = float("inf") if sys.stdin.isatty() else 0.0
    if seconds > 0:
        say("console: serving the demo's contacts; Ctrl-C stops the demo")
    try:
        with contextlib.suppress(KeyboardInterrupt):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                time.sleep(0.5)
    finally:
        server.stop()
