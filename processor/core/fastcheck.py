"""A yes/no JSON Schema check specialised from a schema file, for the hot path.

:func:`processor.core.schemas.validate` (fastjsonschema) names the offending field of an
invalid value, and pays for it on every value: a set of the keys, a call per ``$ref``, an
exception per check. On the CTR stream almost every record is valid, so the CTR path asks
this check first and only runs the reference validator (for its message) when the answer is
no. The check is generated from the same schema file, for the keywords that file uses,
with the reference validator's own semantics:

* ``type``: ``object`` is a dict, ``array`` a list or tuple, ``integer`` an int that is not
  a bool or an integral float, ``number`` an int, float or Decimal that is not a bool;
* ``minLength``/``maxLength`` count code points, ``pattern`` is the reference validator's
  compiled expression (its ``$`` is ``\\Z``: no newline after the end), searched;
* ``minimum``/``maximum``, ``maxItems``, ``required``, ``properties``, ``items`` (one schema),
  ``$ref`` to ``#/definitions/...``; annotations are ignored.

A schema with any other keyword is not specialised (:class:`Unsupported`): the caller then
uses the reference validator alone. ``tests/unit/test_fastcheck.py`` checks that both
answer the same for mutated CTRs, and the mapping equivalence test for every known input.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

Check = Callable[[Any], bool]

_ANNOTATIONS = frozenset({"$schema", "$id", "title", "description", "definitions", "$comment", "examples"})
_KEYWORDS = frozenset(
    {
        "type",
        "required",
        "properties",
        "items",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "$ref",
    }
)
_TYPES = frozenset({"object", "array", "string", "integer", "number", "null", "boolean"})


class Unsupported(ValueError):
    """The schema uses a keyword (or a form of one) that the specialised check does not know."""


class _Compiler:
    def __init__(self, root: dict[str, Any], patterns: dict[str, re.Pattern[str]]) -> None:
        self.root = root
        self.patterns = patterns
        self.lines: list[str] = []
        self.names: dict[str, Any] = {"Decimal": Decimal}
        self.counter = 0

    def var(self, stem: str) -> str:
        self.counter += 1
        return f"{stem}{self.counter}"

    def const(self, value: Any, stem: str) -> str:
        name = self.var(f"_{stem}")
        self.names[name] = value
        return name

    def resolve(self, schema: dict[str, Any], depth: int = 0) -> dict[str, Any]:
        ref = schema.get("$ref")
        if ref is None:
            return schema
        if len(schema) != 1 or not isinstance(ref, str) or not ref.startswith("#/definitions/") or depth > 8:
            raise Unsupported(f"$ref {ref!r} (with siblings or not to #/definitions)")
        target = self.root.get("definitions", {}).get(ref.removeprefix("#/definitions/"))
        if not isinstance(target, dict):
            raise Unsupported(f"$ref {ref!r} not found")
        return self.resolve(target, depth + 1)

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def node(self, schema: Any, value: str, indent: int) -> None:
        """Lines that ``return False`` unless ``value`` matches ``schema``."""
        if not isinstance(schema, dict):
            raise Unsupported(f"schema {schema!r}")
        schema = self.resolve(schema)
        unknown = set(schema) - _KEYWORDS - _ANNOTATIONS
        if unknown:
            raise Unsupported(f"keywords {sorted(unknown)}")
        types = schema.get("type")
        if types is None:
            types = []
        elif isinstance(types, str):
            types = [types]
        if not isinstance(types, list) or not set(types) <= _TYPES or len(set(types)) != len(types):
            raise Unsupported(f"type {types!r}")
        if "boolean" in types and {"integer", "number"} & set(types):
            raise Unsupported(f"type {types!r}: a bool is an int in Python")
        if len([t for t in types if t != "null"]) == 1 and self.single(schema, types, value, indent):
            return
        if types:
            self.emit(indent, f"if not ({' or '.join(_is(t, value) for t in types)}):")
            self.emit(indent + 1, "return False")
        self.strings(schema, value, indent)
        self.numbers(schema, value, indent)
        self.objects(schema, value, indent)
        self.arrays(schema, value, indent)

    def single(self, schema: dict[str, Any], types: list[str], value: str, indent: int) -> bool:
        """One type (or one type and null), string or integer: a single test, null first."""
        (kind,) = (t for t in types if t != "null")
        if kind == "string":
            checks = [f"not {_is(kind, value)}", *self.string_checks(schema, value)]
        elif kind == "integer":
            checks = [f"not ({_is(kind, value)})", *self.number_checks(schema, value)]
        else:
            return False
        if "null" in types:
            self.emit(indent, f"if {value} is not None and ({' or '.join(checks)}):")
        else:
            self.emit(indent, f"if {' or '.join(checks)}:")
        self.emit(indent + 1, "return False")
        return True

    def string_checks(self, schema: dict[str, Any], value: str) -> list[str]:
        checks = []
        if "minLength" in schema:
            checks.append(f"len({value}) < {int(schema['minLength'])}")
        if "maxLength" in schema:
            checks.append(f"len({value}) > {int(schema['maxLength'])}")
        if "pattern" in schema:
            compiled = self.patterns.get(schema["pattern"])
            if compiled is None:
                raise Unsupported(f"pattern {schema['pattern']!r} unknown to the reference validator")
            checks.append(f"{self.const(compiled.search, 'search')}({value}) is None")
        return checks

    def number_checks(self, schema: dict[str, Any], value: str) -> list[str]:
        checks = []
        if "minimum" in schema:
            checks.append(f"{value} < {self.const(schema['minimum'], 'minimum')}")
        if "maximum" in schema:
            checks.append(f"{value} > {self.const(schema['maximum'], 'maximum')}")
        return checks

    def strings(self, schema: dict[str, Any], value: str, indent: int) -> None:
        checks = self.string_checks(schema, value)
        if checks:
            self.emit(indent, f"if isinstance({value}, str) and ({' or '.join(checks)}):")
            self.emit(indent + 1, "return False")

    def numbers(self, schema: dict[str, Any], value: str, indent: int) -> None:
        checks = self.number_checks(schema, value)
        if checks:
            self.emit(indent, f"if isinstance({value}, (int, float, Decimal)) and ({' or '.join(checks)}):")
            self.emit(indent + 1, "return False")

    def objects(self, schema: dict[str, Any], value: str, indent: int) -> None:
        required = schema.get("required", [])
        properties = schema.get("properties", {})
        if not isinstance(required, list) or not isinstance(properties, dict):
            raise Unsupported("required/properties")
        if not required and not properties:
            return
        self.emit(indent, f"if isinstance({value}, dict):")
        for name in required:
            self.emit(indent + 1, f"if {name!r} not in {value}:")
            self.emit(indent + 2, "return False")
        for name, sub in properties.items():
            child = self.var("v")
            if isinstance(sub, dict) and _takes_null(self.resolve(sub)):
                # Absent or null: both match, and .get() answers None for both.
                self.emit(indent + 1, f"{child} = {value}.get({name!r})")
                self.node(sub, child, indent + 1)
                continue
            self.emit(indent + 1, f"{child} = {value}.get({name!r}, _MISSING)")
            self.emit(indent + 1, f"if {child} is not _MISSING:")
            before = len(self.lines)
            self.node(sub, child, indent + 2)
            if len(self.lines) == before:
                self.emit(indent + 2, "pass")

    def arrays(self, schema: dict[str, Any], value: str, indent: int) -> None:
        items = schema.get("items")
        high = schema.get("maxItems")
        if items is None and high is None:
            return
        self.emit(indent, f"if isinstance({value}, (list, tuple)):")
        if high is not None:
            self.emit(indent + 1, f"if len({value}) > {int(high)}:")
            self.emit(indent + 2, "return False")
        if items is not None:
            item = self.var("item")
            self.emit(indent + 1, f"for {item} in {value}:")
            before = len(self.lines)
            self.node(items, item, indent + 2)
            if len(self.lines) == before:
                self.emit(indent + 2, "pass")


def _takes_null(schema: dict[str, Any]) -> bool:
    """Whether null matches ``schema`` (a type list with null; no other keyword tests null)."""
    types = schema.get("type")
    return isinstance(types, list) and "null" in types


def _is(kind: str, value: str) -> str:
    # "x.__class__ is str or isinstance(x, str)": the same answer, without a call for the
    # exact types JSON decodes to.
    return {
        "object": f"({value}.__class__ is dict or isinstance({value}, dict))",
        "array": f"({value}.__class__ is list or isinstance({value}, (list, tuple)))",
        "string": f"({value}.__class__ is str or isinstance({value}, str))",
        "null": f"{value} is None",
        "boolean": f"isinstance({value}, bool)",
        "integer": (
            f"{value}.__class__ is int or (isinstance({value}, int) and not isinstance({value}, bool))"
            f" or (isinstance({value}, float) and {value}.is_integer())"
        ),
        "number": f"(isinstance({value}, (int, float, Decimal)) and not isinstance({value}, bool))",
    }[kind]


def specialise(schema: dict[str, Any], patterns: dict[str, re.Pattern[str]]) -> tuple[Check, str]:
    """The check of ``schema`` and its source; ``patterns`` maps each ``pattern`` to the
    reference validator's compiled expression. Raises :class:`Unsupported`."""
    compiler = _Compiler(schema, patterns)
    # The builtins as defaults: locals are read faster than globals.
    builtins = ", ".join(f"{name}={name}" for name in ("isinstance", "len", "str", "dict", "list", "int"))
    compiler.emit(0, f"def check(data, {builtins}):")
    compiler.node(schema, "data", 1)
    compiler.emit(1, "return True")
    source = "\n".join(compiler.lines) + "\n"
    namespace: dict[str, Any] = {**compiler.names, "_MISSING": object()}
    # The source is generated above from the schema's keywords; no text of the schema is code.
    exec(compile(source, "<fastcheck>", "exec"), namespace)  # noqa: S102
    check: Check = namespace["check"]
    return check, source
