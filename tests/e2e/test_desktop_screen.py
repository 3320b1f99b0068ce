"""Real screen capture: the recorder on an X display served by Xvfb (installed by
``make install``), through mss, into an encrypted segment."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import av
import pytest

from processor.desktop.capture import ScreenSource
from processor.desktop.clock import SystemClock
from processor.desktop.journal import Journal
from processor.desktop.recorder import Recorder
from processor.desktop.segments import DesktopKey, EncoderSettings, SegmentStore

pytestmark = pytest.mark.e2e


@pytest.fixture
def display(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    xvfb = shutil.which("Xvfb")
    assert xvfb, "Xvfb is missing: `make install` installs it"
    # Xvfb picks a free display number itself and writes it to the pipe (parallel test
    # processes never race for one).
    read_end, write_end = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write_end), "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_end,),
    )
    os.close(write_end)
    with os.fdopen(read_end) as announced:
        number = announced.readline().strip()
    assert number.isdigit() and proc.poll() is None, "Xvfb did not start"
    name = f":{number}"
    monkeypatch.setenv("DISPLAY", name)
    yield name
    proc.terminate()
    proc.wait(timeout=10)


def test_records_the_real_display(display: str, tmp_path: Path) -> None:
    assert os.environ["DISPLAY"] == display
    journal = Journal(tmp_path / "journal.sqlite")
    store = SegmentStore(tmp_path / "segments", journal, DesktopKey(tmp_path / "key.pem"))
    recorder = Recorder(
        store, ScreenSource(1), SystemClock(), encoder=EncoderSettings(fps=5), segment_seconds=600
    )
    recorder.start()
    time.sleep(2.5)
    recorder.stop()
    assert recorder.error is None
    (row,) = journal.segments()
    assert b"ftyp" not in (store.folder / row.file).read_bytes()  # encrypted at rest
    with av.open(io.BytesIO(store.plaintext(row))) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.name, stream.width, stream.height) == ("h264", 800, 600)
        frames = list(container.decode(stream))
    assert 10 <= len(frames) <= 14  # 2.5 s at 5 fps
