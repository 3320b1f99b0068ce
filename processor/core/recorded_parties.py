"""Recorded parties: which channel of a stereo call recording carries audio.

Amazon Connect writes stereo recordings with the customer on the left channel and the
agent on the right; the contact flow's "Set call recording behavior" block records the
agent, the customer or both, and an unrecorded party's channel is silent. The decision
comes from a few small blocks read at spots spread through the data chunk (ranged reads
through the injected ``read``), never from the whole file. Pure: no I/O of its own.
"""

from __future__ import annotations

import math
import sys
from array import array
from dataclasses import dataclass
from enum import StrEnum

from processor.core.wav import FORMAT_PCM, Reader, WavInfo

#: Blocks read through the recording, and the size of each (a few KiB per read).
DEFAULT_BLOCKS = 12
DEFAULT_BLOCK_BYTES = 4096
#: A block whose RMS level is above this carries sound; line noise of a muted leg sits far below.
SILENCE_DBFS = -50.0
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
    bytes_read: int
    reason: str | None = None


def _dbfs(rms: float, full_scale: float) -> float:
    return -120.0 if rms <= 0 else max(-120.0, 20.0 * math.log10(rms / full_scale))


def _channel_rms(block: bytes, channels: int, bits: int) -> list[float]:
    if bits == 16:
        samples = array("h")
        usable = len(block) - len(block) % (2 * channels)
        samples.frombytes(block[:usable])
        if sys.byteorder == "big":
            samples.byteswap()  # WAV samples are little-endian
        values: list[int] = list(samples)
    else:  # 8-bit PCM is unsigned, centred on 128
        usable = len(block) - len(block) % channels
        values = [b - 128 for b in block[:usable]]
    out = []
    for channel in range(channels):
        own = values[channel::channels]
        out.append(math.sqrt(sum(v * v for v in own) / len(own)) if own else 0.0)
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


def recorded_parties(
    read: Reader,
    info: WavInfo,
    *,
    blocks: int = DEFAULT_BLOCKS,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    silence_dbfs: float = SILENCE_DBFS,
) -> PartiesReport:
    """Which parties ``info``'s recording carries, from ``blocks`` ranged reads of ``block_bytes``."""
    if info.format_tag != FORMAT_PCM or info.bits_per_sample not in (8, 16):
        return PartiesReport(
            RecordedParties.UNKNOWN, None, None, 0, 0, f"unsupported sample format {info.format_tag}"
        )
    if info.channels != 2:
        return PartiesReport(
            RecordedParties.UNKNOWN, None, None, 0, 0, f"{info.channels} channel(s): parties are mixed"
        )
    full_scale = 32768.0 if info.bits_per_sample == 16 else 128.0
    loudest = [0.0, 0.0]
    read_bytes = 0
    spots = block_offsets(info, blocks, block_bytes)
    for offset, length in spots:
        block = read(offset, length)
        read_bytes += len(block)
        for channel, rms in enumerate(_channel_rms(block, 2, info.bits_per_sample)):
            loudest[channel] = max(loudest[channel], rms)
    customer = _dbfs(loudest[CUSTOMER_CHANNEL], full_scale)
    agent = _dbfs(loudest[AGENT_CHANNEL], full_scale)
    if not spots:
        return PartiesReport(RecordedParties.NONE, None, None, 0, 0, "empty data chunk")
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
    return PartiesReport(parties, round(customer, 1), round(agent, 1), len(spots), read_bytes)
