"""CTRs from files: every layout users hand us, each CTR with a position to name in errors.

Layouts: one CTR object; a JSON array of CTRs; JSON lines; CTRs concatenated with no
delimiter (Firehose); and Lambda-style Kinesis events (``{"Records": [{"kinesis":
{"data": ...}}]}``) whose ``data`` is base64 (as AWS sends it) or an inline object (as
some test fixtures have it).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

from processor.core.jsonstream import SplitError, split_values
from processor.platform.exceptions import InvalidInput


@dataclass(frozen=True)
class CtrInput:
    """One CTR candidate: its decoded JSON (or the error), its raw bytes and position."""

    position: int  # 1-based, in file order (a wrapper's records count one by one)
    offset: int  # byte offset of the enclosing top-level value
    label: str  # "record 3 (byte 120)" / "record 4 (byte 900, Records[1])"
    value: Any
    raw: bytes
    error: InvalidInput | None = None


def _is_kinesis_event(obj: Any) -> bool:
    return (
        isinstance(obj, dict)
        and isinstance(obj.get("Records"), list)
        and bool(obj["Records"])
        and all(isinstance(r, dict) and isinstance(r.get("kinesis"), dict) for r in obj["Records"])
    )


def _unwrap(record: dict[str, Any]) -> tuple[Any, bytes]:
    data = record["kinesis"].get("data")
    if isinstance(data, dict):
        return data, orjson.dumps(data)
    if not isinstance(data, str):
        raise InvalidInput("schema", "Records[].kinesis.data is neither base64 nor an object")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("bad_json", "Records[].kinesis.data is not valid base64") from None
    try:
        return orjson.loads(raw), raw
    except orjson.JSONDecodeError as exc:
        raise InvalidInput("bad_json", f"Records[].kinesis.data is not JSON ({exc})", payload=raw) from None


def iter_ctr_inputs(chunks: Iterable[bytes], *, max_value_bytes: int | None = None) -> Iterator[CtrInput]:
    position = 0
    try:
        for value in split_values(chunks, max_value_bytes=max_value_bytes):
            label = f"byte {value.offset}"
            try:
                obj = orjson.loads(value.data)
            except orjson.JSONDecodeError as exc:
                position += 1
                yield CtrInput(
                    position,
                    value.offset,
                    f"record {position} ({label})",
                    None,
                    value.data,
                    InvalidInput("bad_json", f"not valid JSON ({exc})", payload=value.data),
                )
                continue
            if _is_kinesis_event(obj):
                for i, record in enumerate(obj["Records"]):
                    position += 1
                    where = f"record {position} ({label}, Records[{i}])"
                    try:
                        inner, raw = _unwrap(record)
                    except InvalidInput as exc:
                        yield CtrInput(position, value.offset, where, None, value.data, exc)
                        continue
                    yield CtrInput(position, value.offset, where, inner, raw)
                continue
            position += 1
            yield CtrInput(position, value.offset, f"record {position} ({label})", obj, value.data)
    except SplitError as exc:
        yield CtrInput(
            exc.position,
            exc.offset,
            f"record {exc.position} (byte {exc.offset})",
            None,
            b"",
            InvalidInput("bad_json", str(exc)),
        )
