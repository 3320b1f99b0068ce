"""Frame sources: the real display (mss) and a synthetic source for tests and demos.

The synthetic source burns the capture's wall-clock time and a frame counter into every
frame twice: as text for people, and as a block code that survives H.264 compression,
for tests that check which frame a recording starts and ends on.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import av

#: Block code: 64 bits (24-bit frame counter + 40-bit capture time in ms) in 2 rows of 32.
CODE_BITS = 64
CODE_COLUMNS = 32
CODE_ROWS = 2
_COUNTER_BITS = 24
_TIME_BITS = 40


class FrameSource(Protocol):
    """Something that yields a picture of the screen on demand."""

    def grab(self, at: datetime, index: int) -> av.VideoFrame: ...

    def close(self) -> None: ...


def bgra_frame(width: int, height: int, data: bytes | memoryview) -> av.VideoFrame:
    """A PyAV frame from tightly packed BGRA rows (copied row by row when the frame pads)."""
    frame = av.VideoFrame(width, height, "bgra")
    plane = frame.planes[0]
    row = width * 4
    if plane.line_size == row:
        plane.update(bytes(data))
    else:
        padding = b"\0" * (plane.line_size - row)
        view = memoryview(data)
        plane.update(b"".join(bytes(view[y * row : (y + 1) * row]) + padding for y in range(height)))
    return frame


class ScreenSource:
    """The real display through mss (X11 on Linux, GDI on Windows, Quartz on macOS).

    mss handles are per thread, so the recorder thread opens its own on first use.
    """

    def __init__(self, monitor: int = 1) -> None:
        self._monitor = monitor
        self._local = threading.local()

    def _mss(self) -> Any:
        handle = getattr(self._local, "mss", None)
        if handle is None:
            import mss

            factory = getattr(mss, "MSS", None) or mss.mss  # mss 10 renamed the factory
            handle = factory()
            self._local.mss = handle
        return handle

    def grab(self, at: datetime, index: int) -> av.VideoFrame:
        shot = self._mss().grab(self._mss().monitors[self._monitor])
        return bgra_frame(shot.width, shot.height, shot.bgra)

    def close(self) -> None:
        handle = getattr(self._local, "mss", None)
        if handle is not None:
            handle.close()
            self._local.mss = None


def encode_code(counter: int, at: datetime) -> list[int]:
    millis = int(at.timestamp() * 1000) % (1 << _TIME_BITS)
    value = ((counter % (1 << _COUNTER_BITS)) << _TIME_BITS) | millis
    return [(value >> (CODE_BITS - 1 - i)) & 1 for i in range(CODE_BITS)]


@dataclass(frozen=True)
class FrameCode:
    counter: int
    millis: int  # capture time in ms since the epoch, modulo 2**40

    def captured_at(self, near: datetime) -> datetime:
        """The full capture time, given any instant within ~17 years of it."""
        base = int(near.timestamp() * 1000)
        period = 1 << _TIME_BITS
        candidate = base - (base % period) + self.millis
        if candidate - base > period // 2:
            candidate -= period
        elif base - candidate > period // 2:
            candidate += period
        return datetime.fromtimestamp(candidate / 1000, tz=UTC)


def _block(width: int) -> int:
    return max(8, width // CODE_COLUMNS)


class SyntheticSource:
    """Frames drawn from the capture time: time and counter as text and as a block code."""

    def __init__(self, width: int = 1280, height: int = 720) -> None:
        from PIL import ImageFont

        self.width, self.height = width, height
        self._font = ImageFont.load_default(size=max(12, height // 12))

    def grab(self, at: datetime, index: int) -> av.VideoFrame:
        from PIL import Image, ImageDraw

        shade = (index * 3) % 160
        image = Image.new("RGB", (self.width, self.height), (40 + shade // 2, 60, 90 + shade // 3))
        draw = ImageDraw.Draw(image)
        stamp = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
        draw.text((self.width // 20, self.height // 5), stamp, fill=(255, 255, 255), font=self._font)
        draw.text(
            (self.width // 20, self.height // 5 * 2), f"frame {index}", fill=(255, 255, 0), font=self._font
        )
        block = _block(self.width)
        top = self.height - CODE_ROWS * block
        for i, bit in enumerate(encode_code(index, at)):
            x, y = (i % CODE_COLUMNS) * block, top + (i // CODE_COLUMNS) * block
            draw.rectangle((x, y, x + block - 1, y + block - 1), fill=(255, 255, 255) if bit else (0, 0, 0))
        frame: av.VideoFrame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
        return frame

    def close(self) -> None:
        return None


def read_code(frame: av.VideoFrame) -> FrameCode:
    """The block code of a decoded synthetic frame (samples the centre of each block)."""
    gray = frame.reformat(format="gray")
    plane = gray.planes[0]
    data = bytes(plane)
    stride = plane.line_size
    block = _block(gray.width)
    top = gray.height - CODE_ROWS * block
    value = 0
    margin = block // 4
    for i in range(CODE_BITS):
        x0, y0 = (i % CODE_COLUMNS) * block + margin, top + (i // CODE_COLUMNS) * block + margin
        total = count = 0
        for y in range(y0, y0 + block - 2 * margin):
            row = data[y * stride + x0 : y * stride + x0 + block - 2 * margin]
            total += sum(row)
            count += len(row)
        value = (value << 1) | (1 if total / max(1, count) > 128 else 0)
    return FrameCode(counter=value >> _TIME_BITS, millis=value & ((1 << _TIME_BITS) - 1))
