"""``qm-ingest``: The QM console."""

from __future__ import annotations

import typer

from processor.entrypoints.cli.common import (
    console_app,
    fail,
    settings,
    setup_logs,
)
from processor.platform.exceptions import (
    ConfigurationError,
)


# --- console --------------------------------------------------------------------------------------
@console_app.callback()
def console(ctx: typer.Context) -> None:
    """Serve the console until Ctrl-C (address: QM_CONSOLE_HOST / QM_CONSOLE_PORT)."""
    if ctx.invoked_subcommand is not None:
        return
    from processor.console.server import start_console

    s = settings()
    setup_logs(s)
    try:
        server = start_console(s)
    except ConfigurationError as exc:
        fail(str(exc))
    typer.echo(f"QM console: {server.url}  (Ctrl-C stops it)")
    try:
        server.wait()
    except KeyboardInterrupt:
        server.stop()


@console_app.command("hash-password")
def console_hash_password() -> None:
    """Print the argon2id hash of a password typed twice (for QM_CONSOLE_USERS)."""
    from processor.console.auth import hash_password

    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        typer.echo(hash_password(password))
    except ValueError as exc:
        fail(str(exc), 2)
