"""qm-desktop: splice vs re-encode, envelope vs raw AES-GCM, CPU of capture + encode under Xvfb.

1. A 12-minute contact across two 10-minute segments (640x360 synthetic, 5 fps): the
   whole extraction (decrypt both segments, stream-copy splice, encrypt for the server)
   against decoding and re-encoding the same interval with the same encoder settings.
2. The envelope (chunked AES-256-GCM, header hash as associated data) against
   ``cryptography``'s AESGCM on the same 1 MiB chunks of the same 64 MiB.
3. CPU share of one core for capture + H.264 encoding of a 1920x1080 Xvfb display at
   5 fps (a window redrawing a clock and a moving block), against capture alone.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bench.common import line, timed
from processor.core.envelope import (
    EnvelopeReader,
    KeyWrap,
    Purpose,
    encrypt_bytes,
    encrypt_for_server,
    new_data_key,
)
from processor.core.screen_timeline import Interval
from processor.desktop.capture import ScreenSource, SyntheticSource
from processor.desktop.clock import SimulatedClock, SystemClock
from processor.desktop.journal import Journal
from processor.desktop.recorder import Recorder
from processor.desktop.segments import DesktopKey, EncoderSettings, SegmentStore
from processor.desktop.splice import SegmentMedia, splice

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
MIB = 1024 * 1024


def _record(folder: Path, minutes: float) -> SegmentStore:
    journal = Journal(folder / "journal.sqlite")
    store = SegmentStore(folder / "segments", journal, DesktopKey(folder / "key.pem"))
    recorder = Recorder(
        store,
        SyntheticSource(640, 360),
        SimulatedClock(T0),
        encoder=EncoderSettings(fsync=False),
        segment_seconds=600,
    )
    recorder.record_until(T0 + timedelta(minutes=minutes))
    recorder.stop()
    return store


def _reencode(media: list[SegmentMedia], interval: Interval) -> bytes:
    out_buffer = io.BytesIO()
    output = av.open(out_buffer, "w", format="mp4")
    stream = output.add_stream("libx264", rate=5)
    stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
    stream.codec_context.time_base = Fraction(1, 1000)
    stream.codec_context.options = {"preset": "veryfast", "tune": "zerolatency", "crf": "28"}
    last = -1
    for item in media:
        with av.open(io.BytesIO(item.mp4)) as container:
            for frame in container.decode(container.streams.video[0]):
                at = item.start + timedelta(seconds=float(frame.pts * frame.time_base))
                if not interval.start <= at < interval.end:
                    continue
                pts = round((at - interval.start).total_seconds() * 1000)
                if pts <= last:
                    continue
                last = pts
                frame.pts, frame.time_base = pts, Fraction(1, 1000)
                frame.pict_type = av.video.frame.PictureType.NONE
                for packet in stream.encode(frame):
                    output.mux(packet)
    for packet in stream.encode(None):
        output.mux(packet)
    output.close()
    return out_buffer.getvalue()


def bench_splice() -> None:
    folder = Path(tempfile.mkdtemp(prefix="qm-bench-desktop-"))
    started = time.perf_counter()
    store = _record(folder, 20)
    print(f"recorded 20 min (2 segments, 640x360, 5 fps) in {time.perf_counter() - started:.1f} s")
    rows = store.journal.segments()
    interval = Interval(T0 + timedelta(minutes=4), T0 + timedelta(minutes=16))
    server = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = server.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def extraction() -> None:
        media = [SegmentMedia(r.segment_id, r.start, store.plaintext(r)) for r in rows]
        result = splice(media, interval)
        encrypt_for_server(result.mp4, io.BytesIO(), server_key_id="k", server_public_key_pem=pem)

    media = [SegmentMedia(r.segment_id, r.start, store.plaintext(r)) for r in rows]
    copy = timed(extraction)
    reencode = timed(lambda: _reencode(media, interval), repeat=1)
    size = sum(r.size for r in rows) / MIB
    print(f"segments: {size:.1f} MiB encrypted; contact: 12 min across 2 segments")
    print(
        line(
            "extraction by stream copy (decrypt+splice+encrypt)",
            copy,
            "s",
            "re-encode the interval",
            reencode,
            lower_is_better=True,
        )
    )
    shutil.rmtree(folder, ignore_errors=True)


def bench_crypto() -> None:
    data = os.urandom(64 * MIB)
    key = new_data_key()
    chunk = MIB

    def envelope_encrypt() -> bytes:
        out = io.BytesIO()
        encrypt_bytes(
            data,
            out,
            data_key=key,
            purpose=Purpose.SEGMENT,
            key_id="segment:b",
            key_wrap=KeyWrap.LOCAL,
            chunk_size=chunk,
        )
        return out.getvalue()

    blob = envelope_encrypt()
    aead = AESGCM(key)
    nonce = os.urandom(12)
    view = memoryview(data)
    raw_chunks = [aead.encrypt(nonce, view[i : i + chunk], b"a" * 32) for i in range(0, len(data), chunk)]

    def raw_encrypt() -> None:
        for i in range(0, len(data), chunk):
            aead.encrypt(nonce, view[i : i + chunk], b"a" * 32)

    def raw_decrypt() -> None:
        for sealed in raw_chunks:
            aead.decrypt(nonce, sealed, b"a" * 32)

    def envelope_decrypt() -> None:
        EnvelopeReader(io.BytesIO(blob), key).read_all()

    mb = len(data) / MIB
    enc, raw_enc = mb / timed(envelope_encrypt), mb / timed(raw_encrypt)
    dec, raw_dec = mb / timed(envelope_decrypt), mb / timed(raw_decrypt)
    print(f"64 MiB, 1 MiB chunks, AES-256-GCM; file overhead {len(blob) - len(data)} bytes")
    print(line("envelope encrypt", enc, "MiB/s", "raw AESGCM.encrypt, same chunks", raw_enc))
    print(line("envelope decrypt + authenticate", dec, "MiB/s", "raw AESGCM.decrypt, same chunks", raw_dec))


ANIMATION = """
import sys, time, tkinter
root = tkinter.Tk(); root.geometry("1920x1080+0+0")
canvas = tkinter.Canvas(root, width=1920, height=1080, bg="white"); canvas.pack()
label = canvas.create_text(960, 300, font=("Helvetica", 48), text="")
box = canvas.create_rectangle(0, 600, 200, 800, fill="navy")
for i in range(10**9):
    canvas.itemconfigure(label, text=time.strftime("%H:%M:%S") + f" {i}")
    canvas.coords(box, (i * 7) % 1720, 600, (i * 7) % 1720 + 200, 800)
    root.update(); time.sleep(0.1)
"""


def _cpu_share(seconds: float, work) -> float:  # type: ignore[no-untyped-def]
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    work(seconds)
    after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.perf_counter() - started
    return 100 * ((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)) / wall


def bench_capture(seconds: float = 20.0) -> None:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        print("Xvfb missing: run `make install`")
        return
    display = ":77"
    server = subprocess.Popen(
        [xvfb, display, "-screen", "0", "1920x1080x24", "-nolisten", "tcp"], stderr=subprocess.DEVNULL
    )
    time.sleep(1.5)
    env = {**os.environ, "DISPLAY": display}
    painter = subprocess.Popen([sys.executable, "-c", ANIMATION], env=env, stderr=subprocess.DEVNULL)
    os.environ["DISPLAY"] = display
    time.sleep(2)
    folder = Path(tempfile.mkdtemp(prefix="qm-bench-capture-"))
    try:
        source = ScreenSource(1)

        def capture_only(duration: float) -> None:
            end = time.monotonic() + duration
            i = 0
            while time.monotonic() < end:
                source.grab(datetime.now(UTC), i)
                i += 1
                time.sleep(max(0.0, 0.2 - (time.monotonic() % 0.2)))

        def capture_and_encode(duration: float) -> None:
            journal = Journal(folder / "journal.sqlite")
            store = SegmentStore(folder / "segments", journal, DesktopKey(folder / "key.pem"))
            recorder = Recorder(
                store, ScreenSource(1), SystemClock(), encoder=EncoderSettings(), segment_seconds=600
            )
            recorder.start()
            time.sleep(duration)
            recorder.stop()
            size = sum(r.size for r in journal.segments())
            per_hour = size * 3600 / duration / MIB
            print(f"1920x1080, 5 fps: {size / duration / 1024:.0f} KiB/s of segment ({per_hour:.0f} MiB/h)")

        grab = _cpu_share(seconds, capture_only)
        full = _cpu_share(seconds, capture_and_encode)
        print(
            line(
                "capture + encode + encrypt, % of one core",
                full,
                "%",
                "capture alone (mss grab at 5 fps)",
                grab,
                lower_is_better=True,
            )
        )
    finally:
        painter.terminate()
        server.terminate()
        painter.wait()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


def run() -> None:
    bench_crypto()
    bench_splice()
    bench_capture()
