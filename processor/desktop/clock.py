"""Time for the desktop: the real clock, or a simulated one that tests drive.

Everything on the desktop asks its clock for "now" and waits through it, so a test can
record half an hour of screen in seconds and every timestamp stays consistent.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        """Wait; True when ``stop`` was set meanwhile (the wait ends early)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        if stop is None:
            time.sleep(max(0.0, seconds))
            return False
        return stop.wait(max(0.0, seconds))


class SimulatedClock:
    """Time moves only when someone sleeps on it (thread-safe)."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("naive datetime")
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += timedelta(seconds=seconds)

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        self.advance(max(0.0, seconds))
        return bool(stop and stop.is_set())


class ScaledClock:
    """Wall-clock time running ``speed`` times faster (tests, demos): every thread sees the
    same time, and waits are shortened by the same factor."""

    def __init__(self, start: datetime, speed: float) -> None:
        if start.tzinfo is None:
            raise ValueError("naive datetime")
        self._start = start
        self._origin = time.monotonic()
        self.speed = speed

    def now(self) -> datetime:
        return self._start + timedelta(seconds=(time.monotonic() - self._origin) * self.speed)

    def sleep(self, seconds: float, stop: threading.Event | None = None) -> bool:
        real = max(0.0, seconds) / self.speed
        if stop is None:
            time.sleep(real)
            return False
        return stop.wait(real)
