"""A quicker ``__init__`` for the frozen dataclasses built once per record on the hot path.

A frozen dataclass's generated ``__init__`` sets each field through
``object.__setattr__`` looked up anew for every field; on the CTR path that was a third of
the time spent building a QM contact. :func:`quick_init` gives the class an ``__init__``
with the same signature (names, order, defaults) that sets the same fields with one
pre-bound ``object.__setattr__``. Only for frozen dataclasses without ``__post_init__``,
default factories or init-only fields (it refuses others).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def quick_init(cls: type[T]) -> type[T]:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__}: not a frozen dataclass without __post_init__")
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"_set": object.__setattr__}
    params_src = []
    for f in fields:
        if not f.init or f.kw_only or f.default_factory is not dataclasses.MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: not a plain field")
        if f.default is dataclasses.MISSING:
            params_src.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params_src.append(f"{f.name}=_default_{f.name}")
    body = "".join(f"    _set(self, {f.name!r}, {f.name})\n" for f in fields) or "    pass\n"
    source = f"def __init__(self, {', '.join(params_src)}):\n{body}"
    # Generated from the class's own field names: no outside text becomes code.
    exec(compile(source, f"<quick_init {cls.__name__}>", "exec"), namespace)  # noqa: S102
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]
    return cls
