"""``qm-ingest``: QM users."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from processor.entrypoints.cli.common import (
    clients,
    fail,
    load_users,
    settings,
    setup_logs,
    users_app,
)
from processor.platform.exceptions import (
    InvalidInput,
    OsLoginTaken,
)


# --- users ----------------------------------------------------------------------------------------
@users_app.command("import")
def users_import(file: Annotated[str, typer.Argument(help="JSON array or CSV of users; - = stdin")]) -> None:
    """Import QM users (username = ACD ID) into the users table."""
    from processor.adapters.dynamodb.users_table import DynamoUserDirectory
    from processor.app.users_sync import ContactNamer

    s = settings()
    setup_logs(s)
    users = load_users(file)
    aws = clients(s)
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
    users = sorted(DynamoUserDirectory(clients(s).dynamodb, s.users_table).scan(), key=lambda u: u.username)
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
    setup_logs(s)
    admin = DynamoUserAdmin(clients(s).dynamodb, s.users_table, cache_seconds=0)
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
    setup_logs(s)
    aws = clients(s)
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
