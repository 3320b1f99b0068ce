"""Screen segments on disk: H.264 in fragmented MP4, encrypted as it is written.

A segment file is an envelope (``processor.core.envelope``, purpose SEGMENT) whose
plaintext is a fragmented MP4: ``ftyp``+``moov`` first, then one ``moof``+``mdat``
fragment per second (a keyframe starts each). The muxer hands every finished fragment to
the envelope, which seals it as one chunk; so the plaintext never touches the disk, and
a segment cut off by a crash or a power-off is readable up to its last whole fragment.

Frame timestamps are the capture's wall-clock time in milliseconds since the segment's
start, so splicing maps contact times to frames exactly.
"""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from processor.core.envelope import (
    EnvelopeReader,
    EnvelopeWriter,
    Purpose,
    new_data_key,
    seal_truncated,
    unwrap_key,
    wrap_key,
)
from processor.desktop.journal import Journal, SegmentRow, SegmentState
from processor.platform.exceptions import EnvelopeError, SegmentUnavailable

MS = Fraction(1, 1000)
SEGMENT_SUFFIX = ".qmseg"
FRAGMENT_OPTIONS = {
    # A fragment per keyframe, header first, and every packet handed to us at once:
    # a crash loses at most the fragment being written.
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "flush_packets": "1",
    "video_track_timescale": "1000",
}


class DesktopKey:
    """The desktop's own RSA-2048 key pair: wraps the data keys of its segments.

    The private key file is readable by its owner only; segment keys wrapped with it are
    kept in the journal and destroyed with their segment.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        if path.exists():
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise EnvelopeError(f"{path} is not an RSA private key")
            self._private = loaded
        else:
            self._private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.parent.mkdir(parents=True, exist_ok=True)
            pem = self._private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        self.public_pem = self._private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def wrap(self, data_key: bytes) -> bytes:
        return wrap_key(data_key, self.public_pem)

    def unwrap(self, wrapped: bytes) -> bytes:
        return unwrap_key(wrapped, self._private)


class _EnvelopeSink:
    """What PyAV writes to: no ``seek``, so the muxer streams (fragmented MP4)."""

    def __init__(self, envelope: EnvelopeWriter) -> None:
        self._envelope = envelope

    def write(self, data: bytes) -> int:
        return self._envelope.write(data)

    def flush(self) -> None:
        return None


@dataclass
class EncoderSettings:
    fps: float = 5.0
    crf: int = 28
    preset: str = "veryfast"
    keyframe_seconds: float = 1.0
    fsync: bool = True


class SegmentWriter:
    """One segment being recorded. ``add`` frames in capture order, then ``close``."""

    def __init__(
        self,
        path: Path,
        data_key: bytes,
        *,
        segment_id: str,
        start: datetime,
        encoder: EncoderSettings,
        on_flush: Callable[[datetime, int, int], None] | None = None,
    ) -> None:
        self.path = path
        self.segment_id = segment_id
        self.start = start
        self._encoder = encoder
        self._on_flush = on_flush
        self._file = open(path, "xb")  # noqa: SIM115 - closed in close()
        self._envelope = EnvelopeWriter(
            self._file,
            data_key,
            purpose=Purpose.SEGMENT,
            key_id=f"segment:{segment_id}",
            metadata={
                "segment_id": segment_id,
                "start": start.isoformat(),
                "fps": encoder.fps,
                "codec": "h264",
            },
            fsync=encoder.fsync,
        )
        self._container: Any = None
        self._stream: Any = None
        self._held: Any = None
        self._last_pts = -1
        self._last_key_pts: int | None = None
        self.frames = 0
        self.last_at: datetime | None = None

    @property
    def size(self) -> int:
        return self._envelope.bytes_written

    def _open(self, width: int, height: int) -> None:
        self._container = av.open(_EnvelopeSink(self._envelope), "w", format="mp4", options=FRAGMENT_OPTIONS)
        stream = self._container.add_stream(
            "libx264", rate=Fraction(self._encoder.fps).limit_denominator(1000)
        )
        stream.width, stream.height = width - width % 2, height - height % 2  # yuv420p needs even sizes
        stream.pix_fmt = "yuv420p"
        stream.time_base = MS
        stream.codec_context.time_base = MS
        stream.codec_context.gop_size = max(2, round(2 * self._encoder.fps * self._encoder.keyframe_seconds))
        stream.codec_context.options = {
            "preset": self._encoder.preset,
            "tune": "zerolatency",  # no frame delay, no B-frames: pts == dts, cut anywhere
            "crf": str(self._encoder.crf),
            "forced-idr": "1",
        }
        self._stream = stream

    def add(self, frame: av.VideoFrame, at: datetime) -> bool:
        """Encode one frame captured at ``at``; False when it is not after the previous one."""
        pts = round((at - self.start) / timedelta(milliseconds=1))
        if pts <= self._last_pts:
            return False
        if self._container is None:
            self._open(frame.width, frame.height)
        frame.pts = pts
        frame.time_base = MS
        # Half a frame early rather than one frame late: a keyframe at least every second.
        keyframe_ms = round((self._encoder.keyframe_seconds - 0.5 / self._encoder.fps) * 1000)
        if self._last_key_pts is None or pts - self._last_key_pts >= keyframe_ms:
            frame.pict_type = av.video.frame.PictureType.I
            self._last_key_pts = pts
        else:
            frame.pict_type = av.video.frame.PictureType.NONE
        self._last_pts = pts
        for packet in self._stream.encode(frame):
            self._push(packet)
        self.frames += 1
        self.last_at = at
        return True

    def _push(self, packet: Any) -> None:
        held, self._held = self._held, packet
        if held is None:
            return
        # The muxer needs each frame's duration; it is known once the next frame exists.
        held.duration = max(1, int(packet.pts) - int(held.pts))
        self._mux(held)

    def _mux(self, packet: Any) -> None:
        keyframe = packet.is_keyframe
        pts = int(packet.pts)
        self._container.mux(packet)
        if keyframe:
            # Muxing a keyframe wrote out the previous fragment: seal it as one chunk.
            self._envelope.seal_chunk()
            if self._on_flush:
                self._on_flush(self.start + timedelta(milliseconds=pts), self.size, self.frames)

    def close(self, end: datetime) -> int:
        """Finish the segment at ``end`` (the last frame lasts until then); returns its size."""
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._push(packet)
            if self._held is not None:
                end_ms = round((end - self.start) / timedelta(milliseconds=1))
                self._held.duration = max(1, end_ms - int(self._held.pts))
                self._container.mux(self._held)
                self._held = None
            self._container.close()
        self._envelope.close()
        self._file.close()
        return self.size

    def abandon(self) -> None:
        """Close the file without finishing it (tests: what a crash leaves behind)."""
        self._file.close()


def new_segment_id(start: datetime) -> str:
    return f"seg-{start.strftime('%Y%m%dT%H%M%S')}{start.microsecond // 1000:03d}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class RecoveredSegment:
    segment_id: str
    end: datetime | None  # None: nothing whole was left
    frames: int
    size: int


class SegmentStore:
    """Segment files in the agent's folder and their keys in the journal."""

    def __init__(self, folder: Path, journal: Journal, key: DesktopKey) -> None:
        self.folder = folder
        self.journal = journal
        self.key = key
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, segment_id: str) -> Path:
        return self.folder / f"{segment_id}{SEGMENT_SUFFIX}"

    def create(self, start: datetime, encoder: EncoderSettings) -> SegmentWriter:
        segment_id = new_segment_id(start)
        data_key = new_data_key()
        self.journal.add_segment(segment_id, self.path(segment_id).name, start, self.key.wrap(data_key))

        def flushed(until: datetime, size: int, frames: int) -> None:
            self.journal.segment_flushed(segment_id, until, size, frames)

        return SegmentWriter(
            self.path(segment_id),
            data_key,
            segment_id=segment_id,
            start=start,
            encoder=encoder,
            on_flush=flushed,
        )

    def _data_key(self, segment_id: str) -> bytes:
        wrapped = self.journal.segment_key(segment_id)
        if wrapped is None:
            raise SegmentUnavailable(f"segment {segment_id} has no key (deleted)")
        return self.key.unwrap(wrapped)

    def plaintext(self, row: SegmentRow) -> bytes:
        """The segment's MP4, decrypted in memory; an open segment up to its last whole
        fragment. Raises :class:`EnvelopeError` when it was tampered with or truncated."""
        data_key = self._data_key(row.segment_id)
        try:
            with open(self.folder / row.file, "rb") as handle:
                return EnvelopeReader(handle, data_key).read_all(
                    allow_truncated=row.state == SegmentState.OPEN
                )
        except FileNotFoundError:
            raise SegmentUnavailable(f"segment file {row.file} is missing") from None

    def recover(self, row: SegmentRow) -> RecoveredSegment:
        """A segment left open by a crash: keep its whole fragments, seal it, find its end."""
        path = self.folder / row.file
        if not path.exists():
            return RecoveredSegment(row.segment_id, None, 0, 0)
        with open(path, "r+b") as handle:
            scan, plaintext = seal_truncated(handle, self._data_key(row.segment_id))
        end_ms, frames = media_extent(plaintext)
        end = row.start + timedelta(milliseconds=end_ms) if frames else None
        return RecoveredSegment(row.segment_id, end, frames, scan.valid_end)

    def delete(self, row: SegmentRow, now: datetime, reason: str) -> None:
        """Destroy the key first (the file is unreadable from then on), then the file."""
        self.journal.segment_deleted(row.segment_id, now, reason)
        (self.folder / row.file).unlink(missing_ok=True)


def media_extent(mp4: bytes) -> tuple[int, int]:
    """(end of the last frame in ms, frame count) of a segment's MP4 (0, 0 if none)."""
    if not mp4:
        return 0, 0
    try:
        with av.open(io.BytesIO(mp4), "r") as container:
            stream = container.streams.video[0]
            base = stream.time_base or MS
            end, frames = 0, 0
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                ms = int(packet.pts * base * 1000)
                duration = int((packet.duration or 0) * base * 1000)
                end = max(end, ms + duration)
                frames += 1
            return end, frames
    except (av.error.InvalidDataError, IndexError):
        return 0, 0
