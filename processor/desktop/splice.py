"""Crop and splice segments into one MP4 for a contact, by stream copy (no re-encoding).

The output timeline is the contact's: time 0 is the contact's start.

* Start: the frame on screen at the contact's start is the latest frame captured at or
  before it; it gets time 0. Frames from the preceding keyframe up to it are kept as
  pre-roll with negative times, which the MP4 edit list hides (players and FFmpeg decode
  them but do not show them): a cut at any frame, not only at keyframes.
* End: the last frame captured before the contact's end lasts until the end.
* A contact that starts before the first recorded frame starts with an empty edit; a
  hole inside (PC off, logged out) holds the last frame. Gaps are reported separately.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fractions import Fraction
from typing import Any

import av

from processor.core.screen_timeline import Interval

MS = Fraction(1, 1000)


@dataclass(frozen=True)
class SegmentMedia:
    segment_id: str
    start: datetime
    mp4: bytes


@dataclass
class SpliceResult:
    mp4: bytes
    duration_seconds: float
    covered: list[Interval]
    frames: int  # frames shown (pre-roll excluded)
    first_frame_at: datetime | None
    last_frame_at: datetime | None
    skipped_segments: list[str] = field(default_factory=list)  # other stream parameters


@dataclass
class _Frame:
    at: datetime
    end: datetime
    keyframe: bool
    packet: Any
    segment: int


def _params(stream: Any) -> tuple[Any, ...]:
    ctx = stream.codec_context
    return (ctx.name, ctx.width, ctx.height, bytes(ctx.extradata or b""))


def _ms(delta: timedelta) -> int:
    return round(delta / timedelta(milliseconds=1))


def splice(media: list[SegmentMedia], interval: Interval) -> SpliceResult:
    """One MP4 of ``interval`` from the segments (oldest first) that overlap it."""
    containers = []
    frames: list[_Frame] = []
    template: Any = None
    reference: tuple[Any, ...] | None = None
    skipped: list[str] = []
    covered: list[Interval] = []
    try:
        for index, item in enumerate(sorted(media, key=lambda m: m.start)):
            container = av.open(io.BytesIO(item.mp4), "r")
            containers.append(container)
            stream = container.streams.video[0]
            base = stream.time_base or MS
            params = _params(stream)
            if reference is None:
                reference, template = params, stream
            elif params != reference:
                skipped.append(item.segment_id)
                continue
            seg_frames: list[_Frame] = []
            for packet in container.demux(stream):
                if packet.pts is None or packet.size == 0:
                    continue
                at = item.start + timedelta(milliseconds=float(packet.pts * base * 1000))
                length = timedelta(milliseconds=float((packet.duration or 0) * base * 1000))
                seg_frames.append(_Frame(at, at + length, packet.is_keyframe, packet, index))
            if seg_frames:
                frames.extend(seg_frames)
                span = Interval(seg_frames[0].at, seg_frames[-1].end)
                if span.overlaps(interval):
                    covered.append(Interval(max(span.start, interval.start), min(span.end, interval.end)))
        return _cut(frames, template, interval, covered, skipped)
    finally:
        for container in containers:
            container.close()


def _cut(
    frames: list[_Frame], template: Any, interval: Interval, covered: list[Interval], skipped: list[str]
) -> SpliceResult:
    start, end = interval.start, interval.end
    shown = [i for i, f in enumerate(frames) if f.at < end and f.end > start]
    if template is None or not shown:
        return SpliceResult(b"", 0.0, [], 0, None, None, skipped)
    first = shown[0]
    # Pre-roll: back to the keyframe that the first shown frame depends on.
    key = first
    while not frames[key].keyframe or frames[key].segment != frames[first].segment:
        key -= 1
        if key < 0 or frames[key].segment != frames[first].segment:
            raise ValueError("segment does not start with a keyframe")
    chosen = frames[key : shown[-1] + 1]
    out_buffer = io.BytesIO()
    output = av.open(out_buffer, "w", format="mp4")
    try:
        stream = output.add_stream_from_template(template)
        stream.time_base = MS
        last_pts: int | None = None
        times: list[int] = []
        for offset, frame in enumerate(chosen):
            pts = _ms(frame.at - start)
            if key + offset == first:
                pts = max(pts, 0)  # on screen at the contact's start: shown from time 0
            if last_pts is not None and pts <= last_pts:
                pts = last_pts + 1
            times.append(pts)
            last_pts = pts
        end_ms = max(_ms(min(end, chosen[-1].end) - start), times[-1] + 1)
        for offset, frame in enumerate(chosen):
            packet = frame.packet
            following = times[offset + 1] if offset + 1 < len(times) else end_ms
            packet.stream = stream
            packet.time_base = MS
            packet.pts = packet.dts = times[offset]
            packet.duration = max(1, following - times[offset])
            output.mux(packet)
    finally:
        output.close()
    mp4 = out_buffer.getvalue()
    visible = chosen[first - key :]
    return SpliceResult(
        mp4=mp4,
        duration_seconds=end_ms / 1000,  # the contact timeline from 0, leading empty edit included
        covered=covered,
        frames=len(visible),
        first_frame_at=visible[0].at,
        last_frame_at=visible[-1].at,
        skipped_segments=skipped,
    )


def probe_duration(mp4: bytes) -> float:
    """Duration of an MP4 in seconds as players see it (edit lists applied)."""
    with av.open(io.BytesIO(mp4), "r") as container:
        return float(container.duration or 0) / 1_000_000
