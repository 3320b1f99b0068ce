"""``replay``, ``backfill`` and ``reconcile`` refuse unclear requests before touching AWS: one
line on stderr saying what is wrong, exit status 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# Nothing listens here: a command that got as far as AWS would fail differently (exit 1).
NOWHERE = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9", "QM_AWS_MAX_ATTEMPTS": "1"}


def qm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **NOWHERE},
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("replay",), "say where to replay from"),
        (("replay", "--trim-horizon", "--from-timestamp", "2026-01-01"), "say where to replay from"),
        (("replay", "--trim-horizon", "--stop-workers", "--force"), "exclude each other"),
        (("replay", "--trim-horizon", "--direct", "--force"), "--direct leaves the checkpoints alone"),
        (("replay", "--from-timestamp", "yesterday"), "not a date"),
        (("backfill", "http://bucket/x"), "not an s3:// URL"),
        (("backfill", "s3://b/p", "--since", "2026-02-02", "--until", "2026-02-01"), "--until must be after"),
        (("reconcile", "s3://b/p"), "--since DATE is required"),
    ],
)
def test_unclear_requests_are_refused(args: tuple[str, ...], message: str) -> None:
    done = qm(*args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_a_checkpoints_file_that_is_not_one_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "checkpoints.json"
    bad.write_text('{"format": "something else"}')
    done = qm("replay", "--from-checkpoints", str(bad))
    assert done.returncode == 2
    assert "not a qm-ingest checkpoints file" in done.stderr
    done = qm("replay", "--from-checkpoints", str(tmp_path / "missing.json"))
    assert done.returncode == 2 and "cannot read" in done.stderr
