"""HTTP ``Range`` requests (RFC 9110 §14) for media streamed by the console.

Browsers seek in audio and video by asking for byte ranges; a single range is answered
with 206 and ``Content-Range``. Several ranges at once are answered with the whole body
(200), which the RFC allows and players never need. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Longest range served in one response; players ask again from where they stopped.
MAX_RANGE_BYTES = 8 * 1024 * 1024


class RangeNotSatisfiable(ValueError):
    """The range lies outside the representation: answer 416 with ``bytes */size``."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int, max_bytes: int = MAX_RANGE_BYTES) -> ByteRange | None:
    """The range to serve, or None for the whole body. Raises :class:`RangeNotSatisfiable`."""
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # unknown unit or several ranges: the whole body is a valid answer
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        suffix = int(last) if first == "" else None  # "-N": the last N bytes
        start = max(size - suffix, 0) if suffix is not None else int(first)
        end = size - 1 if suffix is not None or not last.strip() else int(last)
    except ValueError:
        return None  # a malformed Range header is ignored (RFC 9110 §14.2)
    if suffix is not None and suffix <= 0:
        raise RangeNotSatisfiable(header)
    if start >= size:
        raise RangeNotSatisfiable(header)
    if start < 0 or end < start:
        return None
    end = min(end, size - 1, start + max_bytes - 1)
    return ByteRange(start, end)
