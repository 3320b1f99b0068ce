"""The JSON Schemas in ``schemas/``, compiled once for validation at runtime.

The files in ``schemas/`` are the single contract of every message in and out; the code
validates against them (fastjsonschema compiles each one to Python, ~50x faster than
interpreting it), and the tests validate samples and outputs against the same files.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson

from processor.core.fastcheck import Check, Unsupported, specialise

Validator = Callable[[Any], Any]


def schema_dir() -> Path:
    packaged = Path(str(resources.files("processor") / "schemas"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "schemas"


@cache
def load_schema(name: str) -> dict[str, Any]:
    path = schema_dir() / f"{name}.schema.json"
    loaded: dict[str, Any] = orjson.loads(path.read_bytes())
    return loaded


@cache
def validator(name: str) -> Validator:
    compiled: Validator = fastjsonschema.compile(load_schema(name))
    return compiled


@cache
def fast_check(name: str) -> Check | None:
    """The yes/no check specialised from the schema (:mod:`processor.core.fastcheck`), with the
    reference validator's own compiled patterns; ``None`` if the schema uses a keyword it
    does not know (then :func:`validate` alone decides)."""
    patterns = getattr(validator(name), "__globals__", {}).get("REGEX_PATTERNS", {})
    # A fresh copy: compiling the reference validator rewrites the $refs of load_schema's.
    schema = orjson.loads((schema_dir() / f"{name}.schema.json").read_bytes())
    try:
        check, _ = specialise(schema, patterns)
    except Unsupported:
        return None
    return check


class SchemaViolation(ValueError):
    """A value does not match its schema; ``path`` points at the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path


def validate(name: str, value: Any) -> None:
    """Raise :class:`SchemaViolation` naming the first offending field."""
    try:
        validator(name)(value)
    except fastjsonschema.JsonSchemaValueException as exc:
        path = ".".join(str(p) for p in (exc.path or [])[1:])  # drop the leading "data"
        message = exc.message.replace("data.", "").replace("data ", "")
        raise SchemaViolation(path, message) from None
