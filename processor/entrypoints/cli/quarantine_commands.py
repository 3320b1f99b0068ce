"""``qm-ingest``: The quarantine."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from processor.entrypoints.cli.common import (
    clients,
    fail,
    quarantine_app,
    settings,
    setup_logs,
)


# --- quarantine ---------------------------------------------------------------------------------
@quarantine_app.command("list")
def quarantine_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List quarantined input with reason and position."""
    from processor.adapters.dynamodb.quarantine import DynamoQuarantine

    s = settings()
    aws = clients(s)
    entries = sorted(
        DynamoQuarantine(aws.dynamodb, s.quarantine_table, aws.s3, s.quarantine_bucket).list(),
        key=lambda e: e.quarantined_at,
    )
    for entry in entries:
        if as_json:
            doc = {
                "id": entry.id,
                "reason": entry.reason,
                "detail": entry.detail,
                "position": entry.position,
                "quarantined_at": entry.quarantined_at,
                "status": entry.status,
                "payload_bytes": len(entry.payload) if entry.payload is not None else None,
            }
            sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
        else:
            where = " ".join(f"{k}={v}" for k, v in entry.position.items())
            typer.echo(f"{entry.quarantined_at}  {entry.reason:18} {entry.status:8} {where}  {entry.detail}")


@quarantine_app.command("retry")
def quarantine_retry(
    ids: Annotated[list[str] | None, typer.Argument(help="Quarantine ids to retry")] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Retry every open entry with this reason")
    ] = None,
    everything: Annotated[bool, typer.Option("--all", help="Retry every open entry")] = False,
) -> None:
    """Run quarantined input again through the same path (after a fix); idempotent."""
    from processor.ops.quarantine_retry import retry_entries

    if not ids and reason is None and not everything:
        fail("name entries to retry: ids, --reason REASON or --all", 2)
    s = settings()
    setup_logs(s)
    report = retry_entries(s, clients(s), ids=ids or (), reason=reason, everything=everything)
    typer.echo(f"retried {report.retried}, still failing {report.still_failing}, skipped {report.skipped}")
    if report.still_failing:
        raise typer.Exit(1)
