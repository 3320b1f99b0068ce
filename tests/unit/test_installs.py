"""The server install without the desktop and local extras: its entry points import and the
command line answers with none of av, mss, PIL, moto, processor.desktop or processor.devtools
importable (as in the image); a desktop or emulator command names the extra to install."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

BLOCKER = textwrap.dedent(
    """
    import sys

    BLOCKED = ("av", "mss", "PIL", "moto", "processor.devtools", "processor.desktop")

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    for loaded in [m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED)]:
        del sys.modules[loaded]
    """
)

SERVER_MODULES = (
    "processor.entrypoints.cli",
    "processor.entrypoints.ctr_worker",
    "processor.entrypoints.agent_worker",
    "processor.entrypoints.probe",
    "processor.app.service",
    "processor.app.wiring",
    "processor.console.server",
    "processor.console.demo_session",
    "processor.ops.doctor",
)


def run_blocked(body: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKER + textwrap.dedent(body)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def test_the_server_imports_and_answers_without_the_extras() -> None:
    imports = "\n".join(f"import {m}" for m in SERVER_MODULES)
    done = run_blocked(
        imports
        + """
from typer.testing import CliRunner
from processor.entrypoints.cli import app
result = CliRunner().invoke(app, ["--help"])
assert result.exit_code == 0, result.output
assert "desktop" in result.output and "local" in result.output
print("ok")
"""
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_desktop_and_emulator_commands_name_their_extra() -> None:
    done = run_blocked(
        """
from typer.testing import CliRunner
from processor.entrypoints.cli import app
for argv, extra in (
    (["desktop", "--agent", "ana"], "desktop"),
    (["screen", "demo"], "desktop"),
    (["local", "status"], "local"),
    (["demo"], "local"),
    (["simulate"], "local"),
):
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1, (argv, result.exit_code, result.output)
    line = result.output.strip()
    assert f"pip install 'qm-ingest[{extra}]'" in line and "\\n" not in line, (argv, line)
print("ok")
"""
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_qm_desktop_without_the_extra_says_so_in_one_line() -> None:
    done = run_blocked(
        """
sys.argv = ["qm-desktop", "--agent", "ana"]
from processor.entrypoints.cli import desktop_main
desktop_main()
"""
    )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "qm-desktop: qm-desktop needs the desktop extra: pip install 'qm-ingest[desktop]'"
    )
