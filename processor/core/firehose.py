"""Kinesis Firehose objects, chunk by chunk: CTRs out, corrupt bytes located. Pure.

Firehose writes the records of one delivery batch into one S3 object: concatenated with
no delimiter (the default for JSON), or one per line when a delimiter is configured,
optionally gzip-compressed (possibly several gzip members, one per batch appended). The
object arrives as an S3 streaming body in chunks of any size, so a record (or a gzip
header) may be split anywhere.

Two layers:

* :class:`ObjectDecoder` turns the stored bytes into content: plain bytes pass through,
  gzip (recognised by its magic bytes, not the key's suffix) is inflated incrementally
  with ``zlib.decompressobj(wbits=31)``, each call's output bounded (no gzip bomb).
* :class:`RecordReader` splits the content into records with
  :class:`~processor.core.jsonstream.JsonValueSplitter` and *resynchronises* after a
  corrupt record: the bad bytes come out as one :class:`ArchiveItem` with a ``problem``
  (to quarantine with the object key and byte offset), and reading goes on at the next
  record start, so one bad record never costs the records after it.

Resynchronisation. Every record of a CTR archive is a JSON object; a value that is not
one, or does not parse, is corrupt. A truncated or garbled record leaves the splitter's
count of braces and quotes wrong, so it may swallow the records after it until a value
fails, grows past the size limit, or the object ends. From the start of the bad value, the next
record start is the first ``{"`` (or ``{}``) that (a) cannot be inside a valid JSON
document, because the byte before it (whitespace skipped) is not ``:``, ``,`` or ``[`` (a
nested object always follows one of those), and (b) begins a value that parses. A record
cut right after ``:``, ``,`` or ``[`` makes the next record look nested: with a
``looks_like_record`` test (a CTR has a ``ContactId``), such a start is accepted too when
its value is a record, within the size limit of the cut record's start. A string holding
``{}`` or a whole JSON object where a record was cut may be taken for a record (the CTR
path then rejects it): the cost is extra quarantine entries, never a good record. Offsets
are in the object's content (after decompression).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from typing import Any

import orjson

from processor.core.jsonstream import JsonValueSplitter, RawValue, SplitError

GZIP_MAGIC = b"\x1f\x8b"
_WS = frozenset(b" \t\r\n")
_NESTED_BEFORE = frozenset(b":,[")
_KEY_OR_CLOSE = frozenset(b'"}')
_OPEN_BRACE = 0x7B
#: Output of one inflate call: bounds memory whatever the compression ratio.
MAX_INFLATE_STEP = 1 << 20

#: Bytes looked at to judge a resynchronisation point before the object's end (a CTR is a
#: few kB; a longer record is judged when the splitter reaches its end).
PROBE_WINDOW = 64 * 1024
#: Nested-looking record starts tried per corrupt stretch.
NESTED_PROBES = 64

PROBLEM_RECORD = "corrupt_record"
PROBLEM_OBJECT = "corrupt_object"


@dataclass(frozen=True, slots=True)
class ArchiveItem:
    """A record candidate (``problem`` is None) or a corrupt stretch of the content.

    ``data`` is the record's bytes; for a corrupt stretch, its first bytes (at most the
    record size limit, enough to look at), while ``length`` is its whole length.
    """

    offset: int
    data: bytes
    length: int
    problem: str | None = None
    detail: str = ""


class ObjectCorrupt(ValueError):
    """The stored object cannot be decoded further (broken or truncated gzip)."""

    def __init__(self, message: str, compressed_offset: int) -> None:
        super().__init__(message)
        self.compressed_offset = compressed_offset


class ObjectDecoder:
    """Stored bytes -> content; gzip when the object starts with the gzip magic."""

    def __init__(self, *, step: int = MAX_INFLATE_STEP) -> None:
        self._step = step
        self._pending = b""  # bytes held back until a (member) header can be recognised
        self._gzip: bool | None = None
        self._inflater: Any = None  # zlib decompress object of the current gzip member
        self._consumed = 0  # stored bytes decoded so far

    @property
    def compressed(self) -> bool:
        return bool(self._gzip)

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        data = self._pending + chunk if self._pending else chunk
        self._pending = b""
        if self._gzip is None:
            if len(data) < len(GZIP_MAGIC):
                self._pending = data
                return
            self._gzip = data.startswith(GZIP_MAGIC)
        if not self._gzip:
            self._consumed += len(data)
            if data:
                yield data
            return
        yield from self._inflate(data)

    def close(self) -> Iterator[bytes]:
        if not self._gzip:
            # Plain content (or fewer than two bytes in the whole object).
            if self._pending:
                yield self._pending
                self._pending = b""
            return
        if self._inflater is not None:
            try:
                tail = self._inflater.flush()
            except zlib.error as exc:
                raise ObjectCorrupt(f"gzip: {exc}", self._consumed) from None
            if tail:
                yield tail
            if not self._inflater.eof:
                raise ObjectCorrupt("the gzip stream is truncated (its member does not end)", self._consumed)
        if self._pending:
            raise ObjectCorrupt("bytes after the end of the gzip stream", self._consumed)

    def _inflate(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._inflater is None:
                # Between members: another member may follow (gzip allows concatenation).
                if len(data) < len(GZIP_MAGIC):
                    self._pending = data
                    return
                if not data.startswith(GZIP_MAGIC):
                    raise ObjectCorrupt("bytes after the end of the gzip stream", self._consumed)
                self._inflater = zlib.decompressobj(wbits=31)
            inflater = self._inflater
            try:
                out = inflater.decompress(data, self._step)
                while True:
                    if out:
                        yield out
                    if inflater.eof or not inflater.unconsumed_tail:
                        break
                    out = inflater.decompress(inflater.unconsumed_tail, self._step)
            except zlib.error as exc:
                raise ObjectCorrupt(f"gzip: {exc}", self._consumed) from None
            if inflater.eof:
                rest = inflater.unused_data
                self._consumed += len(data) - len(rest)
                self._inflater = None
                data = rest
            else:
                self._consumed += len(data)
                data = b""


def _parses(data: bytes) -> bool:
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError:
        return False
    return True


def _opens_object(buf: bytes | bytearray, index: int) -> bool:
    """``buf[index]`` is ``{`` followed (whitespace allowed) by ``"`` or ``}``, or by the
    end of ``buf`` (the next byte is unknown)."""
    if buf[index] != _OPEN_BRACE:
        return False
    k = index + 1
    while k < len(buf) and buf[k] in _WS:
        k += 1
    return k >= len(buf) or buf[k] in _KEY_OR_CLOSE


def _is_top_level_start(buf: bytes | bytearray, index: int, before: int | None) -> bool:
    """The ``{`` at ``index`` is not preceded (whitespace skipped) by ``:``, ``,`` or ``[``,
    so it cannot be nested in a valid document. ``before`` is the last non-whitespace
    byte before ``buf`` (None: none known)."""
    j = index - 1
    while j >= 0 and buf[j] in _WS:
        j -= 1
    previous = buf[j] if j >= 0 else before
    return previous not in _NESTED_BEFORE


@dataclass(frozen=True, slots=True)
class _Probe:
    """What a fresh split from a candidate start shows: a value that parses (and what it
    is), one that does not, or not enough bytes to tell (``complete`` False)."""

    ok: bool
    complete: bool
    value: Any = None


def _probe(data: bytes, window: int, max_bytes: int) -> _Probe:
    """Split the first value of ``data`` (at most ``window`` + 1 bytes)."""
    splitter = JsonValueSplitter(max_value_bytes=window)
    try:
        for value in splitter.feed(data):
            try:
                return _Probe(True, True, orjson.loads(value.data))
            except orjson.JSONDecodeError:
                return _Probe(False, True)
    except SplitError:
        # Longer than the window: too long for a record only if the window is the limit.
        return _Probe(False, window >= max_bytes)
    return _Probe(True, False)


class RecordReader:
    """Content chunks -> :class:`ArchiveItem` (records and corrupt stretches, in order).

    Holds at most the record being assembled plus one chunk (and, while skipping a
    corrupt stretch, its first ``max_record_bytes``)."""

    def __init__(
        self, *, max_record_bytes: int, looks_like_record: Callable[[Any], bool] | None = None
    ) -> None:
        self._max = max_record_bytes
        self._looks_like_record = looks_like_record
        self._buf = bytearray()  # content from self._buf_at to self._end
        self._buf_at = 0
        self._base = 0  # content before this offset is finished (bytes kept until compaction)
        self._end = 0
        self._start = 0  # content offset where the current splitter began
        self._splitter = JsonValueSplitter(max_value_bytes=max_record_bytes)
        # Skipping a corrupt stretch with no record start found yet: its offset, first bytes,
        # and the last non-whitespace byte seen (for the record-start test across chunks).
        self._skip_from: int | None = None
        self._skip_head = bytearray()
        self._skip_last: int | None = None
        self._skip_detail = ""
        # Holding a corrupt stretch whose next record start cannot be judged yet (its value
        # goes on in bytes not received): its offset and why it is corrupt.
        self._hold_from: int | None = None
        self._hold_detail = ""

    def feed(self, chunk: bytes) -> Iterator[ArchiveItem]:
        if not chunk:
            return
        if self._skip_from is not None:
            rest = yield from self._skip(chunk)
            if rest is not None:
                yield from self._run(rest, final=False)
            return
        # Compact once per chunk: finished records leave the buffer here, not one by one.
        if self._base > self._buf_at:
            del self._buf[: self._base - self._buf_at]
            self._buf_at = self._base
        self._buf += chunk
        self._end += len(chunk)
        if self._hold_from is not None:
            yield from self._resume_held(final=False)
            return
        yield from self._run(chunk, final=False)

    def close(self) -> Iterator[ArchiveItem]:
        if self._skip_from is not None:
            yield self._skipped(self._end)
            return
        if self._hold_from is not None:
            yield from self._resume_held(final=True)
            return
        yield from self._run(b"", final=True)

    def _resume_held(self, *, final: bool) -> Iterator[ArchiveItem]:
        start, detail = self._hold_from, self._hold_detail
        assert start is not None
        self._hold_from = None
        rest = yield from self._recover(start, detail, final=final)
        if rest is not None:
            yield from self._run(rest, final=final)

    # --- internals ---------------------------------------------------------------------
    def _run(self, data: bytes, *, final: bool) -> Iterator[ArchiveItem]:
        pending: bytes | None = data
        while pending is not None:
            pending = yield from self._split(pending, final=final)

    def _split(self, data: bytes, *, final: bool) -> Generator[ArchiveItem, None, bytes | None]:
        """Feed ``data`` (then, when final, the end) to the splitter. After a corrupt stretch,
        returns the bytes to feed the restarted splitter; None when all was consumed."""
        try:
            values: Iterable[RawValue] = self._splitter.feed(data)
            if final:
                values = chain(values, _deferred(self._splitter.close))
            for value in values:
                offset = self._start + value.offset
                # Every record of a CTR archive is an object: anything else is a corrupt stretch
                # (a string may hold the start of the next record: look inside it).
                if value.data[:1] != b"{":
                    return (yield from self._recover(offset, "not a JSON object", final=final))
                if not _parses(value.data):
                    return (yield from self._recover(offset, "not valid JSON", final=final))
                yield ArchiveItem(offset, value.data, len(value.data))
                self._base = offset + len(value.data)
        except SplitError as exc:
            return (yield from self._recover(self._start + exc.offset, str(exc), final=final))
        return None

    def _recover(self, start: int, detail: str, *, final: bool) -> Generator[ArchiveItem, None, bytes | None]:
        """Content from ``start`` is corrupt: find the next record start and go on from it."""
        buf = self._buf
        lo = start - self._buf_at
        budget = [NESTED_PROBES]
        i = buf.find(b"{", lo + 1)
        undecided = False
        while i != -1:
            # A record cut right after ":" "," or "[" is shorter than the size limit, so the
            # record after it starts within that many bytes of the cut one.
            nested_ok = i - lo <= self._max
            verdict = self._resumes_at(buf, i, None, final=final, nested_budget=budget if nested_ok else None)
            if verdict is None:
                undecided = True  # judged once more bytes arrive: nothing after it is looked at yet
                break
            if verdict:
                end = i
                while end > lo and buf[end - 1] in _WS:
                    end -= 1
                yield self._corrupt(start, bytes(buf[lo:end]), end - lo, detail)
                rest = bytes(buf[i:])
                self._restart(self._buf_at + i, rest)
                return rest
            i = buf.find(b"{", i + 1)
        if final:
            yield self._corrupt(start, bytes(buf[lo:]), len(buf) - lo, detail)
            self._restart(self._end, b"")
            return None
        if undecided or self._end - start <= self._max + PROBE_WINDOW:
            # Keep the bytes: the next record may start in them (and be judged with more).
            self._hold_from, self._hold_detail = start, detail
            return None
        # Longer than any record and no start in it: skip on, keeping only its first bytes.
        self._skip_from = start
        self._skip_head = bytearray(buf[lo : lo + self._max])
        self._skip_last = _last_non_ws(buf, None)
        self._skip_detail = detail
        self._restart(self._end, b"")
        return None

    def _skip(self, chunk: bytes) -> Generator[ArchiveItem, None, bytes | None]:
        """While skipping a corrupt stretch: look for a record start in the new bytes."""
        offset = self._end
        self._end += len(chunk)
        i = chunk.find(b"{")
        while i != -1:
            if self._resumes_at(chunk, i, self._skip_last, final=False, nested_budget=None) is not False:
                self._keep_skipped(chunk[:i])
                yield self._skipped(offset + i)
                rest = chunk[i:]
                self._restart(offset + i, rest)
                return rest
            i = chunk.find(b"{", i + 1)
        self._keep_skipped(chunk)
        self._skip_last = _last_non_ws(chunk, self._skip_last)
        return None

    def _resumes_at(
        self,
        buf: bytes | bytearray,
        i: int,
        before: int | None,
        *,
        final: bool,
        nested_budget: list[int] | None,
    ) -> bool | None:
        """Whether a record starts at ``buf[i]``: a top-level ``{`` whose value parses (or
        cannot be judged yet, before the end: taken, and judged by the splitter); or a ``{``
        that looks nested (a record cut right after ``:``, ``,`` or ``[`` precedes it) whose
        value is recognisably a record (None: its value goes on past ``buf``, ask again with
        more bytes). ``nested_budget`` bounds how many nested-looking starts are tried (None:
        none), so garbage made of nesting costs linear time."""
        if not _opens_object(buf, i):
            return False
        top_level = _is_top_level_start(buf, i, before)
        if not top_level:
            if self._looks_like_record is None or not nested_budget or nested_budget[0] <= 0:
                return False
            nested_budget[0] -= 1
        window = self._max if final else min(self._max, PROBE_WINDOW)
        probe = _probe(bytes(buf[i : i + window + 1]), window, self._max)
        if not probe.complete:
            if final or top_level:
                return not final  # at the end: no record; before it, the splitter judges it
            # Nested-looking: undecided only while its value may still end within the window.
            return None if len(buf) - i <= window else False
        if not probe.ok:
            return False
        return top_level or bool(self._looks_like_record and self._looks_like_record(probe.value))

    def _keep_skipped(self, data: bytes) -> None:
        room = self._max - len(self._skip_head)
        if room > 0:
            self._skip_head += data[:room]

    def _skipped(self, stop: int) -> ArchiveItem:
        assert self._skip_from is not None
        start = self._skip_from
        item = self._corrupt(start, bytes(self._skip_head), stop - start, self._skip_detail)
        self._skip_from = None
        self._skip_head = bytearray()
        self._skip_last = None
        return item

    def _restart(self, offset: int, held: bytes) -> None:
        """A fresh splitter from ``offset``; ``held`` is the content from there on."""
        self._splitter = JsonValueSplitter(max_value_bytes=self._max)
        self._start = self._base = self._buf_at = offset
        self._buf = bytearray(held)

    def _corrupt(self, offset: int, data: bytes, length: int, detail: str) -> ArchiveItem:
        return ArchiveItem(
            offset,
            data[: self._max],
            length,
            PROBLEM_RECORD,
            f"{length} bytes that are not a JSON record ({detail}); reading resumed after them",
        )


def _deferred(make: Callable[[], Iterator[RawValue]]) -> Iterator[RawValue]:
    """``make()`` called only when the iteration reaches it (after the values before it)."""
    yield from make()


def _last_non_ws(data: bytes | bytearray, default: int | None) -> int | None:
    for j in range(len(data) - 1, -1, -1):
        if data[j] not in _WS:
            return data[j]
    return default


def coalesce(items: Iterable[ArchiveItem], max_bytes: int) -> Iterator[ArchiveItem]:
    """Adjacent corrupt stretches become one (garbage full of ``{`` is one bad stretch)."""
    pending: ArchiveItem | None = None
    for item in items:
        if (
            pending is not None
            and item.problem == PROBLEM_RECORD
            and item.offset == pending.offset + pending.length
        ):
            length = pending.length + item.length
            pending = ArchiveItem(
                pending.offset,
                (pending.data + item.data)[:max_bytes],
                length,
                PROBLEM_RECORD,
                f"{length} bytes that are not a JSON record; reading resumed after them",
            )
            continue
        if pending is not None:
            yield pending
            pending = None
        if item.problem == PROBLEM_RECORD:
            pending = item
        else:
            yield item
    if pending is not None:
        yield pending


def read_archive_object(
    chunks: Iterable[bytes], *, max_record_bytes: int, looks_like_record: Callable[[Any], bool] | None = None
) -> Iterator[ArchiveItem]:
    """Every record and corrupt stretch of one stored object (plain or gzip), in order.

    A gzip stream that breaks or ends early yields one last item with problem
    ``corrupt_object`` at the content offset where decoding stopped (the records decoded
    before it are kept). ``looks_like_record`` (e.g. "has a ContactId") lets resynchronisation
    also accept a record that directly follows one cut right after ``:``, ``,`` or ``[``."""
    items = _read_archive_object(chunks, max_record_bytes, looks_like_record)
    return coalesce(items, max_record_bytes)


def _read_archive_object(
    chunks: Iterable[bytes], max_record_bytes: int, looks_like_record: Callable[[Any], bool] | None
) -> Iterator[ArchiveItem]:
    decoder = ObjectDecoder()
    reader = RecordReader(max_record_bytes=max_record_bytes, looks_like_record=looks_like_record)
    content = 0
    try:
        for chunk in chunks:
            for piece in decoder.feed(chunk):
                content += len(piece)
                yield from reader.feed(piece)
        for piece in decoder.close():
            content += len(piece)
            yield from reader.feed(piece)
    except ObjectCorrupt as exc:
        yield from reader.close()
        yield ArchiveItem(
            content,
            b"",
            0,
            PROBLEM_OBJECT,
            f"{exc} at stored byte {exc.compressed_offset}; the rest of the object is unreadable",
        )
        return
    yield from reader.close()
