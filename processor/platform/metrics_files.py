"""Where the processes of one ``qm-ingest run`` keep their Prometheus metric files.

The KCL daemon (Java) starts one Python record processor per shard; they are not
children of a Python parent that could aggregate in memory. prometheus_client's
multiprocess mode has each process write its values to memory-mapped files in one
directory (``PROMETHEUS_MULTIPROC_DIR``, inherited by the daemon and its children through
the environment); ``/metrics`` in ``qm-ingest run`` sums them at scrape time.

Nothing here imports prometheus_client at module level: the directory must be chosen
before prometheus_client is first imported by the process.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PID_IN_NAME = re.compile(r"_(\d+)\.db$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prepare(state_dir: Path) -> Path:
    """A fresh metrics directory for this service process, exported to its children.

    ``<state_dir>/metrics/<pid>``; directories of dead earlier runs are removed (their
    values would otherwise be summed into ours).
    """
    root = state_dir / "metrics"
    root.mkdir(parents=True, exist_ok=True)
    for old in root.iterdir():
        if old.name.isdigit() and not _alive(int(old.name)):
            shutil.rmtree(old, ignore_errors=True)
    path = root / str(os.getpid())
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    os.environ[MULTIPROC_ENV] = str(path)
    if "prometheus_client" in sys.modules:
        # Imported before the directory existed: values created from now on go to files.
        from prometheus_client import values

        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
    return path


def current() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


def reap_dead(path: Path) -> list[int]:
    """Forget the live-only gauges of processes that exited (a record processor whose
    lease moved on). Their counters stay: totals survive processor restarts."""
    from prometheus_client import multiprocess

    dead: set[int] = set()
    for entry in path.glob("gauge_live*.db"):
        match = _PID_IN_NAME.search(entry.name)
        if match and not _alive(int(match.group(1))):
            dead.add(int(match.group(1)))
    for pid in dead:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]
    return sorted(dead)


def remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        shutil.rmtree(path)
    if os.environ.get(MULTIPROC_ENV) == str(path):
        del os.environ[MULTIPROC_ENV]
