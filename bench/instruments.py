"""Benchmark instruments: AWS requests by operation, request waves, CPU time of processes.

* :class:`RequestCounter` hooks botocore's per-attempt events (``before-send`` when an HTTP
  request leaves, ``response-received`` when its answer, or its failure, is back) on any
  number of clients. It counts requests by ``service.Operation`` (every attempt: a retried
  call counts twice) and *waves*: a wave is a maximal period during which at least one
  request is in flight, so it starts whenever the in-flight count goes from 0 to 1. Waves
  measured around one call are the sequential network round trips that call waits for,
  however many threads it spreads its requests over. Threads that each make requests one
  after another overlap into few waves, so the counter also reports the most requests one
  thread made (its requests are sequential by construction). Against a local emulator a
  request can be answered before the thread beside it has sent its own, which splits one wave
  into several on a loaded machine: ``window(hold_seconds=...)`` keeps every request in flight
  at least that long, as a network round trip would, so waves count round trips, not the
  scheduler's gaps.
* :class:`CountingAwsClients` is the project's :class:`AwsClients` with every client it
  builds (now or later, through :meth:`AwsClients.client`) attached to one counter.
* :func:`tree_cpu_seconds` sums user + system CPU time over a process and its descendants
  from ``/proc`` (Linux), split into Python processes and the rest (the KCL's JVMs).

A streamed body (S3 ``GetObject``) is in flight until its headers are back; reading the
body afterwards is not counted as in flight.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from processor.adapters.aws import AwsClients

_HOOK_ID = "qm-bench-request-counter"


@dataclass(frozen=True)
class RequestCounts:
    """What a :class:`RequestCounter` saw in a window."""

    by_operation: dict[str, int]
    waves: int
    #: Most requests in flight at once.
    peak_in_flight: int
    #: Wall time during which at least one request was in flight (seconds).
    busy_seconds: float
    #: Most requests made by one thread: requests that thread made one after another.
    max_per_thread: int = 0
    #: The operations of each wave, in order (what an assertion on ``waves`` shows).
    wave_operations: tuple[dict[str, int], ...] = ()

    @property
    def requests(self) -> int:
        return sum(self.by_operation.values())

    def per(self, count: int) -> dict[str, float]:
        """Requests by operation divided by ``count`` (e.g. per contact), largest first."""
        return {op: n / count for op, n in sorted(self.by_operation.items(), key=lambda kv: (-kv[1], kv[0]))}


@dataclass
class RequestCounter:
    """Thread-safe count of AWS requests by operation, of waves, and of what is in flight."""

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _by_operation: Counter[str] = field(default_factory=Counter)
    _waves: int = 0
    _in_flight: int = 0
    _peak: int = 0
    _busy: float = 0.0
    _wave_started: float = 0.0
    _per_thread: Counter[int] = field(default_factory=Counter)
    _wave_operations: list[Counter[str]] = field(default_factory=list)
    _local: threading.local = field(default_factory=threading.local, repr=False)
    #: Every request is held in flight this long before it leaves (see ``window``).
    _hold: float = 0.0

    # --- hooks --------------------------------------------------------------------------
    def attach(self, client: Any) -> Any:
        """Count ``client``'s requests (from now on); returns the client."""
        events = client.meta.events
        events.register("before-send", self._sent, unique_id=f"{_HOOK_ID}-send-{id(self)}")
        events.register("response-received", self._received, unique_id=f"{_HOOK_ID}-recv-{id(self)}")
        return client

    def _sent(self, event_name: str = "", **_: Any) -> None:
        # "before-send.<service-id>.<Operation>"
        _, _, name = event_name.partition(".")
        now = time.perf_counter()
        with self._lock:
            self._by_operation[name] += 1
            self._per_thread[threading.get_ident()] += 1
            if self._in_flight == 0:
                self._waves += 1
                self._wave_started = now
                self._wave_operations.append(Counter())
            if self._wave_operations:
                self._wave_operations[-1][name] += 1
            self._in_flight += 1
            self._peak = max(self._peak, self._in_flight)
            hold = self._hold
        # One botocore call is synchronous: a thread has at most one request in flight.
        self._local.open = True
        if hold:
            time.sleep(hold)  # counted in flight: the round trip a real network would add

    def _received(self, **_: Any) -> None:
        if not getattr(self._local, "open", False):
            return  # sent before this counter was attached, or a hook before ours failed
        self._local.open = False
        now = time.perf_counter()
        with self._lock:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._busy += now - self._wave_started

    # --- reading ------------------------------------------------------------------------
    def snapshot(self) -> RequestCounts:
        with self._lock:
            busy = self._busy + (time.perf_counter() - self._wave_started if self._in_flight else 0.0)
            most = max(self._per_thread.values(), default=0)
            waves = tuple(dict(ops) for ops in self._wave_operations)
            return RequestCounts(dict(self._by_operation), self._waves, self._peak, busy, most, waves)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight

    def reset(self) -> None:
        """Forget everything counted so far (requests in flight stay in flight)."""
        with self._lock:
            self._by_operation.clear()
            self._per_thread.clear()
            self._wave_operations = [Counter()] if self._in_flight else []
            self._waves = 1 if self._in_flight else 0
            self._peak = self._in_flight
            self._busy = 0.0
            self._wave_started = time.perf_counter()

    @contextlib.contextmanager
    def window(self, hold_seconds: float = 0.0) -> Iterator[list[RequestCounts]]:
        """``with counter.window() as got: ...`` then ``got[0]`` is what the block did.
        Resets the counter at the start: windows do not nest. ``hold_seconds`` holds every
        request of the block in flight at least that long."""
        got: list[RequestCounts] = []
        self.reset()
        with self._lock:
            self._hold = hold_seconds
        try:
            yield got
        finally:
            with self._lock:
                self._hold = 0.0
            got.append(self.snapshot())


@dataclass
class CountingAwsClients(AwsClients):
    """The service's clients (same session, endpoints and retry policy), every one counted."""

    counter: RequestCounter = field(default_factory=RequestCounter)

    def client(self, service: str, **extra: Any) -> Any:
        return self.counter.attach(super().client(service, **extra))


def format_breakdown(counts: RequestCounts, contacts: int) -> str:
    """``dynamodb.PutItem 2.00, kinesis.PutRecord 1.00, ...`` per contact."""
    return ", ".join(f"{op} {n:.2f}" for op, n in counts.per(contacts).items())


# --- CPU time ---------------------------------------------------------------------------
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class TreeCpu:
    """CPU seconds (user + system) of a process tree, by kind of process, per pid."""

    python: dict[int, float]
    other: dict[int, float]

    def minus(self, earlier: TreeCpu) -> tuple[float, float]:
        """(Python seconds, other seconds) spent since ``earlier`` by the processes alive in
        both and those started since (a process that exited in between is not counted)."""

        def spent(now: dict[int, float], before: dict[int, float]) -> float:
            return sum(t - before.get(pid, 0.0) for pid, t in now.items())

        return spent(self.python, earlier.python), spent(self.other, earlier.other)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError, ValueError):
                found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _cpu_and_kind(pid: int) -> tuple[float, bool] | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / _CLOCK_TICKS, exe.startswith("python")


def tree_cpu_seconds(root: int) -> TreeCpu:
    """CPU seconds of ``root`` and every descendant alive now (Linux ``/proc``)."""
    python: dict[int, float] = {}
    other: dict[int, float] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        got = _cpu_and_kind(pid)
        if got is not None:
            (python if got[1] else other)[pid] = got[0]
        todo += _children(pid)
    return TreeCpu(python, other)
