"""Shared benchmark plumbing: timing, ratio lines, a private emulator per run."""

from __future__ import annotations

import contextlib
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from processor.devtools.emulator import control
from processor.devtools.simulated_centre import DEFAULT_INSTANCE_ARN


def quick() -> bool:
    """A short run was asked for (``BENCH_QUICK=1`` or ``python -m bench --quick``)."""
    return os.environ.get("BENCH_QUICK", "") not in ("", "0")


def timed(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs (seconds)."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def line(
    name: str, value: float, unit: str, baseline_name: str, baseline: float, *, lower_is_better: bool = False
) -> str:
    """``name value | baseline value | ratio`` (value / baseline)."""
    ratio = value / baseline if baseline else float("nan")
    note = " (lower is better)" if lower_is_better else ""
    return (
        f"{name:<52} {value:>12,.1f} {unit:<8} | {baseline_name:<40} {baseline:>12,.1f} {unit:<8}"
        f" | ratio {ratio:8.4g}x{note}"
    )


@contextlib.contextmanager
def emulator() -> Iterator[str]:
    state = Path(tempfile.mkdtemp(prefix="qm-bench-"))
    port = control.free_port()
    status = control.up(port, state)
    os.environ["AWS_ENDPOINT_URL"] = status.endpoint
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "test")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "test")
    os.environ.setdefault("AWS_REGION", "us-east-1")
    # The tenant check: the simulated contact centre's instance.
    os.environ.setdefault("QM_INSTANCE_ARN", DEFAULT_INSTANCE_ARN)
    try:
        yield status.endpoint
    finally:
        control.down(port, state)


def clean_contact_centre(aws: Any, settings: Any, *, seed: int, contacts: int) -> Any:
    """A contact centre without duplicates, updates or broken recordings, each recording
    uploaded as its WAV header only (the join reads nothing else: one ranged GET)."""
    scenario = clean_scenario(settings, seed=seed, contacts=contacts)
    upload_headers(aws, scenario)
    return scenario


def clean_scenario(settings: Any, *, seed: int, contacts: int, live: bool = False) -> Any:
    """:func:`clean_contact_centre` without the uploads (for CTRs that come first). ``live``:
    contacts of the coming minutes (their recordings' notifications are still to come), not
    of a past day (a backfill's, whose recordings are read where they are)."""
    from datetime import UTC, datetime

    from processor.devtools.simulated_centre import build_scenario

    return build_scenario(
        seed=seed,
        contacts=contacts,
        start=datetime.now(UTC) if live else datetime(2026, 3, 1, tzinfo=UTC),
        bucket=settings.recordings_bucket,
        duplicate_rate=0,
        update_rate=0,
        missing_rate=0,
        corrupt_rate=0,
        truncated_rate=0,
    )


#: ``QM_BENCH_AUDIO``: what follows each uploaded header. Unset: nothing (the header only).
#: ``both`` / ``agent`` / ``customer``: :data:`AUDIO_SECONDS` of audio with those channels
#: live, the other one digital silence; ``agent-quiet``: the agent live and the customer's
#: channel at a line's noise floor (-80 dBFS: a confirming read each, the worst case). The
#: object is cut there (the header keeps the recording's length), so that the
#: recorded-parties reads are those of a real recording.
AUDIO_SECONDS = 10.0
AUDIO_KINDS = ("both", "agent", "customer", "agent-quiet")


@functools.cache
def _audio(kind: str) -> bytes:
    from processor.console.samples import stereo_wav

    if kind not in AUDIO_KINDS:
        raise ValueError(f"QM_BENCH_AUDIO={kind!r}: one of {', '.join(AUDIO_KINDS)}")
    data = bytearray(
        stereo_wav(AUDIO_SECONDS, customer=kind in ("both", "customer"), agent=kind != "customer")
    )
    if kind == "agent-quiet":
        for i in range(44, len(data) - 1, 4):  # +-3 LSB on the left (customer) channel
            data[i], data[i + 1] = (3, 0) if i % 8 < 4 else (0xFD, 0xFF)
    return bytes(data[44:])


def upload_headers(aws: Any, scenario: Any) -> int:
    """Upload each recording of ``scenario`` as its WAV header (and the audio that
    ``QM_BENCH_AUDIO`` asks for); returns how many."""
    from processor.adapters.s3.call_recordings import split_location
    from processor.core.wav import wav_header
    from processor.devtools.simulated_centre import RecordingUpload

    kind = os.environ.get("QM_BENCH_AUDIO", "")
    audio = _audio(kind) if kind else b""
    count = 0
    for event in scenario.events:
        if isinstance(event, RecordingUpload):
            bucket, key = split_location(event.location)
            body = wav_header(data_bytes=int(event.seconds * 32000)) + audio
            aws.s3.put_object(Bucket=bucket, Key=key, Body=body)
            count += 1
    return count
