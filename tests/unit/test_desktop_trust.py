"""The desktop's rules for extraction commands, on the URL shapes S3 pre-signs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from processor.adapters.screen_keys import generate_server_key
from processor.core.desktop_protocol import CommandType, build_command, parse_command
from processor.core.desktop_trust import CommandTrust
from processor.core.envelope import key_fingerprint

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return generate_server_key(Path(tmp_path_factory.mktemp("k")) / "server.pem")


def command(key, url: str | None, bucket: str = "qm-screen", start=NOW - timedelta(minutes=5), end=None):  # type: ignore[no-untyped-def]
    import orjson

    upload = {"bucket": bucket, "key": "screen/c1.qmrec", **({"url": url} if url else {})}
    doc = build_command(
        CommandType.EXTRACT_SCREEN,
        agent="a",
        command_id="extract:c1",
        issued_at=NOW,
        contact_id="c1",
        start=start,
        end=end or NOW - timedelta(minutes=1),
        upload=upload,
        server_key_id=key.key_id,
        server_public_key_pem=key.public_key_pem,
    )
    return parse_command(orjson.dumps(doc))


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        (None, False),
        ("https://qm-screen.s3.amazonaws.com/screen/c1.qmrec?X-Amz-Signature=abc", False),
        ("https://qm-screen.s3.eu-west-1.amazonaws.com/screen/c1.qmrec?X-Amz-Signature=abc", False),
        ("https://s3.eu-west-1.amazonaws.com/qm-screen/screen/c1.qmrec?X-Amz-Signature=abc", False),
        ("http://qm-screen.s3.eu-west-1.amazonaws.com/screen/c1.qmrec", True),
        ("https://qm-screen.s3.eu-west-1.amazonaws.com.evil.example/screen/c1.qmrec", True),
        ("https://qm-screen.s3.eu-west-1.amazonaws.com/screen/other.qmrec", True),
        ("https://s3.eu-west-1.amazonaws.com/other-bucket/screen/c1.qmrec", True),
        ("https://qm-screen.s3.eu-west-1.amazonaws.com:8443/screen/c1.qmrec", True),
        ("http://127.0.0.1:4566/qm-screen/screen/c1.qmrec", True),  # no emulator configured
    ],
)
def test_upload_targets(key, url: str | None, refused: bool) -> None:  # type: ignore[no-untyped-def]
    trust = CommandTrust(key_fingerprint(key.public_key_pem), "qm-screen", "eu-west-1")
    assert (trust.refusal(command(key, url), NOW) is not None) is refused


def test_the_embedded_emulator_is_allowed_explicitly(key) -> None:  # type: ignore[no-untyped-def]
    trust = CommandTrust(
        key_fingerprint(key.public_key_pem), "qm-screen", "us-east-1", "http://127.0.0.1:4566"
    )
    assert trust.refusal(command(key, "http://127.0.0.1:4566/qm-screen/screen/c1.qmrec?sig=1"), NOW) is None
    assert trust.refusal(command(key, "http://127.0.0.1:9999/qm-screen/screen/c1.qmrec"), NOW) is not None
    remote = CommandTrust(
        key_fingerprint(key.public_key_pem), "qm-screen", "us-east-1", "http://10.0.0.5:4566"
    )
    assert remote.refusal(command(key, "http://10.0.0.5:4566/qm-screen/screen/c1.qmrec"), NOW) is not None


def test_intervals_and_keys(key, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    trust = CommandTrust(key_fingerprint(key.public_key_pem), "qm-screen", "us-east-1")
    assert "longer" in (trust.refusal(command(key, None, start=NOW - timedelta(days=2)), NOW) or "")
    assert "future" in (
        trust.refusal(command(key, None, start=NOW + timedelta(hours=1), end=NOW + timedelta(hours=2)), NOW)
        or ""
    )
    other = generate_server_key(tmp_path / "other.pem")
    pinned_elsewhere = CommandTrust(key_fingerprint(other.public_key_pem), "qm-screen", "us-east-1")
    assert "not the pinned one" in (pinned_elsewhere.refusal(command(key, None), NOW) or "")
    assert "bucket" in (trust.refusal(command(key, None, bucket="qm-recordings"), NOW) or "")
