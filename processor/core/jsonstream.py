"""Split a byte stream into JSON values without loading it whole.

Accepts every layout CTRs arrive in: one object, a JSON array of objects, JSON lines,
and objects concatenated with no delimiter at all (how Kinesis Firehose writes S3).
Input may arrive in chunks of any size; a value may be split anywhere, even inside a
multi-byte UTF-8 character or an escape sequence. Each value comes out with its byte
offset and its 1-based position, so errors and quarantine entries can point at it.

The splitter only finds boundaries (tracking strings, escapes and nesting depth); each
value is parsed by the caller with orjson. It never holds more than the value being
assembled plus one chunk.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_WS = frozenset(b" \t\r\n")
_OPEN = frozenset(b"{[")
_CLOSE = frozenset(b"}]")
_QUOTE = 0x22  # "
_BACKSLASH = 0x5C
_COMMA = 0x2C
_LBRACKET = 0x5B
_RBRACKET = 0x5D
_STRING_STOP = re.compile(rb'["\\]')
_STRUCTURE = re.compile(rb'[{}\[\]"]')


@dataclass(frozen=True)
class RawValue:
    """One top-level value: its bytes, where it starts in the stream, and its position."""

    data: bytes
    offset: int
    position: int  # 1-based


class SplitError(ValueError):
    """The stream is not a sequence of JSON values (e.g. a truncated last value)."""

    def __init__(self, message: str, offset: int, position: int) -> None:
        super().__init__(message)
        self.offset = offset
        self.position = position


class JsonValueSplitter:
    """Incremental splitter: ``feed`` chunks, iterate finished values, then ``close``.

    A top-level ``[`` makes the elements of that array the values (one array per stream,
    or several concatenated arrays). Scalars at top level are returned as values too, so
    the caller can reject them with a clear message.
    """

    def __init__(self, *, max_value_bytes: int | None = None) -> None:
        self._buf = bytearray()
        self._start: int | None = None  # index in _buf where the current value started
        self._depth = 0
        self._in_string = False
        self._escape = False
        self._in_array = False  # inside a top-level array: its elements are the values
        self._scalar = False  # current value is a bare scalar (number, true, ...)
        self._consumed = 0  # stream offset of _buf[0]
        self._pos = 0  # scan position in _buf
        self._count = 0
        self._max = max_value_bytes

    def feed(self, chunk: bytes) -> Iterator[RawValue]:
        self._buf += chunk
        yield from self._scan()
        self._compact()

    def close(self) -> Iterator[RawValue]:
        if self._start is not None:
            if self._scalar:
                yield self._emit(len(self._buf))
            else:
                raise SplitError(
                    "the input ends inside a JSON value (truncated record)",
                    self._consumed + self._start,
                    self._count + 1,
                )
        if self._in_array:
            raise SplitError(
                "the input ends inside a JSON array", self._consumed + self._pos, self._count + 1
            )

    def _emit(self, end: int) -> RawValue:
        assert self._start is not None
        if self._max is not None and end - self._start > self._max:
            raise SplitError(
                f"a value is larger than {self._max} bytes", self._consumed + self._start, self._count + 1
            )
        value = RawValue(bytes(self._buf[self._start : end]), self._consumed + self._start, self._count + 1)
        self._count += 1
        self._start = None
        self._scalar = False
        return value

    def _scan(self) -> Iterator[RawValue]:  # noqa: PLR0912, PLR0915 - one tight state machine
        buf = self._buf
        i = self._pos
        n = len(buf)
        while i < n:
            if self._start is None:
                c = buf[i]
                # Between values.
                if c in _WS or (self._in_array and c == _COMMA):
                    i += 1
                    continue
                if self._in_array and c == _RBRACKET:
                    self._in_array = False
                    i += 1
                    continue
                if not self._in_array and c == _LBRACKET:
                    self._in_array = True
                    i += 1
                    continue
                self._start = i
                if c in _OPEN:
                    self._depth = 1
                elif c == _QUOTE:
                    self._in_string = True
                    self._depth = 0
                else:
                    self._scalar = True
                i += 1
                continue
            if self._scalar:
                c = buf[i]
                if c in _WS or c in _CLOSE or c in _OPEN or c in (_COMMA, _QUOTE):
                    yield self._emit(i)
                    continue  # re-examine this byte between values
                i += 1
                continue
            if self._in_string:
                if self._escape:
                    self._escape = False
                    i += 1
                    continue
                m = _STRING_STOP.search(buf, i)
                if m is None:
                    i = n
                    break
                i = m.start()
                if buf[i] == _BACKSLASH:
                    self._escape = True
                    i += 1
                    continue
                self._in_string = False
                i += 1
                if self._depth == 0:
                    yield self._emit(i)
                continue
            m = _STRUCTURE.search(buf, i)
            if m is None:
                i = n
                break
            i = m.start()
            c = buf[i]
            i += 1
            if c == _QUOTE:
                self._in_string = True
            elif c in _OPEN:
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 0:
                    yield self._emit(i)
        self._pos = i
        if self._max is not None and self._start is not None and n - self._start > self._max:
            raise SplitError(
                f"a value is larger than {self._max} bytes", self._consumed + self._start, self._count + 1
            )

    def _compact(self) -> None:
        drop = self._start if self._start is not None else self._pos
        if drop:
            del self._buf[:drop]
            self._consumed += drop
            self._pos -= drop
            if self._start is not None:
                self._start = 0


def split_values(chunks: Iterable[bytes], *, max_value_bytes: int | None = None) -> Iterator[RawValue]:
    """Every top-level JSON value in ``chunks`` (see :class:`JsonValueSplitter`)."""
    splitter = JsonValueSplitter(max_value_bytes=max_value_bytes)
    for chunk in chunks:
        yield from splitter.feed(chunk)
    yield from splitter.close()
