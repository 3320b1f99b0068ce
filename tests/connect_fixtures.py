"""Amazon Connect ListUsers/DescribeUser responses (tests/unit/data/connect), as boto3 returns them."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

DATA = Path(__file__).resolve().parent / "unit" / "data" / "connect"


def _parsed(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: datetime.fromisoformat(v.replace("Z", "+00:00")) if k == "LastModifiedTime" else _parsed(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_parsed(v) for v in value]
    return value


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = _parsed(orjson.loads((DATA / f"{name}.json").read_bytes()))
    return loaded
