"""``qm-ingest``: Replay, backfill and reconciliation."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from processor.entrypoints.cli.common import (
    app,
    clients,
    fail,
    settings,
    setup_logs,
)
from processor.platform.settings import Settings


# --- replay, backfill, reconciliation ---------------------------------------------------------
def _instant(text: str, option: str, *, end: bool = False) -> Any:
    from processor.core.archive_layout import parse_date

    try:
        return parse_date(text, end=end)
    except ValueError:
        fail(f"{option}: not a date (YYYY-MM-DD) or an ISO 8601 instant: {text!r}", 2)


def _print_json(doc: Any) -> None:
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    sys.stdout.flush()


@app.command()
def replay(  # noqa: PLR0912, PLR0915, PLR0917 - typer passes options as parameters; checked one by one
    trim_horizon: Annotated[
        bool, typer.Option("--trim-horizon", help="From the oldest record the stream still holds")
    ] = False,
    from_timestamp: Annotated[
        str | None,
        typer.Option("--from-timestamp", help="From the first record that arrived at or after T (UTC)"),
    ] = None,
    from_checkpoints: Annotated[
        Path | None,
        typer.Option(
            "--from-checkpoints", help="Put back the checkpoints saved in FILE (by an earlier replay)"
        ),
    ] = None,
    shard: Annotated[
        list[str] | None, typer.Option("--shard", help="Only this shard (repeat for several)")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Write nothing: print what would change and where checkpoints go"),
    ] = False,
    direct: Annotated[
        bool,
        typer.Option(
            "--direct", help="Read the stream here and import (a one-off); checkpoints stay as they are"
        ),
    ] = False,
    stop_workers: Annotated[
        bool,
        typer.Option(
            "--stop-workers",
            help="If workers hold the leases: stop this host's workers (SIGTERM) first; "
            "start them again after",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="If workers hold the leases: move the checkpoints under them anyway"),
    ] = False,
    save_to: Annotated[
        Path | None,
        typer.Option(
            "--save-to", help="Where to save the current checkpoints (default: QM_STATE_DIR/checkpoints/)"
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option("--wait/--no-wait", help="Show the consumer re-reading until it is back where it was"),
    ] = True,
    wait_timeout: Annotated[
        float, typer.Option("--wait-timeout", help="Seconds to show it at most")
    ] = 3600.0,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document on stdout")] = False,
) -> None:
    """Process the CTR stream again from an earlier position: move the KCL checkpoints back
    (the running consumer re-reads), or --direct read and import here. Idempotent: what is
    already imported adds no contact and no output record."""
    from datetime import UTC, datetime

    from processor.ops.replay import ReplayFrom, load_checkpoints
    from processor.platform.exceptions import ReplayRefused

    chosen = [trim_horizon, from_timestamp is not None, from_checkpoints is not None]
    if sum(chosen) != 1:
        fail(
            "say where to replay from: one of --trim-horizon, --from-timestamp T, --from-checkpoints FILE", 2
        )
    if stop_workers and force:
        fail("--stop-workers and --force exclude each other", 2)
    if direct and (stop_workers or force or save_to):
        fail("--direct leaves the checkpoints alone: --stop-workers, --force and --save-to do not apply", 2)
    s = settings()
    setup_logs(s)
    saved = None
    if from_checkpoints is not None:
        try:
            saved = load_checkpoints(from_checkpoints)
        except ValueError as exc:
            fail(str(exc), 2)
    frm = ReplayFrom(
        trim_horizon=trim_horizon,
        timestamp=_instant(from_timestamp, "--from-timestamp") if from_timestamp else None,
        saved=saved,
    )
    aws = clients(s)
    progress = sys.stderr.isatty() and not as_json
    read: dict[str, Any] = {}
    if direct or dry_run:
        read, lines = _replay_read(s, aws, frm, shard, dry_run=dry_run, progress=progress)
        if direct:
            if as_json:
                _print_json(read)
            else:
                for line in lines:
                    typer.echo(line)
            return
        if not as_json:
            for line in lines:
                typer.echo(line)
    from processor.ops.replay import follow_consumer, replay_leases

    try:
        result = replay_leases(
            s,
            aws,
            frm,
            shards=shard,
            stop_workers=stop_workers,
            force=force,
            save_to=save_to,
            dry_run=dry_run,
            now=datetime.now(UTC),
        )
    except ReplayRefused as exc:
        if dry_run and as_json:
            _print_json({**read, "dry_run": True, "refused": str(exc)})
            raise typer.Exit(3) from None
        fail(str(exc), 3)
    plans = [
        {
            "shard_id": p.shard_id,
            "owner": p.owner,
            "checkpoint": p.current.describe(),
            "new_checkpoint": p.target.describe(),
            "moves": p.moves,
            "moved": p.shard_id in result.moved,
        }
        for p in result.plans
    ]
    caught_up: dict[str, bool] = {}
    if not dry_run and wait and result.moved:
        caught_up = follow_consumer(s, aws, result, timeout_s=wait_timeout, progress=progress)
    if as_json:
        _print_json(
            {
                **read,
                "dry_run": dry_run,
                "saved_to": str(result.saved_to) if result.saved_to else None,
                "shards": plans,
                "failed": result.failed,
                "held_by": result.held_by,
                "stopped_workers": result.stopped,
                "caught_up": caught_up,
            }
        )
    else:
        verb = "would move" if dry_run else "moved"
        for plan in plans:
            state = verb if plan["moves"] and (dry_run or plan["moved"]) else "unchanged"
            if plan["shard_id"] in result.failed:
                state = "NOT MOVED (kept changing)"
            typer.echo(
                f"{plan['shard_id']:24} {plan['checkpoint']:>58} -> {plan['new_checkpoint']:<58} {state}"
            )
        if result.saved_to:
            typer.echo(f"checkpoints before the replay saved to {result.saved_to}")
            typer.echo(f"undo with: qm-ingest replay --from-checkpoints {result.saved_to}")
        if result.stopped:
            typer.echo(f"stopped workers (pids {', '.join(map(str, result.stopped))}): start them again")
        elif result.held_by:
            typer.echo("moved under running workers (--force): they re-read after their next lease renewal")
        for shard_id, done in sorted(caught_up.items()):
            if not done:
                typer.echo(f"{shard_id}: still re-reading after {wait_timeout:.0f}s")
    if result.failed:
        raise typer.Exit(1)


def _replay_read(
    s: Settings, aws: Any, frm: Any, shards: list[str] | None, *, dry_run: bool, progress: bool
) -> tuple[dict[str, Any], list[str]]:
    """replay --direct (import what is read) or --dry-run (compare it, write nothing): the
    summary as a JSON document and as lines for people."""
    from processor.app.wiring import build_ingest
    from processor.ops.replay import replay_direct
    from processor.ops.report import gap_report_lines

    # One CTR path per shard (its own pools), so that shards never wait on each other.
    ingest = None if dry_run else (lambda: build_ingest(s, aws))
    try:
        report = replay_direct(s, aws, frm, shards=shards, ingest=ingest, dry_run=dry_run, progress=progress)
    except ValueError as exc:
        fail(str(exc), 2)
    mb = report.bytes / 1e6
    if dry_run:
        assert report.gaps is not None
        lines = [
            f"read {report.records} records ({mb:.2f} MB) from {len(report.shards)} shard(s); a replay would:"
        ]
        lines += gap_report_lines(report.gaps)
        return {"records": report.records, "mb": round(mb, 3), "diff": report.gaps.to_dict()}, lines
    summary = {
        "records": report.records,
        "mb": round(mb, 3),
        "created": report.created,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "quarantined": report.quarantined,
        "seconds": round(report.seconds, 3),
    }
    line = (
        f"replayed {report.records} records ({mb:.2f} MB) from {len(report.shards)} shard(s) in "
        f"{report.seconds:.1f}s: {report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged, {report.quarantined} quarantined"
    )
    return summary, [line]


def _archive_location(s: Settings, url: str | None) -> Any:
    from processor.core.archive_layout import ArchiveLocation, folder, parse_s3_url

    if url is None:
        return ArchiveLocation(s.archive_bucket, folder(s.archive_prefix))
    try:
        return parse_s3_url(url)
    except ValueError as exc:
        fail(str(exc), 2)


ArchiveUrl = Annotated[
    str | None,
    typer.Argument(
        help="s3://BUCKET/PREFIX where Firehose writes (default: QM_ARCHIVE_BUCKET/QM_ARCHIVE_PREFIX)"
    ),
]


@app.command()
def backfill(
    url: ArchiveUrl = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", help="From this date or instant (UTC; hour folders before it are not listed)"
        ),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Up to this date (inclusive) or instant (exclusive)")
    ] = None,
    parallel: Annotated[int, typer.Option("--parallel", min=1, max=16, help="Objects imported at once")] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="The summary as one JSON document")] = False,
) -> None:
    """Import the CTRs Kinesis Firehose wrote to S3 (YYYY/MM/DD/HH/ folders; plain or gzip;
    concatenated or one per line) through the same mapping, join and emission. Resumable:
    objects already imported are skipped."""
    from datetime import UTC, datetime

    from processor.adapters.s3.archive import list_archive
    from processor.app.wiring import build_ingest
    from processor.ops.backfill import build_importer, default_until, run_backfill

    s = settings()
    setup_logs(s)
    location = _archive_location(s, url)
    start = _instant(since, "--since") if since else None
    end = (
        _instant(until, "--until", end=True)
        if until
        else (default_until(datetime.now(UTC)) if start else None)
    )
    if start and end and end <= start:
        fail("--until must be after --since", 2)
    aws = clients(s)
    try:
        objects = list_archive(aws.s3, location.bucket, location.prefix, start, end)
    except Exception as exc:
        fail(f"cannot list {location}: {exc}")
    ingest = build_ingest(s, aws)
    try:
        report = run_backfill(
            build_importer(s, aws, ingest),
            objects,
            parallel=parallel,
            progress=sys.stderr.isatty() and not as_json,
        )
    finally:
        ingest.close()
    if as_json:
        _print_json(report.to_dict())
    else:
        typer.echo(
            f"{location}: {report.objects} objects ({report.skipped} already imported, "
            f"{report.imported_objects} imported, {len(report.failed_objects)} failed); "
            f"{report.records} records: {report.imported} contacts created or updated, {report.unchanged} "
            f"unchanged, {report.quarantined} quarantined; "
            f"{report.bytes / 1e6:.2f} MB in {report.seconds:.1f}s"
        )
        for failed in report.failed_objects:
            typer.echo(f"  failed: {failed} (run backfill again to retry it)")
    if report.failed_objects:
        raise typer.Exit(1)


@app.command()
def reconcile(  # noqa: PLR0917 - typer passes options as parameters
    url: ArchiveUrl = None,
    since: Annotated[str, typer.Option("--since", help="From this date or instant (UTC)")] = "",
    until: Annotated[
        str | None,
        typer.Option("--until", help="Up to this date (inclusive) or instant (exclusive); default now"),
    ] = None,
    fix: Annotated[bool, typer.Option("--fix", help="Import what is missing or stale")] = False,
    limit: Annotated[int, typer.Option("--limit", min=0, help="Contacts listed per kind")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="The whole report as one JSON document")] = False,
) -> None:
    """Compare what the Firehose archive holds for a period with what was imported (newest
    version per contact): missing, stale and extra contacts. Exit 4 when gaps remain."""
    from datetime import UTC, datetime

    from processor.app.wiring import build_ingest
    from processor.ops.backfill import build_importer, default_until
    from processor.ops.backfill import reconcile as run_reconcile
    from processor.ops.report import gap_report_lines

    if not since:
        fail("--since DATE is required", 2)
    s = settings()
    setup_logs(s)
    location = _archive_location(s, url)
    start = _instant(since, "--since")
    end = _instant(until, "--until", end=True) if until else default_until(datetime.now(UTC))
    if end <= start:
        fail("--until must be after --since", 2)
    aws = clients(s)
    ingest = build_ingest(s, aws) if fix else None
    try:
        result = run_reconcile(
            s,
            aws,
            location,
            start,
            end,
            fix=fix,
            progress=sys.stderr.isatty() and not as_json,
            importer=build_importer(s, aws, ingest) if ingest else None,
        )
        remaining = result.report
        if fix and result.fixed is not None:
            remaining = run_reconcile(s, aws, location, start, end, progress=False).report
    finally:
        if ingest is not None:
            ingest.close()
    if as_json:
        doc: dict[str, Any] = {
            "archive": str(location),
            "since": start.isoformat(),
            "until": end.isoformat(),
            "objects": result.objects,
            "records": result.records,
            "report": result.report.to_dict(),
        }
        if fix:
            doc["fixed"] = result.fixed.to_dict() if result.fixed else None
            doc["after_fix"] = remaining.to_dict()
        _print_json(doc)
    else:
        typer.echo(
            f"{location} {start.isoformat()} .. {end.isoformat()}: "
            f"{result.objects} objects, {result.records} records"
        )
        for line in gap_report_lines(result.report, limit=limit):
            typer.echo(line)
        if fix and result.fixed is not None:
            typer.echo(
                f"fixed: {result.fixed.imported_objects} objects imported again, "
                f"{result.fixed.imported} contacts created or updated; "
                f"now missing {len(remaining.missing)}, stale {len(remaining.stale)}"
            )
    if remaining.gaps:
        raise typer.Exit(4)
