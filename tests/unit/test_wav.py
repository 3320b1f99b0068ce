"""WAV headers: real-shaped files (written with the standard ``wave`` module), extra and
odd-sized chunks, WAVE_FORMAT_EXTENSIBLE, truncated and hostile headers."""

from __future__ import annotations

import io
import struct
import wave

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.wav import WavHeaderError, read_wav_info, wav_header


def reader(blob: bytes, log: list[tuple[int, int]] | None = None):  # type: ignore[no-untyped-def]
    def read(offset: int, length: int) -> bytes:
        if log is not None:
            log.append((offset, length))
        return blob[offset : offset + length]

    return read


def stdlib_wav(seconds: float, channels: int = 2, rate: int = 8000, width: int = 2) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\x01\x00" * channels * int(seconds * rate))
    return buf.getvalue()


def test_stdlib_connect_format() -> None:
    blob = stdlib_wav(12.5)
    log: list[tuple[int, int]] = []
    info = read_wav_info(reader(blob, log), len(blob))
    assert (info.channels, info.sample_rate, info.bits_per_sample) == (2, 8000, 16)
    assert info.duration_seconds == pytest.approx(12.5)
    assert info.data_offset == 44
    assert log == [(0, 4096)]  # one ranged read of the first 4 KiB, never the file


def chunk(chunk_id: bytes, body: bytes) -> bytes:
    return chunk_id + struct.pack("<I", len(body)) + body + (b"\0" if len(body) % 2 else b"")


def assemble(*chunks: bytes, data: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks) + chunk(b"data", data)
    return b"RIFF" + struct.pack("<I", len(body)) + body


FMT_PCM = struct.pack("<HHIIHH", 1, 2, 8000, 32000, 4, 16)


def test_list_before_data_odd_sizes_any_order() -> None:
    data = b"\0" * 32000 * 3
    blob = assemble(
        chunk(b"LIST", b"INFOISFT" + b"x" * 13), chunk(b"fmt ", FMT_PCM), chunk(b"odd ", b"abc"), data=data
    )
    info = read_wav_info(reader(blob), len(blob))
    assert info.duration_seconds == pytest.approx(3.0)


def test_fmt_after_a_large_leading_chunk_needs_a_second_read() -> None:
    data = b"\0" * 32000
    blob = assemble(chunk(b"bext", b"b" * 6000), chunk(b"fmt ", FMT_PCM), data=data)
    log: list[tuple[int, int]] = []
    info = read_wav_info(reader(blob, log), len(blob))
    assert info.duration_seconds == pytest.approx(1.0)
    assert len(log) == 2 and sum(n for _, n in log) <= 8192


def test_wave_format_extensible() -> None:
    extensible = (
        struct.pack("<HHIIHHHHI", 0xFFFE, 2, 8000, 32000, 4, 16, 22, 16, 3) + b"\x01\x00" + b"\0" * 14
    )
    blob = assemble(chunk(b"fmt ", extensible), data=b"\0" * 64000)
    info = read_wav_info(reader(blob), len(blob))
    assert info.format_tag == 1 and info.duration_seconds == pytest.approx(2.0)


def test_streaming_or_truncated_data_size_uses_the_object_size() -> None:
    data = b"\0" * 32000 * 4
    for declared in (0, 0xFFFFFFFF, len(data) * 10):
        blob = wav_header(data_bytes=declared) + data
        info = read_wav_info(reader(blob), len(blob))
        assert info.size_from_object
        assert info.duration_seconds == pytest.approx(4.0)


@pytest.mark.parametrize(
    "blob",
    [
        b"",
        b"RIFF",
        b"RIFX" + b"\0" * 40,
        b"RIFF\0\0\0\0WAVE",
        assemble(data=b"\0" * 10),  # no fmt
        assemble(chunk(b"fmt ", struct.pack("<HHIIHH", 1, 0, 0, 0, 0, 16)), data=b"\0" * 10),  # zero channels
        assemble(chunk(b"fmt ", b"\x01\x00"), data=b"\0" * 10),  # short fmt
        b"RIFF\0\0\0\0WAVE" + b"junk" + struct.pack("<I", 0xFFFFFFF0),  # absurd chunk
    ],
)
def test_hostile_headers_raise(blob: bytes) -> None:
    with pytest.raises(WavHeaderError):
        read_wav_info(reader(blob), len(blob))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_fuzz_never_crashes_differently(blob: bytes) -> None:
    try:
        info = read_wav_info(reader(blob), len(blob))
    except WavHeaderError:
        return
    assert info.byte_rate > 0 and info.data_bytes >= 0


def test_simulator_recordings_are_what_they_claim() -> None:
    from processor.devtools.simulated_centre import wav_bytes

    blob = wav_bytes(61.25, seed=4)
    with wave.open(io.BytesIO(blob)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 8000, 2)
        assert w.getnframes() / w.getframerate() == pytest.approx(61.25)
    assert read_wav_info(reader(blob), len(blob)).duration_seconds == pytest.approx(61.25)
    with pytest.raises(WavHeaderError):
        corrupt = wav_bytes(3, corrupt_header=True)
        read_wav_info(reader(corrupt), len(corrupt))
