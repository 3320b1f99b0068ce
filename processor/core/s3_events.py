"""S3 event notifications (SQS message bodies) -> recording objects. Pure.

Accepts the body S3 sends to SQS directly, and the same wrapped by SNS
(``{"Type": "Notification", "Message": "<S3 JSON>"}``). Keys arrive URL-encoded
(``:`` -> ``%3A``, space -> ``+``) and are decoded with ``unquote_plus``. ``s3:TestEvent``
(sent when a notification is configured) is recognised and skipped. Only
``ObjectCreated:*`` events of WAV keys are call recordings; others are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

import orjson

from processor.core.ctr import parse_instant
from processor.core.schemas import SchemaViolation, validate
from processor.platform.exceptions import InvalidInput

RECORDING_SUFFIXES = (".wav",)


@dataclass(frozen=True, slots=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int | None
    etag: str | None
    event_name: str  # e.g. ObjectCreated:Put, ObjectCreated:CompleteMultipartUpload
    event_time: datetime | None
    sequencer: str | None

    @property
    def location(self) -> str:
        return f"{self.bucket}/{self.key}"


@dataclass(frozen=True, slots=True)
class S3Notification:
    test_event: bool
    objects: tuple[ObjectCreated, ...]  # ObjectCreated:* of accepted keys (recordings by default)
    ignored: int  # records that were not recordings or not ObjectCreated


def is_recording_key(key: str) -> bool:
    return key.lower().endswith(RECORDING_SUFFIXES)


def _unwrap(body: Any) -> Any:
    if isinstance(body, dict) and body.get("Type") == "Notification" and isinstance(body.get("Message"), str):
        try:
            return orjson.loads(body["Message"])
        except orjson.JSONDecodeError:
            raise InvalidInput("bad_json", "SNS Message is not JSON") from None
    return body


def parse_notification(
    payload: bytes | str, *, accept: Callable[[str], bool] = is_recording_key
) -> S3Notification:
    """Parse one SQS message body. Raises :class:`InvalidInput` if it cannot be used.

    ``accept`` picks the keys of interest (call recordings by default); the others are
    counted as ignored."""
    raw = payload.encode() if isinstance(payload, str) else payload
    try:
        body = _unwrap(orjson.loads(raw))
    except orjson.JSONDecodeError:
        raise InvalidInput("bad_json", "message body is not JSON", payload=raw) from None
    except InvalidInput as exc:
        raise InvalidInput(exc.reason, exc.detail, payload=raw) from None
    try:
        validate("s3-notification", body)
    except SchemaViolation as exc:
        raise InvalidInput("schema", f"not an S3 notification: {exc}", payload=raw) from None
    if "Event" in body:
        return S3Notification(test_event=True, objects=(), ignored=0)
    objects = []
    ignored = 0
    for record in body["Records"]:
        name = record["eventName"]
        obj = record["s3"]["object"]
        key = unquote_plus(obj["key"])
        if not name.startswith(("ObjectCreated:", "s3:ObjectCreated:")) or not accept(key):
            ignored += 1
            continue
        try:
            event_time = (
                parse_instant(record.get("eventTime"), "eventTime") if record.get("eventTime") else None
            )
        except InvalidInput:
            event_time = None  # the time is informative only; the object still counts
        objects.append(
            ObjectCreated(
                bucket=record["s3"]["bucket"]["name"],
                key=key,
                size=obj.get("size"),
                etag=obj.get("eTag"),
                event_name=name.removeprefix("s3:"),
                event_time=event_time,
                sequencer=obj.get("sequencer"),
            )
        )
    return S3Notification(test_event=False, objects=tuple(objects), ignored=ignored)


def epoch(value: datetime) -> int:
    return int(value.astimezone(UTC).timestamp())
