"""The ``qm-ingest`` command line.

Every command reads the same settings (environment; the table in docs/settings.md), so it runs the same
against the embedded emulator, LocalStack or AWS. Errors a user can fix are reported in
one line on stderr with exit status 2 (bad input) or 1 (environment), never a traceback.
"""

from __future__ import annotations

import sys

import typer

from processor.entrypoints.cli import (  # noqa: F401 - each module registers its commands on app
    console_commands,
    contact_commands,
    local_commands,
    quarantine_commands,
    screen_commands,
    service_commands,
    stream_commands,
    user_commands,
)
from processor.entrypoints.cli.common import app
from processor.entrypoints.cli.screen_commands import desktop_main
from processor.platform.exceptions import QmIngestError

__all__ = ["app", "desktop_main", "main"]


def main() -> None:
    try:
        app()
    except QmIngestError as exc:
        typer.echo(f"qm-ingest: {exc}", err=True)
        sys.exit(1)
