"""Fault-injection points for the fault suite; inert unless armed by environment variables.

``QM_FAULT_KILL_AT=<point>[@<scope>][:<n>]`` makes the process that reaches ``<point>`` for the n-th
time kill itself with SIGKILL (as ``kill -9`` would). With ``QM_FAULT_MARKER=<file>`` only
the first process to get there dies (the file records it), so restarted workers run clean.

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

POINTS = (
    "before_write",
    "after_quarantine",
    "after_view_write",
    "after_output_put",
    "after_write",
    "after_checkpoint",
    "before_delete",
)

_passages: dict[str, int] = {}


def fault_point(name: str, scope: str | None = None) -> None:
    """``QM_FAULT_KILL_AT=<point>[@<scope>][:<n>]``: the scope (e.g. a stream name) narrows
    the point to one kind of process."""
    target = os.environ.get("QM_FAULT_KILL_AT")
    if not target:
        return
    wanted, _, count = target.partition(":")
    point, _, wanted_scope = wanted.partition("@")
    if point != name or (wanted_scope and wanted_scope != scope):
        return
    _passages[name] = _passages.get(name, 0) + 1
    if _passages[name] < int(count or 1):
        return
    marker = os.environ.get("QM_FAULT_MARKER")
    if marker:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{name} pid={os.getpid()}\n".encode())
        os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
