"""``qm-ingest``: The embedded emulator, the simulated contact centre, the audit and the demo."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import orjson
import typer

from processor.entrypoints.cli.common import (
    PortOption,
    app,
    clients,
    fail,
    import_extra,
    local_app,
    read_bytes,
    settings,
    setup_logs,
)
from processor.platform.exceptions import (
    InvalidInput,
    QmIngestError,
)

# --- local emulator -------------------------------------------------------------------------


@local_app.command("up")
def local_up(port: PortOption = 4566) -> None:
    """Start the embedded emulator (or use what already listens on the port)."""
    control = import_extra("processor.devtools.emulator.control", "local", "local up")
    s = settings()
    try:
        status = control.up(port, Path(s.state_dir))
    except RuntimeError as exc:
        fail(str(exc))
    typer.echo(status.describe())
    typer.echo(f"export AWS_ENDPOINT_URL={status.endpoint}")


@local_app.command("down")
def local_down(port: PortOption = 4566) -> None:
    """Stop the embedded emulator started by `local up` (never a LocalStack)."""
    control = import_extra("processor.devtools.emulator.control", "local", "local down")
    s = settings()
    stopped = control.down(port, Path(s.state_dir))
    typer.echo("stopped" if stopped else f"no emulator started by qm-ingest on port {port}")


@local_app.command("status")
def local_status(port: PortOption = 4566) -> None:
    """Say what answers on the port."""
    control = import_extra("processor.devtools.emulator.control", "local", "local status")
    s = settings()
    status = control.status(port, Path(s.state_dir))
    typer.echo(status.describe())
    if not status.listening:
        raise typer.Exit(3)


# --- simulation and demo -----------------------------------------------------------------------
@app.command()
def simulate(
    contacts: Annotated[int, typer.Option("--contacts", min=1, help="Contacts to simulate")] = 20,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: time-based)")] = None,
    expect_file: Annotated[
        Path | None,
        typer.Option(
            "--expect-file",
            help="Write what QM must end with here (contacts, versions, join states) for `qm-ingest audit`",
        ),
    ] = None,
) -> None:
    """Send a simulated contact centre's CTRs (and its users) to the emulator/AWS."""
    simulation = import_extra("processor.devtools.publish_simulation", "local", "simulate")
    s = settings()
    setup_logs(s)
    result = simulation.publish_scenario(s, clients(s), contacts=contacts, seed=seed)
    if expect_file:
        expect_file.write_bytes(
            orjson.dumps(result.scenario.expectation().to_dict(), option=orjson.OPT_INDENT_2)
        )
    typer.echo(
        f"simulated {len(result.expected)} contacts: {result.deliveries} CTR deliveries "
        f"(duplicates and updates included), {result.recordings} recordings, {len(result.users)} users"
    )


@app.command()
def audit(
    expect: Annotated[
        str, typer.Option("--expect", help="What was sent (schemas/audit-expect.schema.json); - = stdin")
    ],
    as_json: Annotated[
        bool, typer.Option("--json", help="The report as one JSON object (schemas/audit-report.schema.json)")
    ] = False,
) -> None:
    """Judge what QM holds against what was sent: contacts expected / imported / lost / duplicated,
    quarantine, output-stream records per contact version. Exit 1 on any loss or duplicate."""
    from processor.core.scenario_verdict import parse_expectation
    from processor.ops.scenario_audit import run_audit

    s = settings()
    setup_logs(s)
    try:
        expectation = parse_expectation(read_bytes(expect))
    except InvalidInput as exc:
        fail(f"{expect}: {exc.detail}", 2)
    try:
        report = run_audit(s, clients(s), expectation)
    except Exception as exc:
        fail(f"cannot read what QM holds: {type(exc).__name__}: {exc}")
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(report.to_dict()) + b"\n")
        sys.stdout.flush()
    else:
        typer.echo(report.render())
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def demo(
    contacts: Annotated[int, typer.Option("--contacts", min=1)] = 16,
    port: PortOption = 4566,
    console_seconds: Annotated[
        float | None,
        typer.Option(
            "--console-seconds",
            help="Serve the console this long at the end (default: until Ctrl-C on a terminal, else 0)",
        ),
    ] = None,
) -> None:
    """Emulator + bootstrap + service + simulated contact centre -> prints the QM contacts,
    then the console's address and a login."""
    demo_module = import_extra("processor.devtools.demo", "local", "demo")
    try:
        code = demo_module.run_demo(contacts=contacts, port=port, console_seconds=console_seconds)
    except QmIngestError as exc:
        fail(str(exc))
    raise typer.Exit(code)
