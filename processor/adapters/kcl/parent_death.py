"""Processes that die with their parent: Linux's parent-death signal (``PR_SET_PDEATHSIG``).

``qm-ingest run`` starts each KCL daemon in its own process group (so that a stop reaches
its record processors), which also means that nothing stops them if ``run`` itself is
killed: a daemon would go on holding and working its leases under the worker id that the
restarted ``run`` takes back, with nobody reading its logs or stopping it. The daemon gets
SIGKILL when ``run`` dies (Linux's parent-death signal; elsewhere a no-op), and each record
processor exits when its daemon is gone (its work is not checkpointed then anyway; the next
owner replays it, idempotently).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1
#: Exit status of a record processor whose daemon is gone.
EXIT_PARENT_GONE = 71


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


def preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` for ``subprocess.Popen``: the child gets SIGKILL when the thread that
    started it exits. Resolved before the fork, so the child only makes one system call."""
    prctl = _prctl()
    if prctl is None:
        return None
    bound = prctl

    def set_signal() -> None:
        bound(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return set_signal


def exit_with_parent(poll_s: float = 1.0) -> None:
    """In a running process: exit as soon as the parent process is gone.

    Not the parent-death signal: that fires when the parent *thread* that started this
    process exits, and the KCL starts record processors from pooled threads that come and
    go (an idle agent-event processor was killed a minute after its start). A watchdog
    thread notices the re-parenting instead.
    """
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent:
                os._exit(EXIT_PARENT_GONE)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
