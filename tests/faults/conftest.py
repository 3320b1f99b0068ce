"""Fixtures of the fault suite: the figures each scenario records, and the report at the end.

``make faults`` writes the figures to ``FAULTS_REPORT`` (JSON) and prints them as the
Markdown table docs/reliability.md carries.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from processor.devtools.faultproxy import FaultProxy
from tests.faults.harness import Figures
from tests.helpers import ServiceProcess, descendants

_FIGURES: list[Figures] = []


@pytest.fixture
def record_figures() -> Any:
    def record(figures: Figures) -> None:
        _FIGURES.append(figures)

    return record


@pytest.fixture(scope="session")
def kinesis_mock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """kinesis-mock on a free port for this session: the Kinesis that models resharding."""
    from processor.devtools.emulator import control

    state = tmp_path_factory.mktemp("kinesis-mock")
    port = control.free_port()
    control.up_kinesis_mock(port, state, timeout=90)
    yield f"http://127.0.0.1:{port}"
    control.down(port, state)


@pytest.fixture
def proxy(emulator: str) -> Iterator[FaultProxy]:
    """The fault proxy in front of the session's emulator (the service is pointed at it)."""
    with FaultProxy(urlsplit(emulator).port or 0) as running:
        yield running


@pytest.fixture
def services(settings: Any) -> Iterator[list[ServiceProcess]]:
    """Every service a scenario starts; whatever is left running is stopped (or killed) after
    it, KCL daemons that outlived their service included (found by their properties file)."""
    started: list[ServiceProcess] = []
    state_dir = str(Path(settings.state_dir).resolve())
    yield started
    for service in started:
        if service.proc is None:
            continue
        pids = [service.proc.pid, *descendants(service.proc.pid)]
        if service.alive():
            with contextlib.suppress(Exception):
                service.stop(timeout=20)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if b"MultiLangDaemon" in command and state_dir.encode() in command:
            # The daemon leads its own process group: its record processors go with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(entry.name), signal.SIGKILL)


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | contacts expected | imported | duplicated | lost | quarantined "
        "| output records (per version: 0 / 1 / >1) | time to recover | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        per = r["records_per_version"]
        recovery = r["recovery_s"]
        if not recovery:
            rec = "-"
        elif len(recovery) == 1:
            rec = f"{recovery[0]:.1f} s"
        else:
            median = sorted(recovery)[len(recovery) // 2]
            rec = f"{min(recovery):.1f}-{max(recovery):.1f} s (median {median:.1f})"
        lines.append(
            f"| {r['scenario']} | {r['expected']} | {r['imported']} | {r['duplicated']} | {r['lost']} "
            f"| {r['quarantined']} | {r['output_records']} ({per['0']} / {per['1']} / {per['>1']}) "
            f"| {rec} | {r['notes']} |"
        )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    rows = [f.row() for f in _FIGURES]
    terminalreporter.write_sep("=", "fault suite figures")
    terminalreporter.write_line(markdown(rows))
    target = os.environ.get("FAULTS_REPORT")
    if target:
        path = Path(target)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2))
        path.with_suffix(".md").write_text(markdown(rows) + "\n")
        terminalreporter.write_line(f"figures written to {path} and {path.with_suffix('.md')}")
