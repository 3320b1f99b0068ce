"""Messages between the server and qm-desktop, checked against ``schemas/desktop-*.schema.json``.

Commands arrive on the agent's own SQS FIFO queue; results go to the results queue.
Both sides build and parse them here, so the schema files stay the single contract.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from processor.core.schemas import SchemaViolation, validate
from processor.platform.exceptions import InvalidInput

COMMAND_SCHEMA = "desktop-command"
RESULT_SCHEMA = "desktop-result"
#: Commands are small; anything bigger than this is not one of ours.
MAX_COMMAND_BYTES = 64 * 1024


class CommandType(StrEnum):
    START_RECORDING = "start_recording"
    STOP_RECORDING = "stop_recording"
    EXTRACT_SCREEN = "extract_screen"
    RELEASE_SEGMENTS_BEFORE = "release_segments_before"


class ResultType(StrEnum):
    SCREEN_UPLOADED = "screen_uploaded"
    SCREEN_UNAVAILABLE = "screen_unavailable"
    SCREEN_FAILED = "screen_failed"
    SYNC_REQUEST = "sync_request"
    HEARTBEAT = "heartbeat"


def format_instant(value: datetime) -> str:
    """UTC ISO 8601 with milliseconds, the only time format on the wire."""
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def parse_instant(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


@dataclass(frozen=True)
class UploadTarget:
    bucket: str
    key: str
    url: str | None = None

    @property
    def location(self) -> str:
        return f"{self.bucket}/{self.key}"


@dataclass(frozen=True)
class DesktopCommand:
    type: CommandType
    command_id: str
    agent: str
    issued_at: datetime
    raw: dict[str, Any]
    event_at: datetime | None = None
    contact_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    upload: UploadTarget | None = None
    server_key_id: str | None = None
    server_public_key_pem: str | None = None
    before: datetime | None = None


def _instant(doc: dict[str, Any], name: str) -> datetime | None:
    value = doc.get(name)
    return parse_instant(value) if isinstance(value, str) else None


def parse_command(body: bytes | str) -> DesktopCommand:
    """A command from the queue, validated; :class:`InvalidInput` when it is not one."""
    data = body.encode() if isinstance(body, str) else body
    if len(data) > MAX_COMMAND_BYTES:
        raise InvalidInput(
            "oversized", f"command of {len(data)} bytes (max {MAX_COMMAND_BYTES})", payload=data
        )
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("bad_json", str(exc), payload=data) from None
    try:
        validate(COMMAND_SCHEMA, doc)
    except SchemaViolation as exc:
        raise InvalidInput("schema", str(exc), payload=data) from None
    upload = doc.get("upload")
    command = DesktopCommand(
        type=CommandType(doc["type"]),
        command_id=doc["command_id"],
        agent=doc["agent"],
        issued_at=parse_instant(doc["issued_at"]),
        raw=doc,
        event_at=_instant(doc, "event_at"),
        contact_id=doc.get("contact_id"),
        start=_instant(doc, "start"),
        end=_instant(doc, "end"),
        upload=UploadTarget(upload["bucket"], upload["key"], upload.get("url")) if upload else None,
        server_key_id=doc.get("server_key_id"),
        server_public_key_pem=doc.get("server_public_key_pem"),
        before=_instant(doc, "before"),
    )
    if command.type is CommandType.EXTRACT_SCREEN:
        assert command.start is not None and command.end is not None
        if command.end < command.start:
            raise InvalidInput("schema", "extract_screen ends before it starts", payload=data)
        if not command.server_public_key_pem:
            raise InvalidInput("schema", "extract_screen without server_public_key_pem", payload=data)
    return command


def extract_command_id(contact_id: str) -> str:
    """The deterministic id of a contact's extraction (also its FIFO deduplication id)."""
    return f"extract:{contact_id}"


def build_command(
    type_: CommandType,
    *,
    agent: str,
    command_id: str,
    issued_at: datetime,
    **fields: Any,
) -> dict[str, Any]:
    """A schema-valid command document (instants may be given as datetimes)."""
    doc: dict[str, Any] = {
        "schema_version": 1,
        "type": str(type_),
        "command_id": command_id,
        "agent": agent,
        "issued_at": format_instant(issued_at),
    }
    for name, value in fields.items():
        if value is None:
            continue
        doc[name] = format_instant(value) if isinstance(value, datetime) else value
    validate(COMMAND_SCHEMA, doc)
    return doc


def build_result(type_: ResultType, *, agent: str, sent_at: datetime, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": 1,
        "type": str(type_),
        "agent": agent,
        "sent_at": format_instant(sent_at),
    }
    for name, value in fields.items():
        if value is None:
            continue
        doc[name] = format_instant(value) if isinstance(value, datetime) else value
    validate(RESULT_SCHEMA, doc)
    return doc
