"""The screen recorder: frames at a low, steady rate into ten-minute encrypted segments.

One thread captures a frame every 1/fps seconds (on its clock), encodes it at once, and
rolls over to a new segment on the boundary: the frame that crosses the boundary is the
first frame of the next segment, so no frame is lost and one segment's end is exactly
the next one's start. A frame that is late is captured late (its timestamp is when it
was taken); frames that fell behind are skipped, never queued.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from processor.desktop.capture import FrameSource
from processor.desktop.clock import Clock
from processor.desktop.journal import SegmentState
from processor.desktop.segments import EncoderSettings, SegmentStore, SegmentWriter
from processor.platform.logs import get_logger

log = get_logger("processor.desktop.recorder")


class Recorder:
    def __init__(
        self,
        store: SegmentStore,
        source: FrameSource,
        clock: Clock,
        *,
        encoder: EncoderSettings,
        segment_seconds: float,
        on_segment_closed: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._source = source
        self._clock = clock
        self._encoder = encoder
        self._segment = timedelta(seconds=segment_seconds)
        self._period = 1.0 / encoder.fps
        self._on_closed = on_segment_closed
        self._writer: SegmentWriter | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counter = 0
        self.error: BaseException | None = None

    @property
    def recording(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.recording:
            return
        self._stop.clear()
        self.error = None
        self._thread = threading.Thread(target=self._run, name="screen-recorder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop capturing and finish the current segment (durable on return)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._finish(self._clock.now())

    def record_until(self, until: datetime) -> None:
        """Capture in the calling thread until ``until`` (on the clock), segment left open."""
        self._stop.clear()
        self._loop(until)

    def _run(self) -> None:
        try:
            self._loop(None)
        except BaseException as exc:  # the agent loop sees it and reports it
            self.error = exc
            log.error("screen capture failed", error=str(exc), error_type=type(exc).__name__)

    def _loop(self, until: datetime | None) -> None:
        due = self._clock.now()
        while not self._stop.is_set():
            now = self._clock.now()
            if until is not None and now >= until:
                return
            if now < due:
                if self._clock.sleep((due - now).total_seconds(), self._stop):
                    return
                continue
            self.capture_one(now)
            due += timedelta(seconds=self._period)
            now = self._clock.now()
            due = max(due, now)  # fell behind: skip, do not queue

    def capture_one(self, at: datetime) -> None:
        frame = self._source.grab(at, self._counter)
        with self._lock:
            writer = self._writer
            if writer is not None and at - writer.start >= self._segment:
                self._close(writer, at)
                writer = None
            if writer is None:
                writer = self._store.create(at, self._encoder)
                self._writer = writer
                log.info("segment started", segment_id=writer.segment_id, start=at.isoformat())
            if writer.add(frame, at):
                self._counter += 1

    def _finish(self, now: datetime) -> None:
        with self._lock:
            writer, self._writer = self._writer, None
            if writer is None:
                return
            last = writer.last_at or writer.start
            end = min(max(now, last + timedelta(milliseconds=1)), last + timedelta(seconds=self._period))
            self._close(writer, end)

    def _close(self, writer: SegmentWriter, end: datetime) -> None:
        size = writer.close(end)
        self._writer = None
        self._store.journal.segment_closed(writer.segment_id, end, size, writer.frames, SegmentState.COMPLETE)
        log.info(
            "segment finished",
            segment_id=writer.segment_id,
            start=writer.start.isoformat(),
            end=end.isoformat(),
            frames=writer.frames,
            bytes=size,
        )
        if self._on_closed:
            self._on_closed(writer.segment_id)

    def current_flushed_until(self) -> datetime | None:
        with self._lock:
            writer = self._writer
        if writer is None:
            return None
        row = self._store.journal.segment(writer.segment_id)
        return row.flushed_until if row else None

    def abandon(self) -> None:
        """Drop the open segment as a crash would (tests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._writer is not None:
                self._writer.abandon()
                self._writer = None
