from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from processor.core.s3_events import parse_notification
from processor.platform.exceptions import InvalidInput

CONNECT_KEY = "connect/demo/CallRecordings/2026/01/02/abc_20260102T10:05_UTC.wav"


def s3_body(key: str, event: str = "ObjectCreated:Put", size: int = 1000) -> dict:
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "eventTime": "2026-01-02T10:06:00.123Z",
                "eventName": event,
                "s3": {"bucket": {"name": "recs"}, "object": {"key": key, "size": size, "eTag": "e1"}},
            }
        ]
    }


def test_real_samples(samples_dir: Path) -> None:
    folder = samples_dir / "s3-events"
    body = (folder / "powertools-s3SqsEvent-body-decoded.json").read_bytes()
    parsed = parse_notification(body)
    assert not parsed.test_event and parsed.objects == () and parsed.ignored == 1  # test.pdf: not a recording
    test_event = parse_notification((folder / "sqs-trigger-lambda-node-s3-test-event.json").read_bytes())
    assert test_event.test_event


def test_connect_key_url_decoded_put_and_multipart() -> None:
    encoded = CONNECT_KEY.replace(":", "%3A")
    for event in ("ObjectCreated:Put", "ObjectCreated:CompleteMultipartUpload"):
        [obj] = parse_notification(orjson.dumps(s3_body(encoded, event))).objects
        assert obj.key == CONNECT_KEY and obj.location == f"recs/{CONNECT_KEY}"
        assert obj.event_name == event and obj.size == 1000


def test_spaces_arrive_as_plus() -> None:
    [obj] = parse_notification(orjson.dumps(s3_body("connect/a+b/CallRecordings/x+y.wav"))).objects
    assert obj.key == "connect/a b/CallRecordings/x y.wav"


def test_sns_wrapped() -> None:
    wrapped = {
        "Type": "Notification",
        "MessageId": "m",
        "Message": orjson.dumps(s3_body(CONNECT_KEY)).decode(),
    }
    [obj] = parse_notification(orjson.dumps(wrapped)).objects
    assert obj.key == CONNECT_KEY


def test_removed_events_and_other_keys_are_ignored() -> None:
    body = s3_body(CONNECT_KEY, "ObjectRemoved:Delete")
    body["Records"].append(s3_body("reports/x.csv")["Records"][0])
    parsed = parse_notification(orjson.dumps(body))
    assert parsed.objects == () and parsed.ignored == 2


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "bad_json"),
        (b"[]", "schema"),
        (b'{"Records": []}', "schema"),
        (
            b'{"Records": [{"eventName": "ObjectCreated:Put", '
            b'"s3": {"bucket": {}, "object": {"key": "a.wav"}}}]}',
            "schema",
        ),
        (b'{"Type": "Notification", "Message": "{nope"}', "bad_json"),
    ],
)
def test_unusable_messages(payload: bytes, reason: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_notification(payload)
    assert err.value.reason == reason and err.value.payload == payload
