"""Quick builders for the frozen, slotted dataclasses made once per record on the hot path.

A frozen dataclass's ``__init__`` sets every field through ``object.__setattr__`` (its own
``__setattr__`` refuses): a slow call per field, a third of the time of building a QM
contact on the CTR path. :func:`builder` returns a function of all the fields, in order,
that sets them on an instance of an unfrozen twin class with the very same slots and then
makes the instance the frozen class's own (``__class__`` assignment, which Python allows
between classes of identical layout). The result is the instance the class's constructor
makes: same type, same field values, still frozen. Only for frozen dataclasses with
``slots=True``, no base class, no ``__post_init__`` and only ``init`` fields.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def builder(cls: type[T]) -> Callable[..., T]:
    params = getattr(cls, "__dataclass_params__", None)
    names = tuple(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    if (
        params is None
        or not params.frozen
        or cls.__bases__ != (object,)
        or cls.__dict__.get("__slots__") != names
        or hasattr(cls, "__post_init__")
        or not all(f.init for f in dataclasses.fields(cls))  # type: ignore[arg-type]
    ):
        raise TypeError(f"{cls.__name__}: not a frozen, slotted dataclass of plain fields")
    twin = type(f"_{cls.__name__}Builder", (object,), {"__slots__": names})
    if (twin.__basicsize__, twin.__weakrefoffset__) != (cls.__basicsize__, cls.__weakrefoffset__):
        raise TypeError(f"{cls.__name__}: the layout of its unfrozen twin differs")
    args = ", ".join(f"{name}_" for name in names)
    body = "".join(f"    self.{name} = {name}_\n" for name in names)
    source = f"def build({args}):\n    self = _new(_twin)\n{body}    self.__class__ = _cls\n    return self\n"
    namespace: dict[str, Any] = {"_new": object.__new__, "_twin": twin, "_cls": cls}
    # Generated from the class's own field names: no outside text becomes code.
    exec(compile(source, f"<builder {cls.__name__}>", "exec"), namespace)  # noqa: S102
    build: Callable[..., T] = namespace["build"]
    build.__qualname__ = build.__name__ = f"build_{cls.__name__}"
    return build
