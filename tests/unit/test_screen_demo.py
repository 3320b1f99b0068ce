"""What ``qm-ingest screen demo`` reports about the recording it decrypted: capture times from the
synthetic source's time codes, and for a real display (no time code in its frames) what can be
checked without one, never a time read out of a real frame."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av

from processor.desktop.capture import SyntheticSource, bgra_frame
from processor.desktop.screen_demo import recording_report

START = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def write(path: Path, frames: list[av.VideoFrame]) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(4, 1))
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        for i, given in enumerate(frames):
            frame = given.reformat(format="yuv420p")
            frame.pts, frame.time_base = i, Fraction(1, 4)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))


def test_synthetic_frames_give_their_capture_times(tmp_path: Path) -> None:
    source = SyntheticSource(320, 240)
    frames = [source.grab(START + timedelta(seconds=i / 4), i) for i in range(8)]
    write(tmp_path / "s.mp4", frames)
    lines = recording_report(
        tmp_path / "s.mp4", source="synthetic", start=START, end=START + timedelta(seconds=2)
    )
    assert "first frame captured 2026-06-01T10:00:00.000Z" in lines[1]
    assert "last frame captured  2026-06-01T10:00:01.750Z" in lines[2]


def test_a_real_display_is_not_read_for_time_codes(tmp_path: Path) -> None:
    # A plain white screen: read as a time code it gives the all-ones value (a date in 2039).
    frames = [bgra_frame(320, 240, b"\xff" * (320 * 240 * 4)) for _ in range(8)]
    write(tmp_path / "r.mp4", frames)
    lines = recording_report(
        tmp_path / "r.mp4", source="screen", start=START, end=START + timedelta(seconds=2)
    )
    text = "\n".join(lines)
    assert "captured" not in text.replace("capture times are checked", "")
    assert "2039" not in text
    assert "8 frames" in text and "no time code" in text
