"""What every command group of the ``qm-ingest`` command line shares: the Typer apps, the
global options, settings, logs, clients and input files."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from processor.platform.exceptions import (
    ConfigurationError,
    InvalidInput,
)
from processor.platform.settings import CommonSettings, LogFormat, Settings, get_settings

if TYPE_CHECKING:
    from processor.desktop.desktop_settings import DesktopSettings

app = typer.Typer(
    name="qm-ingest",
    help="Import Amazon Connect contacts (CTRs and call recordings) into QM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
local_app = typer.Typer(
    help="The embedded AWS emulator (moto + hypercorn) on 127.0.0.1.", no_args_is_help=True
)
contacts_app = typer.Typer(help="Imported QM contacts.", no_args_is_help=True)
users_app = typer.Typer(help="QM users (ACD ID, names, screen recording).", no_args_is_help=True)
quarantine_app = typer.Typer(help="Input that could not be imported, with the reason.", no_args_is_help=True)
keys_app = typer.Typer(help="The server's screen-recording key pair (RSA-2048).", no_args_is_help=True)
screen_app = typer.Typer(help="Screen recordings uploaded by qm-desktop.", no_args_is_help=True)
app.add_typer(local_app, name="local")
app.add_typer(contacts_app, name="contacts")
app.add_typer(users_app, name="users")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(keys_app, name="keys")
app.add_typer(screen_app, name="screen")
console_app = typer.Typer(
    help="The QM console (ACD Configuration, Users, Contacts) on 127.0.0.1.", invoke_without_command=True
)
app.add_typer(console_app, name="console")

CHUNK = 1 << 16


@app.callback()
def global_options(
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            "--log-format",
            case_sensitive=False,
            help="json (default: one JSON object per line on stderr) or console (for people). "
            "Same as QM_LOG_FORMAT.",
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option("--log-level", help="DEBUG, INFO, WARNING or ERROR. Same as QM_LOG_LEVEL.")
    ] = None,
) -> None:
    """Import Amazon Connect contacts (CTRs and call recordings) into QM."""
    # Through the environment, so the KCL daemon's record processors log the same way.
    if log_format is not None:
        os.environ["QM_LOG_FORMAT"] = log_format.value
    if log_level is not None:
        os.environ["QM_LOG_LEVEL"] = log_level
    get_settings.cache_clear()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"qm-ingest: {message}", err=True)
    raise typer.Exit(code)


#: What each optional install brings: the modules a missing one leaves out.
EXTRA_MODULES = {
    "desktop": ("av", "mss", "PIL", "processor.desktop"),
    "local": ("moto", "processor.devtools"),
}


def import_extra(module: str, extra: str, command: str, program: str = "qm-ingest") -> ModuleType:
    """``module`` of an optional install (desktop, local), imported when its command runs; without
    the extra: one line naming it, exit 1 (the server image has neither)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        roots = EXTRA_MODULES[extra]
        if not any(missing == root or missing.startswith(root + ".") for root in roots):
            raise
        typer.echo(
            f"{program}: {command} needs the {extra} extra: pip install 'qm-ingest[{extra}]'", err=True
        )
        raise typer.Exit(1) from None


def settings() -> Settings:
    try:
        return get_settings()
    except ConfigurationError as exc:
        fail(str(exc), 2)


def desktop_settings() -> DesktopSettings:
    """qm-desktop's settings; its module is in the desktop extra (``import_extra`` first)."""
    from processor.desktop.desktop_settings import load_desktop_settings

    try:
        return load_desktop_settings()
    except ConfigurationError as exc:
        fail(str(exc), 2)


def setup_logs(s: CommonSettings) -> None:
    from processor.platform.logs import configure_logging

    configure_logging(s.log_level, s.log_format.value)


def clients(s: Settings) -> Any:
    from processor.adapters.aws import AwsClients

    return AwsClients(s)


def read_chunks(path: str) -> Iterator[bytes]:
    if path == "-":
        stream = sys.stdin.buffer
        while chunk := stream.read(CHUNK):
            yield chunk
        return
    try:
        with open(path, "rb") as handle:
            while chunk := handle.read(CHUNK):
                yield chunk
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}", 2)


def read_bytes(path: str) -> bytes:
    return b"".join(read_chunks(path))


PortOption = Annotated[int, typer.Option("--port", help="Port on 127.0.0.1")]


def load_users(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    from processor.core.user_directory import parse_users

    try:
        return {u.username: u for u in parse_users(read_bytes(path))}
    except InvalidInput as exc:
        fail(f"{path}: {exc.detail}", 2)
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text", 2)
