"""Recorded parties: which channel of a stereo call recording carries audio.

Amazon Connect writes stereo recordings with the customer on the left channel and the
agent on the right; the contact flow's "Set call recording behavior" block records the
agent, the customer or both, and an unrecorded party's channel is silent. The decision
comes from a few small blocks read at spots spread through the data chunk (ranged reads
through the injected ``read``), never from the whole file. Pure: no I/O of its own.

Two plans of reads:

* :func:`recorded_parties` (the console, for contacts imported before the parties were
  stored): a dozen 4 KiB reads spread through the file.
* :func:`import_parties` (the join, once per recording): the opening of the call, which
  comes with the header read the join makes anyway (one ranged GET of the first
  :data:`OPENING_BYTES`), and, only when that opening leaves a channel quiet (below the
  threshold, but not digital zero: a recorded party who has not spoken yet carries the
  line's noise), one more read of :data:`CONFIRM_BYTES` in the middle of the call. At most
  two ranged GETs per recording; one when both parties speak in the first seconds, or when
  the unrecorded party's channel is digital silence.
"""

from __future__ import annotations

import math
import operator
import sys
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from processor.core.wav import FORMAT_PCM, Reader, WavInfo

#: Blocks read through the recording, and the size of each (a few KiB per read).
DEFAULT_BLOCKS = 12
DEFAULT_BLOCK_BYTES = 4096
#: A block whose RMS level is above this carries sound; line noise of a muted leg sits far below.
SILENCE_DBFS = -50.0
#: The join's first ranged GET of a recording: the header and about 4 s of Connect audio
#: (8 kHz, 16-bit stereo: 32,000 bytes/s), long enough for the agent's greeting and the reply.
OPENING_BYTES = 128 * 1024
#: An opening at least this long (2 s of Connect audio) in which one channel carries sound
#: and the other is exactly zero decides alone: digital silence is an unrecorded leg.
DIGITAL_SILENCE_BYTES = 64 * 1024
#: The one confirming read in the middle of the call when the opening leaves a channel silent.
CONFIRM_BYTES = 128 * 1024
#: Within a long read, a 1 KiB block (32 ms of Connect audio) every 4 KiB (128 ms) is
#: measured: a talk spurt lasts far longer, and the CPU stays bounded.
SUB_BLOCK_BYTES = 1024
SUB_BLOCK_STRIDE = 4096
#: Left = customer, right = agent (Amazon Connect's stereo layout).
CUSTOMER_CHANNEL = 0
AGENT_CHANNEL = 1


class RecordedParties(StrEnum):
    AGENT = "agent"
    CUSTOMER = "customer"
    BOTH = "both"
    NONE = "none"  # both channels silent
    UNKNOWN = "unknown"  # not a 16/8-bit PCM stereo file: channels cannot be told apart


@dataclass(frozen=True)
class PartiesReport:
    parties: RecordedParties
    #: Loudest block's RMS level per channel in dBFS (None when not measured).
    customer_dbfs: float | None
    agent_dbfs: float | None
    blocks_read: int
    #: Bytes read for the decision (at import: beyond the header read, which it shares).
    bytes_read: int
    reason: str | None = None


def _dbfs(rms: float, full_scale: float) -> float:
    return -120.0 if rms <= 0 else max(-120.0, 20.0 * math.log10(rms / full_scale))


def _channel_rms(block: bytes, channels: int, bits: int) -> list[float]:
    samples: array[int]
    if bits == 16:
        samples = array("h")
        usable = len(block) - len(block) % (2 * channels)
        samples.frombytes(block[:usable])
        if sys.byteorder == "big":
            samples.byteswap()  # WAV samples are little-endian
    else:  # 8-bit PCM is unsigned, centred on 128
        usable = len(block) - len(block) % channels
        samples = array("h", (b - 128 for b in block[:usable]))
    out = []
    for channel in range(channels):
        own = samples[channel::channels]
        out.append(math.sqrt(sum(map(operator.mul, own, own)) / len(own)) if own else 0.0)
    return out


def block_offsets(info: WavInfo, blocks: int, block_bytes: int) -> list[tuple[int, int]]:
    """(offset, length) of each block, spread evenly through the data chunk, frame-aligned."""
    align = max(info.block_align, 1)
    if info.data_bytes <= blocks * block_bytes:
        return [(info.data_offset, info.data_bytes)] if info.data_bytes > 0 else []
    length = block_bytes - block_bytes % align
    room = info.data_bytes - length
    spots = []
    for i in range(blocks):
        relative = int(room * (i + 0.5) / blocks)
        spots.append((info.data_offset + relative - relative % align, length))
    return spots


def _unsupported(info: WavInfo) -> PartiesReport | None:
    """The report for a recording whose channels cannot be told apart, else None."""
    if info.format_tag != FORMAT_PCM or info.bits_per_sample not in (8, 16):
        return PartiesReport(
            RecordedParties.UNKNOWN, None, None, 0, 0, f"unsupported sample format {info.format_tag}"
        )
    if info.channels != 2:
        return PartiesReport(
            RecordedParties.UNKNOWN, None, None, 0, 0, f"{info.channels} channel(s): parties are mixed"
        )
    return None


def _decide(
    info: WavInfo, loudest: Sequence[float], blocks: int, read_bytes: int, silence_dbfs: float
) -> PartiesReport:
    if blocks == 0:
        return PartiesReport(RecordedParties.NONE, None, None, 0, read_bytes, "empty data chunk")
    full_scale = 32768.0 if info.bits_per_sample == 16 else 128.0
    customer = _dbfs(loudest[CUSTOMER_CHANNEL], full_scale)
    agent = _dbfs(loudest[AGENT_CHANNEL], full_scale)
    live_customer, live_agent = customer > silence_dbfs, agent > silence_dbfs
    parties = (
        RecordedParties.BOTH
        if live_customer and live_agent
        else RecordedParties.CUSTOMER
        if live_customer
        else RecordedParties.AGENT
        if live_agent
        else RecordedParties.NONE
    )
    return PartiesReport(parties, round(customer, 1), round(agent, 1), blocks, read_bytes)


def recorded_parties(
    read: Reader,
    info: WavInfo,
    *,
    blocks: int = DEFAULT_BLOCKS,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    silence_dbfs: float = SILENCE_DBFS,
) -> PartiesReport:
    """Which parties ``info``'s recording carries, from ``blocks`` ranged reads of ``block_bytes``."""
    unsupported = _unsupported(info)
    if unsupported is not None:
        return unsupported
    loudest = [0.0, 0.0]
    read_bytes = 0
    spots = block_offsets(info, blocks, block_bytes)
    for offset, length in spots:
        block = read(offset, length)
        read_bytes += len(block)
        for channel, rms in enumerate(_channel_rms(block, 2, info.bits_per_sample)):
            loudest[channel] = max(loudest[channel], rms)
    if not spots:
        return PartiesReport(RecordedParties.NONE, None, None, 0, 0, "empty data chunk")
    return _decide(info, loudest, len(spots), read_bytes, silence_dbfs)


def _measure(info: WavInfo, chunk: bytes, loudest: list[float]) -> int:
    """Fold the sub-blocks of ``chunk`` (frame-aligned data) into ``loudest``; how many."""
    align = max(info.block_align, 1)
    size = SUB_BLOCK_BYTES - SUB_BLOCK_BYTES % align or align
    stride = max(SUB_BLOCK_STRIDE - SUB_BLOCK_STRIDE % align, size)
    if len(chunk) <= SUB_BLOCK_STRIDE:
        starts: Iterable[int] = [0] if chunk else []
        size = len(chunk) - len(chunk) % align
    else:
        starts = range(0, len(chunk) - size + 1, stride)
    measured = 0
    for start in starts:
        block = chunk[start : start + size]
        if not block:
            continue
        for channel, rms in enumerate(_channel_rms(block, 2, info.bits_per_sample)):
            loudest[channel] = max(loudest[channel], rms)
        measured += 1
    return measured


def opening_of(info: WavInfo, first: bytes) -> bytes:
    """The data bytes that the first read (``first``, from offset 0) already holds."""
    end = min(len(first), info.data_offset + info.data_bytes)
    if end <= info.data_offset:
        return b""
    return first[info.data_offset : end]


def confirm_span(info: WavInfo, covered: int, length: int = CONFIRM_BYTES) -> tuple[int, int] | None:
    """(offset, length) of the confirming read, centred in the data chunk and frame-aligned;
    None when the first ``covered`` data bytes (the opening) are all the data there is."""
    if info.data_bytes <= covered:
        return None
    align = max(info.block_align, 1)
    length = min(length, info.data_bytes - covered)
    length -= length % align
    if length <= 0:
        return None
    relative = max(covered, (info.data_bytes - length) // 2)
    relative -= relative % align
    return info.data_offset + relative, length


def import_parties(
    read: Reader,
    info: WavInfo,
    first: bytes,
    *,
    confirm_bytes: int = CONFIRM_BYTES,
    silence_dbfs: float = SILENCE_DBFS,
) -> PartiesReport:
    """The parties of a recording at import: the opening (``first``, the bytes the header
    read returned from offset 0) decides when both channels carry sound there; otherwise one
    read of ``confirm_bytes`` in the middle of the call (through ``read``) decides with it."""
    unsupported = _unsupported(info)
    if unsupported is not None:
        return unsupported
    loudest = [0.0, 0.0]
    opening = opening_of(info, first)
    blocks = _measure(info, opening, loudest)
    report = _decide(info, loudest, blocks, 0, silence_dbfs)
    if report.parties is RecordedParties.BOTH:
        return report
    one_sided = report.parties in (RecordedParties.AGENT, RecordedParties.CUSTOMER)
    if one_sided and len(opening) >= DIGITAL_SILENCE_BYTES and min(loudest) == 0.0:
        # One channel carries sound, the other is digital zero for seconds: an unrecorded
        # leg (a recorded one, even quiet, carries the line's noise floor).
        return replace(report, reason="the other channel is digital silence")
    span = confirm_span(info, len(opening), confirm_bytes)
    if span is None:
        return report
    chunk = read(*span)
    chunk = chunk[: len(chunk) - len(chunk) % max(info.block_align, 1)]
    blocks += _measure(info, chunk, loudest)
    return _decide(info, loudest, blocks, len(chunk), silence_dbfs)
