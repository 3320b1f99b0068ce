"""Recorded parties from a few ranged reads: silent left, silent right, both live."""

from __future__ import annotations

import pytest

from processor.console.samples import stereo_wav
from processor.core.recorded_parties import RecordedParties, block_offsets, recorded_parties
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
