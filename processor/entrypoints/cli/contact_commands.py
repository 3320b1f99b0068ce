"""``qm-ingest``: Mapping CTRs and the imported contacts."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from processor.entrypoints.cli.common import (
    app,
    clients,
    contacts_app,
    fail,
    load_users,
    read_chunks,
    settings,
)
from processor.platform.exceptions import (
    InvalidInput,
)

# --- mapping ------------------------------------------------------------------------------------


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
    directory = load_users(users)
    out = sys.stdout.buffer
    for item in iter_ctr_inputs(read_chunks(file), max_value_bytes=s.max_record_bytes):
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
    store = DynamoContactStore(clients(s).dynamodb, s.contacts_table)
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
    stored = DynamoContactStore(clients(s).dynamodb, s.contacts_table).get(contact_id)
    if stored is None:
        fail(f"no contact {contact_id}", 3)
    if as_json:
        sys.stdout.buffer.write(orjson.dumps(stored.doc) + b"\n")
        return
    width = max(len(k) for k in stored.doc)
    for key, value in stored.doc.items():
        typer.echo(f"{key.ljust(width)}  {value if value is not None else ''}")
