"""Commands and results between the server and qm-desktop follow the schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from processor.core.desktop_protocol import (
    CommandType,
    ResultType,
    build_command,
    build_result,
    extract_command_id,
    format_instant,
    parse_command,
    parse_instant,
)
from processor.core.schemas import SchemaViolation
from processor.platform.exceptions import InvalidInput

NOW = datetime(2026, 3, 2, 9, 30, 15, 123456, tzinfo=UTC)


def extract_doc(**overrides):  # type: ignore[no-untyped-def]
    fields = {
        "contact_id": "b1d3c6a2-1111-2222-3333-444455556666",
        "start": NOW,
        "end": NOW + timedelta(minutes=4),
        "upload": {"bucket": "qm-screen", "key": "screen/x.qmrec"},
        "server_key_id": "rsa-0123456789abcdef",
        "server_public_key_pem": "-----BEGIN PUBLIC KEY-----\n...",
        **overrides,
    }
    return build_command(
        CommandType.EXTRACT_SCREEN,
        agent="jane",
        command_id=extract_command_id("b1d3c6a2-1111-2222-3333-444455556666"),
        issued_at=NOW,
        **fields,
    )


def test_instants_are_utc_milliseconds() -> None:
    assert format_instant(NOW) == "2026-03-02T09:30:15.123Z"
    assert parse_instant("2026-03-02T09:30:15.123Z") == NOW.replace(microsecond=123000)


def test_extract_command_round_trip() -> None:
    command = parse_command(orjson.dumps(extract_doc()))
    assert command.type is CommandType.EXTRACT_SCREEN
    assert command.upload is not None and command.upload.location == "qm-screen/screen/x.qmrec"
    assert command.end - command.start == timedelta(minutes=4)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"not json", "bad_json"),
        (b"[]", "schema"),
        (b"x" * 70_000, "oversized"),
    ],
)
def test_bad_commands_are_invalid_input(body: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_command(body)
    assert caught.value.reason == reason


def test_extract_without_key_or_ending_before_it_starts_is_refused() -> None:
    doc = extract_doc()
    del doc["server_public_key_pem"]
    with pytest.raises(InvalidInput, match="server_public_key_pem"):
        parse_command(orjson.dumps(doc))
    doc = extract_doc(end=NOW - timedelta(seconds=1))
    with pytest.raises(InvalidInput, match="ends before"):
        parse_command(orjson.dumps(doc))


def test_results_are_validated_when_built() -> None:
    doc = build_result(
        ResultType.SCREEN_UPLOADED,
        agent="jane",
        sent_at=NOW,
        command_id="extract:x",
        contact_id="x",
        location={"bucket": "b", "key": "k"},
        duration_seconds=240.0,
        coverage=1.0,
        gaps=[],
        server_key_id="k1",
    )
    assert doc["type"] == "screen_uploaded"
    with pytest.raises(SchemaViolation):
        build_result(ResultType.SCREEN_UPLOADED, agent="jane", sent_at=NOW, command_id="x")
