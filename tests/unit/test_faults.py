"""Fault points: inert unless armed; armed from the environment or from a file that can be
rewritten while processes run; the n-th passage dies with SIGKILL; the marker lets only the
first process through it die; a scope narrows the point to one kind of process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

PASS_POINT = """
import time
from processor.platform.fault_points import fault_point
for i in range({passes}):
    fault_point("after_write", "ctr")
    print(i, flush=True)
    time.sleep({pause})
"""


def run(env: dict[str, str], passes: int = 5, pause: float = 0.0) -> subprocess.CompletedProcess[str]:
    code = PASS_POINT.format(passes=passes, pause=pause)
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_inert_unless_armed() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("QM_FAULT")}
    result = subprocess.run(
        [sys.executable, "-c", PASS_POINT.format(passes=3, pause=0)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.split() == ["0", "1", "2"]


def test_the_nth_passage_dies_once(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    env = {"QM_FAULT_KILL_AT": "after_write@ctr:3", "QM_FAULT_MARKER": str(marker)}
    first = run(env)
    assert first.returncode == -signal.SIGKILL and first.stdout.split() == ["0", "1"]
    assert marker.read_text().startswith("after_write pid=")
    again = run(env)  # the marker exists: a restarted process runs clean
    assert again.returncode == 0
    other = run({"QM_FAULT_KILL_AT": "after_write@agent", "QM_FAULT_MARKER": str(tmp_path / "m2")})
    assert other.returncode == 0 and not (tmp_path / "m2").exists()


def test_armed_from_a_file_rewritten_while_running(tmp_path: Path) -> None:
    arming = tmp_path / "arming"
    arming.write_text("")
    marker = tmp_path / "killed"
    code = PASS_POINT.format(passes=200, pause=0.02)
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, "QM_FAULT_KILL_AT": f"@{arming}"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    for _ in range(5):
        proc.stdout.readline()  # disarmed: it passes the point
    arming.write_text(f"after_write@ctr:2 {marker}")
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert marker.exists()
