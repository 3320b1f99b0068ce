"""Processes that die with their parent: Linux's parent-death signal (``PR_SET_PDEATHSIG``).

``qm-ingest run`` starts each KCL daemon in its own process group (so that a stop reaches
its record processors), which also means that nothing stops them if ``run`` itself is
killed: a daemon would go on holding and working its leases under the worker id that the
restarted ``run`` takes back, with nobody reading its logs or stopping it. The daemon gets
SIGKILL when ``run`` dies, and each record processor when its daemon dies (its work is not
checkpointed then anyway; the next owner replays it, idempotently). Elsewhere than Linux
this is a no-op.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1


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


def die_with_parent() -> None:
    """In a running process: SIGKILL when the parent dies (now, if it already has)."""
    prctl = _prctl()
    if prctl is None:
        return
    parent = os.getppid()
    prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGKILL)
