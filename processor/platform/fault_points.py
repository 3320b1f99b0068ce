"""Fault-injection points for the fault suite; inert unless armed by environment variables.

``QM_FAULT_KILL_AT=<point>[@<scope>][:<n>]`` makes the process that reaches ``<point>`` for the n-th
time kill itself with SIGKILL (as ``kill -9`` would). With ``QM_FAULT_MARKER=<file>`` only
the first process to get there dies (the file records it), so restarted workers run clean.
``QM_FAULT_KILL_AT=@<file>`` arms from a file instead, which can be rewritten while the
service runs (see :func:`fault_point`).

The points (:data:`POINTS`), in the order a record meets them:

``before_write@<stream>``   a record processor got a batch, nothing written yet
``after_quarantine``        a bad record is in the quarantine, the batch goes on
``after_view_write``        a contact's view (and its emission claim) is written, not yet emitted
                            (record processors, the recordings consumers and the sweeper)
``after_output_put``        the contact is on the output stream, not yet marked emitted
``after_write@<stream>``    the whole batch is durable, not yet checkpointed
``after_checkpoint@<stream>`` the batch is checkpointed
``before_delete@sqs``       a recording notification's effect is durable, the message not deleted
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

POINTS = (
    "before_write",
    "after_quarantine",
    "after_view_write",
    "after_output_put",
    "after_write",
    "after_checkpoint",
    "before_delete",
)

_passages: dict[tuple[str, str], int] = {}
_armed_file: dict[str, tuple[int, str, str | None]] = {}


def _arming() -> tuple[str, str | None] | None:
    """``(target, marker)`` from the environment, or from the file it names (``@<file>``)."""
    target = os.environ.get("QM_FAULT_KILL_AT")
    if not target:
        return None
    if not target.startswith("@"):
        return target, os.environ.get("QM_FAULT_MARKER")
    # Re-armed while the processes run (the fault suite's rounds): one line "<target> [<marker>]",
    # re-read when the file changes; empty or absent = disarmed.
    path = target[1:]
    try:
        stamp = os.stat(path).st_mtime_ns
    except OSError:
        return None
    cached = _armed_file.get(path)
    if cached is None or cached[0] != stamp:
        try:
            words = Path(path).read_text().split()
        except OSError:
            return None
        cached = (stamp, words[0] if words else "", words[1] if len(words) > 1 else None)
        _armed_file[path] = cached
    return (cached[1], cached[2]) if cached[1] else None


def fault_point(name: str, scope: str | None = None) -> None:
    """``QM_FAULT_KILL_AT=<point>[@<scope>][:<n>]``: the scope (e.g. a stream name) narrows
    the point to one kind of process. ``QM_FAULT_KILL_AT=@<file>`` reads the same from a file,
    with the marker after it: ``<point>[@<scope>][:<n>] <marker>``."""
    arming = _arming()
    if arming is None:
        return
    target, marker = arming
    wanted, _, count = target.partition(":")
    point, _, wanted_scope = wanted.partition("@")
    if point != name or (wanted_scope and wanted_scope != scope):
        return
    key = (target, name)  # a new arming counts its passages afresh
    _passages[key] = _passages.get(key, 0) + 1
    if _passages[key] < int(count or 1):
        return
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{name} pid={os.getpid()}\n".encode())
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
