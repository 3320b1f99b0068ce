"""Shared benchmark plumbing: timing, ratio lines, a private emulator per run."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from processor.local import control


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
    try:
        yield status.endpoint
    finally:
        control.down(port, state)
