"""Tables for people: QM contacts and settings."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, tzinfo
from typing import Any

from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from processor.core.local_time import shown_date_time
from processor.platform.logs import mask_phone
from processor.platform.settings import CommonSettings


def _number(value: str | None, show: bool) -> str:
    if not value:
        return ""
    return value if show else mask_phone(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    total = round(seconds)
    return f"{total // 60}:{total % 60:02d}"


def contacts_table(docs: Iterable[dict[str, Any]], *, show_numbers: bool = False, tz: tzinfo = UTC) -> Table:
    """The contacts as QM shows them: Date and Time in the contact centre's time zone."""
    table = Table(title="QM contacts", show_lines=False, header_style="bold")
    for column in (
        "ACD ID",
        "First Name",
        "Last Name",
        "Called Number",
        "Calling Number",
        "Direction",
        "Date",
        "Time",
        "Duration",
        "Recording Type",
        "Parties",
        "Screen",
        "Contact ID",
        "Flags",
    ):
        table.add_column(column, overflow="fold")
    for doc in docs:
        shown_date, shown_time = shown_date_time(doc, tz)
        table.add_row(
            doc.get("acd_id") or "",
            doc.get("first_name") or "",
            doc.get("last_name") or "",
            _number(doc.get("called_number"), show_numbers),
            _number(doc.get("calling_number"), show_numbers),
            doc.get("direction") or "",
            shown_date or "",
            shown_time or "",
            _duration(doc.get("call_duration_seconds")),
            doc.get("recording_type") or "",
            doc.get("recorded_parties") or "",
            doc.get("screen_recording_status") or "",
            doc.get("contact_id") or "",
            ", ".join(doc.get("flags") or []),
        )
    return table


def print_contacts(docs: Iterable[dict[str, Any]], *, show_numbers: bool = False, tz: tzinfo = UTC) -> None:
    Console(width=220).print(contacts_table(docs, show_numbers=show_numbers, tz=tz))


def _env_name(name: str, field: Any) -> str:
    alias = field.validation_alias
    if alias is not None and hasattr(alias, "choices"):
        return " / ".join(str(c) for c in alias.choices)
    return f"QM_{name.upper()}"


def settings_table(settings: CommonSettings, *, markdown: bool = False) -> str:
    """Every setting of ``settings``' class (the server's or the desktop's) with its variable."""
    rows = []
    for name, field in type(settings).model_fields.items():
        default = field.default
        current = getattr(settings, name)
        if isinstance(current, SecretStr) or "password" in name:
            current = "(set)" if current else "(unset)"
        default_text = "" if default is None else str(getattr(default, "value", default))
        current_text = "" if current is None else str(getattr(current, "value", current))
        rows.append((_env_name(name, field), default_text, field.description or "", current_text))
    if markdown:
        lines = ["| variable | default | meaning |", "|---|---|---|"]
        lines += [f"| `{v}` | `{d}` | {m} |" if d else f"| `{v}` | (unset) | {m} |" for v, d, m, _ in rows]
        return "\n".join(lines)
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{v.ljust(width)}  {c}" for v, _, _, c in rows)


def commands_table(rows: Iterable[tuple[str, str, dict[str, int]]]) -> Table:
    """Commands published per agent: (agent, queue name, {type: count})."""
    table = Table(title="Commands sent to agents' desktops", header_style="bold")
    kinds = ("start_recording", "stop_recording", "extract_screen", "release_segments_before")
    for column in ("Agent", "Queue", *kinds):
        table.add_column(column, overflow="fold")
    for agent, queue, counts in rows:
        table.add_row(agent, queue, *(str(counts.get(k, 0)) for k in kinds))
    return table


def gap_report_lines(report: Any, *, limit: int = 20) -> list[str]:
    """A gap report (:class:`processor.core.reconcile.GapReport`) for people: the counts, then
    up to ``limit`` contacts of each kind with the version on each side."""
    lines = [
        f"missing {len(report.missing)}  stale {len(report.stale)}  extra {len(report.extra)}  "
        f"ok {report.ok}  ahead {report.ahead}  unreadable {report.unreadable}"
    ]
    for item in report.missing[:limit]:
        lines.append(f"  missing  {item.contact_id}  {item.last_update}  ({item.where})")
    for item, imported in report.stale[:limit]:
        lines.append(
            f"  stale    {item.contact_id}  imported {imported} < {item.last_update}  ({item.where})"
        )
    for contact_id, imported in report.extra[:limit]:
        lines.append(f"  extra    {contact_id}  imported {imported}, not in the source")
    for kind, items in (("missing", report.missing), ("stale", report.stale), ("extra", report.extra)):
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more {kind} (--json lists them all)")
    return lines
