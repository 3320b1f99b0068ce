"""RIFF/WAVE headers: duration of a recording from its first bytes, never the whole file.

Handles what real files carry: chunks in any order, ``LIST``/``fact``/``bext`` chunks
before ``data``, odd-sized chunks (padded to even), ``WAVE_FORMAT_EXTENSIBLE`` fmt chunks,
and a ``data`` size that is 0 or 0xFFFFFFFF (written while streaming) or larger than the
object (truncated upload). Hostile headers (zero byte rate, absurd sizes, loops) raise
:class:`WavHeaderError`; the caller then falls back to the object size and flags it.
Pure: the caller passes a ``read(offset, length) -> bytes`` function (an S3 ranged GET).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

FIRST_READ = 4096
MAX_CHUNKS = 64
FORMAT_PCM = 0x0001
FORMAT_EXTENSIBLE = 0xFFFE
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)

Reader = Callable[[int, int], bytes]


class WavHeaderError(ValueError):
    """The bytes are not a usable RIFF/WAVE header."""


@dataclass(frozen=True)
class WavInfo:
    format_tag: int
    channels: int
    sample_rate: int
    bits_per_sample: int
    byte_rate: int
    block_align: int
    data_offset: int
    data_bytes: int
    #: True when the data size came from the object size, not the header.
    size_from_object: bool = False

    @property
    def duration_seconds(self) -> float:
        return self.data_bytes / self.byte_rate


def _fmt(body: bytes) -> tuple[int, int, int, int, int, int]:
    if len(body) < 16:
        raise WavHeaderError("fmt chunk shorter than 16 bytes")
    tag, channels, rate, byte_rate, align, bits = struct.unpack_from("<HHIIHH", body)
    if tag == FORMAT_EXTENSIBLE and len(body) >= 26:
        tag = struct.unpack_from("<H", body, 24)[0]  # first two bytes of the SubFormat GUID
    if channels == 0 or rate == 0:
        raise WavHeaderError("fmt chunk has zero channels or sample rate")
    if byte_rate == 0:
        byte_rate = rate * align if align else rate * channels * max(bits, 8) // 8
    if byte_rate == 0 or byte_rate > 100_000_000:
        raise WavHeaderError(f"implausible byte rate {byte_rate}")
    return tag, channels, rate, byte_rate, align, bits


def read_wav_info(read: Reader, object_size: int | None = None, first: bytes | None = None) -> WavInfo:
    """Walk the chunks until ``data``; reads only headers (a few KiB at most)."""
    head = first if first is not None else read(0, FIRST_READ)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64") or head[8:12] != b"WAVE":
        raise WavHeaderError("not a RIFF/WAVE file")
    window_start, window = 0, head
    offset = 12
    fmt: tuple[int, int, int, int, int, int] | None = None
    for _ in range(MAX_CHUNKS):
        if object_size is not None and offset + 8 > object_size:
            break
        if offset + 8 > window_start + len(window):
            window_start, window = offset, read(offset, FIRST_READ)
            if len(window) < 8:
                break
        local = offset - window_start
        chunk_id = window[local : local + 4]
        (size,) = struct.unpack_from("<I", window, local + 4)
        body_start = offset + 8
        if chunk_id == b"fmt ":
            needed = min(size, 64)
            body_local = body_start - window_start
            body = window[body_local : body_local + needed]
            if len(body) < needed:
                body = read(body_start, needed)
            fmt = _fmt(body)
        elif chunk_id == b"data":
            if fmt is None:
                raise WavHeaderError("data chunk before fmt chunk")
            tag, channels, rate, byte_rate, align, bits = fmt
            from_object = False
            available = object_size - body_start if object_size is not None else None
            if size in _UNKNOWN_SIZES or (available is not None and size > available):
                if available is None:
                    raise WavHeaderError("data size unknown and object size not given")
                size, from_object = max(available, 0), True
            return WavInfo(tag, channels, rate, bits, byte_rate, align, body_start, size, from_object)
        if size > 0x7FFFFFFF:
            raise WavHeaderError(f"chunk {chunk_id!r} claims {size} bytes")
        offset = body_start + size + (size & 1)  # chunks are padded to an even size
    raise WavHeaderError("no data chunk in the header")


def wav_header(
    *,
    channels: int = 2,
    sample_rate: int = 8000,
    bits: int = 16,
    data_bytes: int,
    extra_chunks: list[tuple[bytes, bytes]] | None = None,
) -> bytes:
    """A PCM WAV header (used by the simulator to write Connect-shaped recordings)."""
    align = channels * bits // 8
    fmt = struct.pack("<HHIIHH", FORMAT_PCM, channels, sample_rate, sample_rate * align, align, bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    for chunk_id, body in extra_chunks or []:
        chunks += chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) & 1 else b"")
    chunks += b"data" + struct.pack("<I", data_bytes)
    riff_size = min(4 + len(chunks) + data_bytes, 0xFFFFFFFF)
    return b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + chunks
