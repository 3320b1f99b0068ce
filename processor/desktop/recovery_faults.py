"""Fault points for the recovery tests: ``QM_DESKTOP_FAULT=<point>`` makes the desktop
kill itself (SIGKILL, no clean-up) when it reaches that point. Unset in production,
where every point is a no-op."""

from __future__ import annotations

import os
import signal

FAULT_ENV = "QM_DESKTOP_FAULT"


def fault_point(name: str) -> None:
    if os.environ.get(FAULT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
