"""Recorded parties from a few ranged reads: silent left, silent right, both live."""

from __future__ import annotations

import pytest

from processor.console.samples import stereo_wav
from processor.core.recorded_parties import (
    CONFIRM_BYTES,
    OPENING_BYTES,
    PartiesReport,
    RecordedParties,
    block_offsets,
    confirm_span,
    import_parties,
    recorded_parties,
)
from processor.core.wav import read_wav_info, wav_header


class CountingReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    def __call__(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]

    @property
    def bytes_read(self) -> int:
        return sum(min(length, max(len(self.data) - offset, 0)) for offset, length in self.reads)


def _parties(data: bytes) -> tuple[RecordedParties, CountingReader]:
    reader = CountingReader(data)
    info = read_wav_info(reader, len(data))
    return recorded_parties(reader, info).parties, reader


@pytest.mark.parametrize(
    ("customer", "agent", "expected"),
    [
        (False, True, RecordedParties.AGENT),  # silent left channel: only the agent recorded
        (True, False, RecordedParties.CUSTOMER),  # silent right channel: only the customer
        (True, True, RecordedParties.BOTH),
        (False, False, RecordedParties.NONE),
    ],
)
def test_channels_decide_the_parties(customer: bool, agent: bool, expected: RecordedParties) -> None:
    data = stereo_wav(60, customer=customer, agent=agent)
    parties, reader = _parties(data)
    assert parties is expected
    # A few small reads, never the whole file (60 s of stereo 8 kHz = 1.9 MB).
    assert reader.bytes_read < 64 * 1024
    assert len(reader.reads) <= 14
    assert max(length for _, length in reader.reads) <= 4096


def test_speech_in_only_part_of_the_call_is_found() -> None:
    """An agent who only speaks in the last third of the call is still recorded."""
    silent = stereo_wav(40, customer=True, agent=False)
    talking = stereo_wav(20, customer=True, agent=True)
    info = read_wav_info(CountingReader(silent), len(silent))
    data = wav_header(data_bytes=info.data_bytes + len(talking) - 44) + silent[44:] + talking[44:]
    parties, _ = _parties(data)
    assert parties is RecordedParties.BOTH


def test_reads_are_spread_and_frame_aligned() -> None:
    data = stereo_wav(30, customer=True, agent=True)
    info = read_wav_info(CountingReader(data), len(data))
    spots = block_offsets(info, 12, 4096)
    assert len(spots) == 12
    assert all((offset - info.data_offset) % 4 == 0 for offset, _ in spots)
    assert spots[0][0] - info.data_offset < info.data_bytes / 12
    assert spots[-1][0] > info.data_offset + info.data_bytes * 0.85
    assert all(offset + length <= info.data_offset + info.data_bytes for offset, length in spots)


def test_short_recording_read_in_one_go() -> None:
    data = stereo_wav(0.5, customer=False, agent=True)
    parties, reader = _parties(data)
    assert parties is RecordedParties.AGENT
    assert reader.bytes_read <= len(data) + 4096  # the header read, then the data once


def test_low_line_noise_counts_as_silence() -> None:
    data = bytearray(stereo_wav(10, customer=True, agent=False))
    # Add +-3 LSB of noise to the agent's (right) channel: about -80 dBFS.
    for i in range(44 + 2, len(data), 4):
        data[i] = 3 if i % 8 else 0xFD
        data[i + 1] = 0 if i % 8 else 0xFF
    parties, _ = _parties(bytes(data))
    assert parties is RecordedParties.CUSTOMER


def test_mono_recording_is_unknown() -> None:
    body = b"\x10\x20" * 8000
    data = wav_header(channels=1, data_bytes=len(body)) + body
    reader = CountingReader(data)
    report = recorded_parties(reader, read_wav_info(reader, len(data)))
    assert report.parties is RecordedParties.UNKNOWN
    assert "channel" in (report.reason or "")


# --- at import: the opening of the call (the header read's bytes), one confirming read -------
def _import(data: bytes, first_bytes: int = OPENING_BYTES) -> tuple[PartiesReport, CountingReader]:
    """What the join does: one read of the first ``first_bytes``, then ``import_parties``."""
    reader = CountingReader(data)
    first = data[:first_bytes]
    info = read_wav_info(reader, len(data), first)
    return import_parties(reader, info, first), reader


def test_both_parties_in_the_opening_need_no_other_read() -> None:
    report, reader = _import(stereo_wav(30, customer=True, agent=True))
    assert report.parties is RecordedParties.BOTH
    assert reader.reads == []  # the header read's bytes were enough
    assert report.bytes_read == 0


def with_line_noise(data: bytes, channel: int) -> bytes:
    """``data`` with +-3 LSB (about -80 dBFS) on ``channel``: a quiet leg's noise floor."""
    out = bytearray(data)
    for i in range(44 + 2 * channel, len(out) - 1, 4):
        out[i], out[i + 1] = (3, 0) if i % 8 < 4 else (0xFD, 0xFF)
    return bytes(out)


@pytest.mark.parametrize(
    ("customer", "agent", "expected"),
    [
        (False, True, RecordedParties.AGENT),
        (True, False, RecordedParties.CUSTOMER),
    ],
)
def test_a_digitally_silent_channel_decides_from_the_opening(
    customer: bool, agent: bool, expected: RecordedParties
) -> None:
    report, reader = _import(stereo_wav(30, customer=customer, agent=agent))
    assert report.parties is expected
    assert reader.reads == []  # an unrecorded leg is zeros: nothing more to read
    assert "digital silence" in (report.reason or "")


@pytest.mark.parametrize(
    ("customer", "agent", "expected"),
    [
        (False, True, RecordedParties.AGENT),
        (True, False, RecordedParties.CUSTOMER),
        (False, False, RecordedParties.NONE),
    ],
)
def test_a_quiet_channel_is_confirmed_by_one_read_in_the_middle(
    customer: bool, agent: bool, expected: RecordedParties
) -> None:
    data = stereo_wav(30, customer=customer, agent=agent)
    if not customer:
        data = with_line_noise(data, 0)
    if not agent:
        data = with_line_noise(data, 1)
    report, reader = _import(data)
    assert report.parties is expected
    [(offset, length)] = reader.reads  # one more ranged read, bounded
    assert length <= CONFIRM_BYTES
    info = read_wav_info(CountingReader(data), len(data))
    middle = info.data_offset + info.data_bytes // 2
    assert offset < middle < offset + length
    assert (offset - info.data_offset) % info.block_align == 0
    assert report.bytes_read == length


def test_a_party_quiet_in_the_opening_but_speaking_later_is_recorded() -> None:
    """The agent greets, the customer (on the line: its noise floor) answers only after the
    opening: both recorded."""
    opening = with_line_noise(stereo_wav(6, customer=False, agent=True), 0)
    rest = stereo_wav(24, customer=True, agent=True)
    data = wav_header(data_bytes=len(opening) - 44 + len(rest) - 44) + opening[44:] + rest[44:]
    report, reader = _import(data)
    assert report.parties is RecordedParties.BOTH
    assert len(reader.reads) == 1


def test_a_short_recording_is_decided_from_the_header_read_alone() -> None:
    report, reader = _import(stereo_wav(2, customer=False, agent=True))  # 64 KB: all in the first read
    assert report.parties is RecordedParties.AGENT
    assert reader.reads == []


def test_a_truncated_upload_is_read_within_the_object() -> None:
    full = with_line_noise(stereo_wav(30, customer=False, agent=True), 0)
    data = full[: len(full) // 3]  # the header claims 30 s, the object holds 10
    report, reader = _import(data)
    assert report.parties is RecordedParties.AGENT
    assert all(offset + length <= len(data) for offset, length in reader.reads)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        (wav_header(channels=1, data_bytes=16000), "channel"),
        (wav_header(channels=2, bits=24, data_bytes=16000), "format"),
    ],
)
def test_odd_recordings_are_unknown_without_reads(header: bytes, reason: str) -> None:
    data = header + b"\x10\x20\x30" * 16000
    report, reader = _import(data[: 44 + 16000])
    assert report.parties is RecordedParties.UNKNOWN
    assert reason in (report.reason or "") or "unsupported" in (report.reason or "")
    assert reader.reads == []


def test_an_empty_data_chunk_is_none() -> None:
    report, reader = _import(wav_header(data_bytes=0))
    assert report.parties is RecordedParties.NONE
    assert reader.reads == []


def test_confirm_span_stays_in_the_data_and_after_the_opening() -> None:
    data = stereo_wav(30, customer=True, agent=True)
    info = read_wav_info(CountingReader(data), len(data))
    offset, length = confirm_span(info, covered=OPENING_BYTES)  # type: ignore[misc]
    assert offset - info.data_offset >= OPENING_BYTES
    assert offset + length <= info.data_offset + info.data_bytes
    assert length == CONFIRM_BYTES
    assert confirm_span(info, covered=info.data_bytes) is None
