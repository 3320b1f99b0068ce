"""``qm-ingest``: Resources, the service, its checks and its settings."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import orjson
import typer

from processor.entrypoints.cli.common import (
    app,
    clients,
    desktop_settings,
    fail,
    import_extra,
    settings,
    setup_logs,
)
from processor.platform.exceptions import (
    ConfigurationError,
    ResourceMissing,
)
from processor.platform.settings import CtrSource, get_settings


# --- resources and service ---------------------------------------------------------------------
@app.command()
def bootstrap() -> None:
    """Create streams, tables, buckets, queues and the S3 -> SQS notification (idempotent)."""
    from processor.ops.bootstrap import bootstrap as run_bootstrap
    from processor.ops.bootstrap import wait_for_endpoint

    s = settings()
    setup_logs(s)
    aws = clients(s)
    try:
        wait_for_endpoint(aws, timeout=30)
        report = run_bootstrap(s, aws)
    except Exception as exc:
        fail(f"bootstrap failed: {exc}")
    for name in report.created:
        typer.echo(f"created  {name}")
    for name in report.existing:
        typer.echo(f"exists   {name}")


@app.command()
def run(
    ctr_source: Annotated[
        CtrSource | None,
        typer.Option(
            "--ctr-source",
            case_sensitive=False,
            help="kinesis: the CTR stream through the KCL (default); firehose-s3: new Firehose objects "
            "announced by S3 on QM_ARCHIVE_QUEUE. Same as QM_CTR_SOURCE.",
        ),
    ] = None,
) -> None:
    """Run the service: the KCL consumer of the CTR stream, or follow the Firehose archive (until SIGTERM)."""
    from processor.app.service import run_service

    if ctr_source is not None:
        # Through the environment, like the log options: every child process reads the same.
        os.environ["QM_CTR_SOURCE"] = ctr_source.value
        get_settings.cache_clear()
    s = settings()
    setup_logs(s)
    try:
        code = run_service(s)
    except (ConfigurationError, ResourceMissing) as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per finding")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too")] = False,
) -> None:
    """Check settings, endpoint, credentials, every resource and its configuration, Java and the
    KCL jars; print each problem with its fix. Exit 1 on a fatal problem (what stops `run`)."""
    from processor.ops.doctor import Doctor, render

    s = settings()
    setup_logs(s)
    findings = Doctor(s).check_all()
    if as_json:
        for finding in findings:
            sys.stdout.buffer.write(orjson.dumps(finding.to_dict()) + b"\n")
        sys.stdout.flush()
    else:
        typer.echo(render(findings, s))
    if findings.fatal_ones or (strict and findings.warnings):
        raise typer.Exit(1)


@app.command("settings")
def show_settings(
    markdown: Annotated[bool, typer.Option("--markdown")] = False,
    desktop: Annotated[
        bool, typer.Option("--desktop", help="qm-desktop's settings instead of the server's")
    ] = False,
) -> None:
    """Every setting with its environment variable, default and current value (secrets hidden)."""
    from processor.ops.report import settings_table

    if desktop:
        import_extra("processor.desktop.desktop_settings", "desktop", "settings --desktop")
        typer.echo(settings_table(desktop_settings(), markdown=markdown))
        return
    typer.echo(settings_table(settings(), markdown=markdown))
