"""Sample QM contacts and call recordings for the console's tests, benchmark and screenshots.

``contact_item`` lays a QM contact out exactly as the contacts table holds it (see
``processor/adapters/dynamodb/contacts.py``), including the join and screen fields that later
pipeline stages add, so the console can be exercised on any number of contacts without
running the whole pipeline. Recordings are Connect-shaped: stereo 8 kHz 16-bit PCM,
customer on the left channel, agent on the right.
"""

from __future__ import annotations

import math
import sys
from array import array
from datetime import datetime, timedelta
from typing import Any

import orjson

from processor.core.ctr import format_instant
from processor.core.schemas import validate
from processor.core.wav import wav_header

INSTANCE_ARN = "arn:aws:connect:us-east-1:123456789012:instance/8f3c1d2e-5b6a-4c7d-9e8f-0a1b2c3d4e5f"


def stereo_wav(seconds: float, *, customer: bool, agent: bool, rate: int = 8000) -> bytes:
    """A recording whose left (customer) and right (agent) channels carry a tone or silence."""
    frames = int(seconds * rate)
    samples = array("h", bytes(4 * frames))
    for i in range(frames):
        t = i / rate
        if customer:
            samples[2 * i] = int(9000 * math.sin(2 * math.pi * 440 * t))
        if agent:
            samples[2 * i + 1] = int(9000 * math.sin(2 * math.pi * 660 * t))
    if sys.byteorder == "big":
        samples.byteswap()
    data = samples.tobytes()
    return wav_header(channels=2, sample_rate=rate, bits=16, data_bytes=len(data)) + data


def contact_doc(
    contact_id: str,
    *,
    agent: str | None,
    first_name: str | None,
    last_name: str | None,
    connected_at: datetime,
    duration_seconds: float,
    direction: str = "inbound",
    called: str = "+18005550100",
    calling: str = "+14255550123",
    recording_location: str | None = None,
    flags: list[str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A schema-valid QM contact (``schemas/qm-contact.schema.json``)."""
    connected = format_instant(connected_at)
    disconnect = format_instant(connected_at + timedelta(seconds=duration_seconds))
    doc: dict[str, Any] = {
        "schema_version": 1,
        "contact_id": contact_id,
        "acd_id": agent,
        "called_number": called,
        "calling_number": calling,
        "direction": direction,
        "first_name": first_name,
        "last_name": last_name,
        "call_duration_seconds": duration_seconds if recording_location else None,
        "date": connected[:10],
        "time": connected[11:19],
        "connected_at": connected,
        "recording_type": "Amazon Connect",
        "instance_arn": INSTANCE_ARN,
        "last_update": disconnect,
        "initiation_method": "INBOUND" if direction == "inbound" else "OUTBOUND",
        "channel": "VOICE",
        "queue": "BasicQueue",
        "initiation_at": format_instant(connected_at - timedelta(seconds=20)),
        "disconnect_at": disconnect,
        "acw_end_at": None,
        "recording_location": recording_location,
        "recordings": [recording_location] if recording_location else [],
        "system_endpoint_raw": {"address": called, "type": "TELEPHONE_NUMBER"},
        "customer_endpoint_raw": {"address": calling, "type": "TELEPHONE_NUMBER"},
        "flags": flags or [],
        "join_state": "joined" if recording_location else "no_recording_expected",
        "imported_at": disconnect,
        "revision": 0,
        "version": f"{disconnect}#000000",
    }
    if recording_location:
        doc["recording_durations"] = {recording_location: duration_seconds}
    doc.update(extra)
    validate("qm-contact", doc)
    return doc


def contact_item(doc: dict[str, Any]) -> dict[str, Any]:
    """The contacts-table item of ``doc`` (attribute layout of ``DynamoContactStore``)."""
    item: dict[str, Any] = {
        "contact_id": {"S": doc["contact_id"]},
        "last_update": {"S": doc["last_update"]},
        "revision": {"N": str(doc.get("revision") or 0)},
        "version": {"S": doc.get("version") or f"{doc['last_update']}#000000"},
        "doc": {"S": orjson.dumps(doc).decode()},
        "direction": {"S": doc["direction"]},
    }
    if doc.get("join_state"):
        item["state"] = {"S": doc["join_state"]}
    if doc.get("imported_at"):
        item["imported_at"] = {"S": doc["imported_at"]}
    if doc.get("acd_id"):
        item["acd_id"] = {"S": doc["acd_id"]}
    if doc.get("date") and doc.get("connected_at"):
        item["contact_date"] = {"S": doc["date"]}
        item["connected_at"] = {"S": doc["connected_at"]}
    return item


def put_contacts(ddb: Any, table: str, docs: list[dict[str, Any]]) -> None:
    """Write ``docs`` with BatchWriteItem (25 per call, unprocessed items retried)."""
    for start in range(0, len(docs), 25):
        requests: list[dict[str, Any]] = [
            {"PutRequest": {"Item": contact_item(d)}} for d in docs[start : start + 25]
        ]
        pending: dict[str, Any] = {table: requests}
        while pending:
            response = ddb.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
