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
* :class:`RecordReader` splits the content into records, each value parsed where it starts
  with orjson (on a window that grows while the value goes on), and *resynchronises* after
  a corrupt record: the bad bytes come out as one :class:`ArchiveItem` with a ``problem``
  (to quarantine with the object key and byte offset), and reading goes on at the next
  record start, so one bad record never costs the records after it.

Resynchronisation. Every record of a CTR archive is a JSON object; a value that is not
one, or does not parse, is corrupt. From the start of the bad value, the next record start
is the first ``{"key":`` (or ``{}``) that (a) cannot be inside a valid JSON document,
because the byte before it (whitespace skipped) is not ``:``, ``,`` or ``[`` (a nested
object always follows one of those), and (b) begins a value that parses. A record cut right
after ``:``, ``,`` or ``[`` makes the next record look nested: with a ``looks_like_record``
test (a CTR has a ``ContactId``), such a start is accepted too when its value is a record,
within the size limit of the cut record's start (at most ``NESTED_PROBES`` tries). A string
holding ``{}`` or a whole JSON object where a record was cut may be taken for a record (the
CTR path then rejects it): the cost is extra quarantine entries, never a good record.
Offsets are in the object's content (after decompression).

Linear time, whatever the bytes. Candidate starts are found by a regular expression (a
``{`` not followed by a key and a colon costs no Python work), each is examined once (the
scan position survives while more bytes arrive), and orjson stops at a candidate's first
invalid byte, so judging it costs about the length of its valid prefix. Those prefixes
barely overlap: a top-level-looking ``{`` lies inside a string of every earlier value still
valid there, and its own key's opening quote closes that string, so two live parses always
disagree on what is string and what is not; at any byte at most two candidates' prefixes
are alive, and the work is at most about twice the object's size (in C). A value assembled
across chunks is probed again only when its bytes have doubled.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson

GZIP_MAGIC = b"\x1f\x8b"
_WS = frozenset(b" \t\r\n")
_NESTED_BEFORE = frozenset(b":,[")
_OPEN_BRACE = 0x7B
#: Output of one inflate call: bounds memory whatever the compression ratio.
MAX_INFLATE_STEP = 1 << 20

#: A corrupt stretch keeps its bytes this far past the record size limit (nested-looking
#: record starts are tried within the limit of its start), then forgets the examined ones.
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


_WS_BYTES = b" \t\r\n"
_NOT_WS = re.compile(rb"[^ \t\r\n]")
# A "{" that may open a record: "{}" or a first key ("{" "key" ":"), or cut by the end of
# what has arrived. Everything else is rejected here, in the regular expression engine, so
# a stretch of "{"{"{" costs no Python work per brace.
_KEY = rb'"(?:[^"\\\x00-\x1f]|\\.)*(?:"[ \t\r\n]*(?::|\Z)|\\?\Z)'
_ANY_START = re.compile(rb"\{[ \t\r\n]*(?:\}|\Z|" + _KEY + rb")")
_TOP_START = re.compile(rb"(?<![:,\[])\{[ \t\r\n]*(?:\}|\Z|" + _KEY + rb")")
#: First bytes a probe looks at (grown eightfold while the value goes on).
FIRST_PROBE = 4096
_RESYNC_PROBE = 256
#: A probe failing this close to the end of what it looked at is asked again with more.
_NEAR_END = 8
_TRAILING = "unexpected content after document"


@dataclass(frozen=True, slots=True)
class _Probe:
    """The value at a ``{``: ``length`` bytes that parse (``ok``), not a value within the
    limit (``ok`` False), or valid up to the end of the bytes received (``complete``
    False: ask again with more)."""

    ok: bool
    complete: bool
    length: int = 0
    detail: str = ""


def _probe(buf: bytes | bytearray, i: int, max_bytes: int, first: int = FIRST_PROBE) -> _Probe:
    """Parse the value starting at ``buf[i]`` with orjson, on a window that grows eightfold
    while the value goes on. orjson stops at the first invalid byte and says why, so the
    work is about the length of the value's valid prefix (not of the window), whatever the
    bytes are: this is what keeps resynchronisation linear."""
    avail = len(buf) - i
    size = first
    while True:
        n = min(size, avail, max_bytes + 1)
        raw = bytes(buf[i : i + n])
        bad_utf8 = False
        try:
            text = raw.decode()
        except UnicodeDecodeError as exc:
            bad_utf8 = exc.reason != "unexpected end of data" or exc.end < n
            raw = raw[: exc.start]
            text = raw.decode()
        try:
            orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            if exc.msg.startswith(_TRAILING):
                head = raw[: exc.pos] if text.isascii() else text[: exc.pos].encode()
                return _Probe(True, True, len(head.rstrip(_WS_BYTES)))
            valid_to_end = exc.pos >= len(text) - _NEAR_END
            if not valid_to_end or bad_utf8:
                return _Probe(False, True, detail="not valid UTF-8" if valid_to_end else exc.msg)
            # Valid up to the end of what was looked at.
            if n >= avail:
                return _Probe(False, False)
            if n > max_bytes:
                return _Probe(False, True, detail=f"longer than {max_bytes} bytes")
            size *= 8
            continue
        length = len(raw.rstrip(_WS_BYTES))
        fits = length <= max_bytes
        return _Probe(fits, True, length, "" if fits else f"longer than {max_bytes} bytes")


def _is_top_level_start(buf: bytes | bytearray, index: int, before: int | None) -> bool:
    """The ``{`` at ``index`` is not preceded (whitespace skipped) by ``:``, ``,`` or ``[``,
    so it cannot be nested in a valid document. ``before`` is the last non-whitespace
    byte before ``buf`` (None: none)."""
    j = index - 1
    while j >= 0 and buf[j] in _WS:
        j -= 1
    previous = buf[j] if j >= 0 else before
    return previous not in _NESTED_BEFORE


class RecordReader:
    """Content chunks -> :class:`ArchiveItem` (records and corrupt stretches, in order).

    Reading: at each record start, :func:`_probe` parses the value. A value that does not
    parse starts a corrupt stretch; resynchronising looks for the next record start (see
    the module) from the byte after it, each candidate examined once (the scan position is
    kept while more bytes arrive). Holds at most the value being assembled (or, in a
    corrupt stretch, the record size limit plus the candidate being judged) and one chunk.
    """

    def __init__(
        self, *, max_record_bytes: int, looks_like_record: Callable[[Any], bool] | None = None
    ) -> None:
        self._max = max_record_bytes
        self._looks_like_record = looks_like_record
        self._buf = bytearray()  # content from self._buf_at to self._end
        self._buf_at = 0
        self._end = 0
        self._before: int | None = None  # last non-whitespace byte before self._buf
        self._pos = 0  # reading: where the next record (or whitespace before it) starts
        self._wait_until = 0  # do not look again before the content reaches this offset
        # The corrupt stretch being resolved: where it starts and why, the next candidate
        # to examine, its first bytes once they leave the buffer, and where its last
        # non-whitespace byte before the buffer ends.
        self._bad_from: int | None = None
        self._bad_detail = ""
        self._scan = 0
        self._budget = NESTED_PROBES
        self._head: bytes | None = None
        self._text_end = 0

    def feed(self, chunk: bytes) -> Iterator[ArchiveItem]:
        if not chunk:
            return
        keep = self._pos if self._bad_from is None else (self._buf_at if self._head else self._bad_from)
        if keep > self._buf_at:
            # Compact once per chunk: finished records leave the buffer here, not one by one.
            del self._buf[: keep - self._buf_at]
            self._buf_at = keep
        self._buf += chunk
        self._end += len(chunk)
        if self._end < self._wait_until:
            return
        yield from self._advance(final=False)

    def close(self) -> Iterator[ArchiveItem]:
        yield from self._advance(final=True)

    # --- internals ---------------------------------------------------------------------
    def _advance(self, *, final: bool) -> Iterator[ArchiveItem]:
        self._wait_until = 0
        while True:
            if self._bad_from is not None:
                found = yield from self._resync(final=final)
                if not found:
                    return
            buf = self._buf
            match = _NOT_WS.search(buf, self._pos - self._buf_at)
            if match is None:
                self._pos = self._end
                return
            i = match.start()
            self._pos = self._buf_at + i
            if buf[i] != _OPEN_BRACE:
                self._enter_bad("not a JSON object")
                continue
            probe = _probe(buf, i, self._max)
            if probe.ok:
                yield ArchiveItem(self._pos, bytes(buf[i : i + probe.length]), probe.length)
                self._pos += probe.length
            elif probe.complete:
                self._enter_bad(probe.detail)
            elif final:
                self._enter_bad("the object ends inside it")
            else:
                self._wait(self._pos)
                return

    def _wait(self, since: int) -> None:
        """Nothing to decide before more bytes: look again once the bytes from ``since``
        have doubled (each value probed a logarithmic number of times)."""
        self._wait_until = min(self._end + max(self._end - since, 1), since + self._max + 1)

    def _enter_bad(self, detail: str) -> None:
        self._bad_from = self._pos
        self._bad_detail = detail
        self._scan = self._pos + 1
        self._budget = NESTED_PROBES
        self._head = None
        self._text_end = self._pos + 1

    def _resync(self, *, final: bool) -> Generator[ArchiveItem, None, bool]:
        """Look for the next record start in the corrupt stretch; True once reading goes
        on (after yielding the stretch), False while more bytes are needed."""
        bad = self._bad_from
        assert bad is not None
        buf, base = self._buf, self._buf_at
        at = self._scan - base
        nested_possible = self._looks_like_record is not None
        while True:
            nested = nested_possible and self._budget > 0 and base + at - bad <= self._max
            match = (_ANY_START if nested else _TOP_START).search(buf, at)
            if match is None:
                break
            i = match.start()
            verdict = self._resumes_at(buf, i, final=final, nested_ok=base + i - bad <= self._max)
            if verdict is None:
                self._scan = base + i
                self._forget_examined()
                self._wait(base + i)
                return False
            if verdict:
                yield self._stretch(i)
                self._pos = base + i
                return True
            at = i + 1
        self._scan = self._end
        if final:
            yield self._stretch(len(buf))
            self._pos = self._end
            return True
        self._forget_examined()
        return False

    def _resumes_at(self, buf: bytearray, i: int, *, final: bool, nested_ok: bool) -> bool | None:
        """Whether a record starts at ``buf[i]`` (a ``{`` the start pattern accepted): a
        top-level one whose value parses; or a nested-looking one (a record cut right
        after ``:``, ``,`` or ``[`` precedes it) whose value is recognisably a record,
        tried at most ``NESTED_PROBES`` times per stretch. None: its value goes on past
        the bytes received (ask again with more)."""
        top_level = _is_top_level_start(buf, i, self._before)
        if not top_level and (not nested_ok or self._looks_like_record is None or self._budget <= 0):
            return False
        probe = _probe(buf, i, self._max, _RESYNC_PROBE)
        if not probe.complete:
            return False if final else None
        if not top_level:
            self._budget -= 1
        if not probe.ok:
            return False
        if top_level:
            return True
        assert self._looks_like_record is not None
        return bool(self._looks_like_record(orjson.loads(bytes(buf[i : i + probe.length]))))

    def _forget_examined(self) -> None:
        """A stretch longer than any record: the bytes examined leave the buffer (its first
        ``max_record_bytes`` are kept to quarantine)."""
        assert self._bad_from is not None
        if self._end - self._bad_from <= self._max + PROBE_WINDOW:
            return
        cut = self._scan - self._buf_at
        if cut <= 0:
            return
        buf = self._buf
        if self._head is None:
            lo = self._bad_from - self._buf_at
            self._head = bytes(buf[lo : lo + self._max])
        j = cut
        while j > 0 and buf[j - 1] in _WS:
            j -= 1
        if j > 0:
            self._before = buf[j - 1]
            self._text_end = self._buf_at + j
        del buf[:cut]
        self._buf_at += cut

    def _stretch(self, stop: int) -> ArchiveItem:
        """The corrupt stretch up to ``buf[stop]`` (whitespace before it not included)."""
        bad = self._bad_from
        assert bad is not None
        buf = self._buf
        floor = max(bad - self._buf_at, 0)
        end = stop
        while end > floor and buf[end - 1] in _WS:
            end -= 1
        # All whitespace back to the buffer's start after its examined bytes were forgotten:
        # the stretch ends where its last non-whitespace byte before them was.
        end_at = self._buf_at + end if end > floor or bad >= self._buf_at else self._text_end
        head = self._head if self._head is not None else bytes(buf[floor : floor + self._max])
        length = end_at - bad
        self._bad_from = None
        self._head = None
        return ArchiveItem(
            bad,
            head[: min(self._max, length)],
            length,
            PROBLEM_RECORD,
            f"{length} bytes that are not a JSON record ({self._bad_detail}); reading resumed after them",
        )


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
