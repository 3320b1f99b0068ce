"""Recording and splicing with real encoding and encryption, on a simulated clock.

Synthetic frames carry their capture time and counter as a block code; the spliced
output is decoded and its first and last frames are read back.
"""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import pytest

from processor.core.screen_timeline import Interval
from processor.desktop.capture import SyntheticSource, read_code
from processor.desktop.clock import SimulatedClock
from processor.desktop.journal import Journal, SegmentState
from processor.desktop.recorder import Recorder
from processor.desktop.segments import DesktopKey, EncoderSettings, SegmentStore
from processor.desktop.splice import SegmentMedia, probe_duration, splice

T0 = datetime(2026, 3, 2, 9, 0, 0, 123000, tzinfo=UTC)
FPS = 5
FRAME = timedelta(seconds=1 / FPS)
SEGMENT_SECONDS = 20


class JitteryClock(SimulatedClock):
    """Captures land a few ms late, as on a busy PC."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._n = 0

    def sleep(self, seconds: float, stop=None) -> bool:  # type: ignore[no-untyped-def]
        self._n += 1
        return super().sleep(seconds + (self._n % 7) * 0.003, stop)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[SegmentStore, list[SegmentMedia]]:
    folder = tmp_path_factory.mktemp("desktop")
    journal = Journal(folder / "journal.sqlite")
    store = SegmentStore(folder / "segments", journal, DesktopKey(folder / "desktop-key.pem"))
    clock = JitteryClock(T0)
    recorder = Recorder(
        store,
        SyntheticSource(320, 180),
        clock,
        encoder=EncoderSettings(fps=FPS, fsync=False),
        segment_seconds=SEGMENT_SECONDS,
    )
    recorder.record_until(T0 + timedelta(seconds=70))
    recorder.stop()
    rows = journal.segments()
    media = [SegmentMedia(r.segment_id, r.start, store.plaintext(r)) for r in rows]
    return store, media


def decoded(mp4: bytes) -> list[tuple[float, datetime, int]]:
    """(time in the output, capture time, counter) of every shown frame."""
    out = []
    with av.open(io.BytesIO(mp4)) as container:
        for frame in container.decode(container.streams.video[0]):
            code = read_code(frame)
            out.append((float(frame.pts * frame.time_base), code.captured_at(T0), code.counter))
    return out


def test_segments_roll_over_without_losing_frames(recorded) -> None:
    store, media = recorded
    rows = store.journal.segments()
    assert [r.state for r in rows] == [SegmentState.COMPLETE] * 4  # 0-20, 20-40, 40-60, 60-70
    for earlier, later in itertools.pairwise(rows):
        assert earlier.end == later.start  # one segment ends where the next begins
    counters = []
    for item in media:
        counters.extend(c for _, _, c in decoded(item.mp4))
    assert counters == list(range(len(counters)))  # every captured frame, once, in order
    assert abs((rows[1].start - rows[0].start).total_seconds() - SEGMENT_SECONDS) < 0.25
    # Keyframe at least every second: every fragment starts with one.
    with av.open(io.BytesIO(media[0].mp4)) as container:
        stream = container.streams.video[0]
        keys = [
            float(p.pts * stream.time_base)
            for p in container.demux(stream)
            if p.pts is not None and p.is_keyframe
        ]
    assert max(b - a for a, b in itertools.pairwise(keys)) <= 1.05


@pytest.mark.parametrize(
    ("start", "end", "segments"),
    [(13.37, 31.05, 2), (7.3, 52.91, 3), (21.0, 21.9, 1)],
    ids=["two-segments", "three-segments", "sub-second"],
)
def test_splice_starts_and_ends_on_the_contact_within_one_frame(recorded, start, end, segments) -> None:
    _, media = recorded
    interval = Interval(T0 + timedelta(seconds=start), T0 + timedelta(seconds=end))
    used = [m for m in media if m.start < interval.end]
    result = splice(used, interval)
    assert len(result.covered) == segments
    frames = decoded(result.mp4)
    first_time, first_at, _ = frames[0]
    _, last_at, _ = frames[-1]
    assert first_time == 0.0
    # The first frame is the one on screen at the contact's start; the last, at its end.
    assert timedelta(0) <= interval.start - first_at <= FRAME
    assert timedelta(0) < interval.end - last_at <= FRAME
    assert abs(probe_duration(result.mp4) - (end - start)) < 0.5
    assert abs(result.duration_seconds - (end - start)) < 0.5
    # Frames are shown at their capture time on the contact's timeline.
    for shown_at, captured_at, _ in frames[1:]:
        assert abs(shown_at - (captured_at - interval.start).total_seconds()) < 0.002
    counters = [c for _, _, c in frames]
    assert counters == list(range(counters[0], counters[0] + len(counters)))


def test_contact_before_recording_starts_on_the_contact_timeline(recorded) -> None:
    _, media = recorded
    interval = Interval(T0 - timedelta(seconds=4), T0 + timedelta(seconds=6))
    result = splice(media[:1], interval)
    frames = decoded(result.mp4)
    assert abs(frames[0][0] - 4.0) < 0.01  # nothing recorded for 4 s: first frame at 4 s
    assert result.covered == [Interval(T0, interval.end)]
    assert result.duration_seconds == pytest.approx(10.0, abs=0.01)


def test_crashed_segment_is_recovered_up_to_its_last_fragment(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    store = SegmentStore(tmp_path / "segments", journal, DesktopKey(tmp_path / "key.pem"))
    recorder = Recorder(
        store,
        SyntheticSource(320, 180),
        SimulatedClock(T0),
        encoder=EncoderSettings(fps=FPS, fsync=False),
        segment_seconds=600,
    )
    recorder.record_until(T0 + timedelta(seconds=7.5))
    recorder.abandon()  # what kill -9 leaves: an open segment, its last fragment unsealed
    (row,) = journal.segments(SegmentState.OPEN)
    with pytest.raises(Exception, match=r"final chunk|ends inside"):
        from processor.core.envelope import EnvelopeReader

        with open(store.folder / row.file, "rb") as handle:
            EnvelopeReader(handle, store._data_key(row.segment_id)).read_all()
    recovered = store.recover(row)
    assert recovered.end is not None
    # Whole fragments (1 s each) survive: 7 of the 7.5 s recorded.
    assert T0 + timedelta(seconds=6.9) <= recovered.end <= T0 + timedelta(seconds=7.5)
    journal.segment_closed(
        row.segment_id, recovered.end, recovered.size, recovered.frames, SegmentState.COMPLETE
    )
    (closed,) = journal.segments()
    frames = decoded(store.plaintext(closed))
    assert [c for _, _, c in frames] == list(range(recovered.frames))
