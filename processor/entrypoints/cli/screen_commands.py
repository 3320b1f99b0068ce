"""``qm-ingest``: Screen recording: qm-desktop, the key pair, uploaded recordings."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from processor.entrypoints.cli.common import (
    PortOption,
    app,
    clients,
    desktop_settings,
    fail,
    import_extra,
    keys_app,
    screen_app,
    settings,
    setup_logs,
)
from processor.platform.exceptions import (
    ConfigurationError,
    InvalidInput,
    QmIngestError,
)


# --- screen recording -------------------------------------------------------------------------
@app.command()
def desktop(
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent",
            help="Serve this Connect username only; without it, follow whoever holds the PC's"
            " console session (QM_DESKTOP_SESSION, OS login on the Users page)",
        ),
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            "--folder",
            help="With --agent: the agent's folder (default QM_DESKTOP_DIR/<user>); without: the"
            " base folder of the agents' folders (default QM_DESKTOP_DIR)",
        ),
    ] = None,
) -> None:
    """qm-desktop: record this PC's screen and serve extractions (until SIGTERM)."""
    desktop_module = import_extra("processor.desktop.main", "desktop", "desktop")
    s = desktop_settings()
    setup_logs(s)
    if agent is None:
        raise typer.Exit(desktop_module.run_pc_desktop(s, folder))
    raise typer.Exit(desktop_module.run_desktop(s, agent, folder))


def desktop_main() -> None:
    """The ``qm-desktop`` console script: ``qm-desktop`` (per PC) or ``qm-desktop --agent USER``."""
    try:
        import_extra("processor.desktop.main", "desktop", "qm-desktop", program="qm-desktop")
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    command = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    command.command()(desktop)
    try:
        command()
    except QmIngestError as exc:
        typer.echo(f"qm-desktop: {exc}", err=True)
        sys.exit(1)


@app.command("desktop-sync")
def desktop_sync(
    agent: Annotated[str, typer.Option("--agent", help="Connect username of the agent")],
    since: Annotated[str, typer.Option("--since", help="ISO 8601 instant, e.g. 2026-11-24T17:00:00Z")],
) -> None:
    """Republish every extraction of AGENT since SINCE that has no result yet (reconnect recovery)."""
    from processor.app.wiring import build_screen_control
    from processor.core.ctr import parse_instant

    s = settings()
    setup_logs(s)
    try:
        when = parse_instant(since, "--since")
    except InvalidInput as exc:
        fail(exc.detail, 2)
    assert when is not None
    count = build_screen_control(s, clients(s)).resync(agent, when)
    typer.echo(f"republished {count} extractions of {agent} without a result since {since}")


@keys_app.command("generate")
def keys_generate(
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing key (old recordings are lost)")
    ] = False,
) -> None:
    """Write a new RSA-2048 private key to QM_SCREEN_PRIVATE_KEY_FILE and its public key."""
    from processor.adapters.screen_keys import generate_server_key, private_key_path, public_key_path
    from processor.core.envelope import key_fingerprint

    s = settings()
    path = private_key_path(s)
    try:
        key = generate_server_key(path, overwrite=force)
    except ConfigurationError as exc:
        fail(f"{exc} (use --force to replace it)")
    typer.echo(f"key id       {key.key_id}")
    typer.echo(
        f"sha256       {key_fingerprint(key.public_key_pem)}  (QM_DESKTOP_SERVER_KEY_SHA256 on desktops)"
    )
    typer.echo(f"private key  {path}")
    typer.echo(f"public key   {public_key_path(path)}")


@keys_app.command("show")
def keys_show() -> None:
    """The key id and public key that desktops encrypt recordings for."""
    from processor.adapters.screen_keys import server_public_key
    from processor.core.envelope import key_fingerprint

    key_id, pem = server_public_key(settings())
    typer.echo(f"key id  {key_id}")
    typer.echo(f"sha256  {key_fingerprint(pem)}  (QM_DESKTOP_SERVER_KEY_SHA256 on desktops)")
    typer.echo(pem.rstrip())


@screen_app.command("get")
def screen_get(
    contact_id: Annotated[str, typer.Argument(help="Contact ID")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the MP4")],
    location: Annotated[
        str | None, typer.Option("--location", help="bucket/key of the upload (default: from the contact)")
    ] = None,
) -> None:
    """Download a contact's screen recording and decrypt it with the server key."""
    from processor.adapters.s3.screen_recordings import download_recording
    from processor.adapters.screen_keys import load_server_key
    from processor.platform.exceptions import EnvelopeError

    s = settings()
    aws = clients(s)
    if location is None:
        from processor.adapters.dynamodb.contacts import DynamoContactStore

        stored = DynamoContactStore(aws.dynamodb, s.contacts_table).get(contact_id)
        if stored is None:
            fail(f"no contact {contact_id}", 3)
        location = stored.doc.get("screen_recording_location")
        if not location:
            fail(f"contact {contact_id} has no screen recording (yet)", 3)
    key = load_server_key(s)
    try:
        size = download_recording(aws.s3, location, key, output)
    except EnvelopeError as exc:
        fail(f"{location}: not played: {exc}", 2)
    except ValueError as exc:
        fail(str(exc), 2)
    except Exception as exc:
        fail(f"cannot download {location}: {exc}")
    # The duration needs the desktop extra's decoder (av); the server image prints without it.
    try:
        from processor.desktop.splice import probe_duration
    except ModuleNotFoundError:
        length = ""
    else:
        length = f"  {probe_duration(output.read_bytes()):.3f} s"
    typer.echo(f"{output}  {size} bytes{length}  (contact {contact_id}, from {location})")


@screen_app.command("demo")
def screen_demo(
    port: PortOption = 4566,
    source: Annotated[
        str, typer.Option("--source", help="synthetic, or screen (needs a display)")
    ] = "synthetic",
) -> None:
    """A contact with its screen recording, end to end, on the embedded emulator."""
    screen_demo_module = import_extra("processor.desktop.screen_demo", "desktop", "screen demo")
    raise typer.Exit(screen_demo_module.run_screen_demo(port=port, source=source))
