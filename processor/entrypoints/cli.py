"""The ``qm-ingest`` command line.

Every command reads the same settings (environment; the table in docs/settings.md), so it runs the same
against the embedded emulator, LocalStack or AWS. Errors a user can fix are reported in
one line on stderr with exit status 2 (bad input) or 1 (environment), never a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

import orjson
import typer

from processor.platform.exceptions import (
    ConfigurationError,
    InvalidInput,
    OsLoginTaken,
    QmIngestError,
    ResourceMissing,
)
from processor.platform.settings import CtrSource, LogFormat, Settings, get_settings

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


def settings() -> Settings:
    try:
        return get_settings()
    except ConfigurationError as exc:
        fail(str(exc), 2)


def _setup_logs(s: Settings) -> None:
    from processor.platform.logs import configure_logging

    configure_logging(s.log_level, s.log_format.value)


def _clients(s: Settings) -> Any:
    from processor.adapters.aws import AwsClients

    return AwsClients(s)


def _read_chunks(path: str) -> Iterator[bytes]:
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


def _read_bytes(path: str) -> bytes:
    return b"".join(_read_chunks(path))


# --- local emulator -------------------------------------------------------------------------
PortOption = Annotated[int, typer.Option("--port", help="Port on 127.0.0.1")]


@local_app.command("up")
def local_up(port: PortOption = 4566) -> None:
    """Start the embedded emulator (or use what already listens on the port)."""
    from processor.devtools.emulator import control

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
    from processor.devtools.emulator import control

    s = settings()
    stopped = control.down(port, Path(s.state_dir))
    typer.echo("stopped" if stopped else f"no emulator started by qm-ingest on port {port}")


@local_app.command("status")
def local_status(port: PortOption = 4566) -> None:
    """Say what answers on the port."""
    from processor.devtools.emulator import control

    s = settings()
    status = control.status(port, Path(s.state_dir))
    typer.echo(status.describe())
    if not status.listening:
        raise typer.Exit(3)


# --- resources and service ---------------------------------------------------------------------
@app.command()
def bootstrap() -> None:
    """Create streams, tables, buckets, queues and the S3 -> SQS notification (idempotent)."""
    from processor.ops.bootstrap import bootstrap as run_bootstrap
    from processor.ops.bootstrap import wait_for_endpoint

    s = settings()
    _setup_logs(s)
    aws = _clients(s)
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
    _setup_logs(s)
    try:
        code = run_service(s)
    except (ConfigurationError, ResourceMissing) as exc:
        fail(str(exc))
    raise typer.Exit(code)


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
    _setup_logs(s)
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
    aws = _clients(s)
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
    _setup_logs(s)
    location = _archive_location(s, url)
    start = _instant(since, "--since") if since else None
    end = (
        _instant(until, "--until", end=True)
        if until
        else (default_until(datetime.now(UTC)) if start else None)
    )
    if start and end and end <= start:
        fail("--until must be after --since", 2)
    aws = _clients(s)
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
    _setup_logs(s)
    location = _archive_location(s, url)
    start = _instant(since, "--since")
    end = _instant(until, "--until", end=True) if until else default_until(datetime.now(UTC))
    if end <= start:
        fail("--until must be after --since", 2)
    aws = _clients(s)
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


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per finding")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 on warnings too")] = False,
) -> None:
    """Check settings, endpoint, credentials, every resource and its configuration, Java and the
    KCL jars; print each problem with its fix. Exit 1 on a fatal problem (what stops `run`)."""
    from processor.ops.doctor import Doctor, render

    s = settings()
    _setup_logs(s)
    findings = Doctor(s).check_all()
    if as_json:
        for finding in findings:
            sys.stdout.buffer.write(orjson.dumps(finding.to_dict()) + b"\n")
        sys.stdout.flush()
    else:
        typer.echo(render(findings, s))
    if findings.fatal_ones or (strict and findings.warnings):
        raise typer.Exit(1)


# --- mapping ------------------------------------------------------------------------------------
def _load_users(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    from processor.core.user_directory import parse_users

    try:
        return {u.username: u for u in parse_users(_read_bytes(path))}
    except InvalidInput as exc:
        fail(f"{path}: {exc.detail}", 2)
    except UnicodeDecodeError:
        fail(f"{path}: not UTF-8 text", 2)


@app.command("map-ctr")
def map_ctr(
    file: Annotated[
        str, typer.Argument(help="CTR file: object, array, JSON lines or concatenated; - = stdin")
    ],
    users: Annotated[
        str | None, typer.Option("--users", help="QM users (JSON array or CSV: username,first_name,...)")
    ] = None,
) -> None:
    """Print the QM contact of every CTR in FILE, one JSON line each, in input order."""
    from processor.core.ctr import check_instance, ctr_from_object
    from processor.core.ctr_files import iter_ctr_inputs
    from processor.core.mapping import map_contact
    from processor.core.recording_location import flagged

    s = settings()
    locations = s.recording_locations
    directory = _load_users(users)
    out = sys.stdout.buffer
    for item in iter_ctr_inputs(_read_chunks(file), max_value_bytes=s.max_record_bytes):
        try:
            if item.error is not None:
                raise item.error
            record = ctr_from_object(item.value)
            check_instance(record, s.instance_arn)
        except InvalidInput as exc:
            out.flush()
            fail(f"{file}: {item.label}: {exc.reason}: {exc.detail}", 2)
        user = directory.get(record.agent.username) if record.agent and record.agent.username else None
        # As the service imports it: recordings outside the recordings buckets are dropped, flagged.
        record, rejected = locations.screen(record)
        out.write(orjson.dumps(flagged(map_contact(record, user), rejected).to_dict()) + b"\n")
    out.flush()


# --- contacts -----------------------------------------------------------------------------------
@contacts_app.command("list")
def contacts_list(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per contact")] = False,
    show_numbers: Annotated[bool, typer.Option("--show-numbers", help="Show phone numbers unmasked")] = False,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
) -> None:
    """List imported contacts (a table for people; --json for machines)."""
    from processor.adapters.dynamodb.contacts import DynamoContactStore
    from processor.ops.report import print_contacts

    s = settings()
    store = DynamoContactStore(_clients(s).dynamodb, s.contacts_table)
    try:
        docs = sorted(
            (c.doc for c in store.scan()), key=lambda d: (d.get("connected_at") or "", d["contact_id"])
        )
    except Exception as exc:
        fail(f"cannot read contacts: {exc}")
    if limit is not None:
        docs = docs[:limit]
    if as_json:
        out = sys.stdout.buffer
        for doc in docs:
            out.write(orjson.dumps(doc) + b"\n")
        out.flush()
        return
    print_contacts(docs, show_numbers=show_numbers, tz=s.zone)


@contacts_app.command("show")
def contacts_show(
    contact_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="The contact as one JSON line")] = False,
) -> None:
    """Show one contact."""
    from processor.adapters.dynamodb.contacts import DynamoContactStore

    s = settings()
    stored = DynamoContactStore(_clients(s).dynamodb, s.contacts_table).get(contact_id)
    if stored is None:
        fail(f"no contact {contact_id}", 3)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(stored.doc) + b"\n")
        return
    width = max(len(k) for k in stored.doc)
    for key, value in stored.doc.items():
        typer.echo(f"{key.ljust(width)}  {value if value is not None else ''}")


# --- users ----------------------------------------------------------------------------------------
@users_app.command("import")
def users_import(file: Annotated[str, typer.Argument(help="JSON array or CSV of users; - = stdin")]) -> None:
    """Import QM users (username = ACD ID) into the users table."""
    from processor.adapters.dynamodb.users_table import DynamoUserDirectory
    from processor.app.users_sync import ContactNamer

    s = settings()
    _setup_logs(s)
    users = _load_users(file)
    aws = _clients(s)
    directory = DynamoUserDirectory(aws.dynamodb, s.users_table)
    for user in users.values():
        try:
            directory.put(user)
        except OsLoginTaken as exc:
            fail(f"{file}: user {user.username}: {exc}", 2)
    # Contacts imported before their agent's user existed get the names now.
    named = ContactNamer(s, aws)(users)
    typer.echo(f"imported {len(users)} users; {named} contacts got their agent's name")


@users_app.command("list")
def users_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List QM users."""
    from processor.adapters.dynamodb.users_table import DynamoUserDirectory

    s = settings()
    users = sorted(DynamoUserDirectory(_clients(s).dynamodb, s.users_table).scan(), key=lambda u: u.username)
    for user in users:
        if as_json:
            sys.stdout.buffer.write(orjson.dumps(user.to_dict()) + b"\n")
        else:
            flag = "screen" if user.screen_recording else ""
            login = f"os_login={user.os_login}" if user.os_login else ""
            names = f"{user.first_name or '':15} {user.last_name or '':15}"
            typer.echo(f"{user.username:30} {names} {flag:6} {login}".rstrip())


@users_app.command("os-login")
def users_os_login(
    username: Annotated[str, typer.Argument(help="The user's ACD ID (Connect username)")],
    os_login: Annotated[
        str | None, typer.Argument(help="Her operating-system login (DOMAIN\\user on Windows); omit to unmap")
    ] = None,
) -> None:
    """Map an agent's OS login to her ACD ID: the desktop of the PC she logs on to serves her."""
    from processor.adapters.dynamodb.users_table import DynamoUserAdmin

    s = settings()
    _setup_logs(s)
    admin = DynamoUserAdmin(_clients(s).dynamodb, s.users_table, cache_seconds=0)
    try:
        found = admin.set_os_login(username, os_login)
    except OsLoginTaken as exc:
        fail(str(exc), 2)
    except InvalidInput as exc:
        fail(exc.detail, 2)
    if not found:
        fail(f"no user {username}", 3)
    typer.echo(f"{username}: OS login {'set' if os_login and os_login.strip() else 'removed'}")


@users_app.command("sync")
def users_sync(
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--instance-id", help="Amazon Connect instance id or ARN (default: the ACD configuration's)"
        ),
    ] = None,
) -> None:
    """Sync QM users from Amazon Connect (ListUsers + DescribeUser); keeps screen recording.
    Contacts of new and renamed users get their names."""
    from botocore.exceptions import BotoCoreError, ClientError

    from processor.app.users_sync import ContactNamer, sync_and_name, sync_instance

    s = settings()
    _setup_logs(s)
    aws = _clients(s)
    target = instance_id or sync_instance(s, aws)
    if not target:
        fail(
            "no instance: pass --instance-id or set the instance ARN on the console's ACD Configuration page",
            2,
        )
    try:
        outcome, named = sync_and_name(s, aws, target, synced_by="cli", namer=ContactNamer(s, aws))
    except (ClientError, BotoCoreError) as exc:
        fail(f"Amazon Connect user listing failed: {exc}")
    typer.echo(
        f"synced {outcome.total} users ({len(outcome.created)} new, {len(outcome.updated)} updated, "
        f"{len(outcome.gone)} no longer in Connect, {len(outcome.problems)} unreadable); "
        f"{named} contacts got their agent's name"
    )
    for problem in outcome.problems:
        typer.echo(f"  {problem}", err=True)


# --- console --------------------------------------------------------------------------------------
@console_app.callback()
def console(ctx: typer.Context) -> None:
    """Serve the console until Ctrl-C (address: QM_CONSOLE_HOST / QM_CONSOLE_PORT)."""
    if ctx.invoked_subcommand is not None:
        return
    from processor.console.server import start_console

    s = settings()
    _setup_logs(s)
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


# --- quarantine ---------------------------------------------------------------------------------
@quarantine_app.command("list")
def quarantine_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List quarantined input with reason and position."""
    from processor.adapters.dynamodb.quarantine import DynamoQuarantine

    s = settings()
    aws = _clients(s)
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
    _setup_logs(s)
    report = retry_entries(s, _clients(s), ids=ids or (), reason=reason, everything=everything)
    typer.echo(f"retried {report.retried}, still failing {report.still_failing}, skipped {report.skipped}")
    if report.still_failing:
        raise typer.Exit(1)


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
    from processor.desktop.main import run_desktop, run_pc_desktop

    s = settings()
    _setup_logs(s)
    if agent is None:
        raise typer.Exit(run_pc_desktop(s, folder))
    raise typer.Exit(run_desktop(s, agent, folder))


def desktop_main() -> None:
    """The ``qm-desktop`` console script: ``qm-desktop`` (per PC) or ``qm-desktop --agent USER``."""
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
    _setup_logs(s)
    try:
        when = parse_instant(since, "--since")
    except InvalidInput as exc:
        fail(exc.detail, 2)
    assert when is not None
    count = build_screen_control(s, _clients(s)).resync(agent, when)
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
    from processor.desktop.splice import probe_duration
    from processor.platform.exceptions import EnvelopeError

    s = settings()
    aws = _clients(s)
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
    duration = probe_duration(output.read_bytes())
    typer.echo(f"{output}  {size} bytes  {duration:.3f} s  (contact {contact_id}, from {location})")


@screen_app.command("demo")
def screen_demo(
    port: PortOption = 4566,
    source: Annotated[
        str, typer.Option("--source", help="synthetic, or screen (needs a display)")
    ] = "synthetic",
) -> None:
    """A contact with its screen recording, end to end, on the embedded emulator."""
    from processor.desktop.screen_demo import run_screen_demo

    raise typer.Exit(run_screen_demo(port=port, source=source))


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
    from processor.devtools.publish_simulation import publish_scenario

    s = settings()
    _setup_logs(s)
    result = publish_scenario(s, _clients(s), contacts=contacts, seed=seed)
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
    _setup_logs(s)
    try:
        expectation = parse_expectation(_read_bytes(expect))
    except InvalidInput as exc:
        fail(f"{expect}: {exc.detail}", 2)
    try:
        report = run_audit(s, _clients(s), expectation)
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
    from processor.devtools.demo import run_demo

    try:
        code = run_demo(contacts=contacts, port=port, console_seconds=console_seconds)
    except QmIngestError as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command("settings")
def show_settings(markdown: Annotated[bool, typer.Option("--markdown")] = False) -> None:
    """Every setting with its environment variable, default and current value (secrets hidden)."""
    from processor.ops.report import settings_table

    typer.echo(settings_table(settings(), markdown=markdown))


def main() -> None:
    try:
        app()
    except QmIngestError as exc:
        typer.echo(f"qm-ingest: {exc}", err=True)
        sys.exit(1)
