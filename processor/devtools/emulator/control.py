"""Start, stop and inspect the embedded AWS emulator (``qm-ingest local up|down|status``).

``up`` is idempotent: when something already answers on the port (our emulator from an
earlier ``up``, or a LocalStack the user started) it is used as it is and left running.
Only an emulator that this module started is stopped by ``down``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from processor.devtools.emulator.moto_server import HEALTH_PATH, SERVER_NAME


@dataclass(frozen=True)
class EmulatorStatus:
    port: int
    listening: bool
    kind: str  # "qm-ingest-emulator", "localstack", "unknown", "none"
    pid: int | None  # pid of an emulator this project started
    owned: bool  # started by us (pid file present and alive)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def describe(self) -> str:
        if not self.listening:
            return f"nothing listens on 127.0.0.1:{self.port}"
        who = {"qm-ingest-emulator": "embedded emulator (moto + hypercorn)", "localstack": "LocalStack"}.get(
            self.kind, "an unknown server"
        )
        owner = f", pid {self.pid}, started by qm-ingest" if self.owned else ", not started by qm-ingest"
        return f"{who} on {self.endpoint}{owner}"


def _pid_file(state_dir: Path, port: int) -> Path:
    return state_dir / f"emulator-{port}.pid"


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=timeout):
        return True
    return False


def _identify(port: int) -> str:
    for path, kind in ((HEALTH_PATH, SERVER_NAME), ("/_localstack/health", "localstack")):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
                body = resp.read()
            if kind == SERVER_NAME and orjson.loads(body).get("server") != SERVER_NAME:
                continue
            return kind
        except (urllib.error.URLError, OSError, ValueError):
            continue
    return "unknown"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(state_dir: Path, port: int) -> int | None:
    try:
        pid = int(_pid_file(state_dir, port).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def status(port: int, state_dir: Path) -> EmulatorStatus:
    listening = port_open(port)
    pid = _read_pid(state_dir, port)
    kind = _identify(port) if listening else "none"
    return EmulatorStatus(port=port, listening=listening, kind=kind, pid=pid, owned=pid is not None)


def up(port: int, state_dir: Path, *, timeout: float = 60.0, host: str = "127.0.0.1") -> EmulatorStatus:
    """Make sure an AWS endpoint answers on ``port``; start the embedded emulator if not."""
    current = status(port, state_dir)
    if current.listening:
        return current
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"emulator-{port}.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "processor.devtools.emulator.moto_server",
                "--host",
                host,
                "--port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell that ran `local up`
        )
    _pid_file(state_dir, port).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"the emulator exited with status {proc.returncode}; see {log_path}:\n{_tail(log_path)}"
            )
        if port_open(port) and _identify(port) == SERVER_NAME:
            return status(port, state_dir)
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the emulator did not answer on port {port} within {timeout:.0f}s; see {log_path}")


def down(port: int, state_dir: Path, *, timeout: float = 15.0) -> bool:
    """Stop the emulator this project started on ``port``. Returns False if there was none."""
    pid = _read_pid(state_dir, port)
    pid_file = _pid_file(state_dir, port)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        _reap(pid)
        time.sleep(0.1)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _reap(pid)
    pid_file.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


KINESIS_MOCK_DIR = Path(__file__).resolve().parent / "kinesis-mock"


def kinesis_mock_main() -> Path:
    main = KINESIS_MOCK_DIR / "node_modules" / "kinesis-local" / "main.js"
    if not main.is_file():
        raise RuntimeError(
            f"kinesis-mock is not installed: run `npm ci --prefix {KINESIS_MOCK_DIR}` (make install)"
        )
    return main


def up_kinesis_mock(port: int, state_dir: Path, *, timeout: float = 60.0) -> EmulatorStatus:
    """kinesis-mock (pure Node) on ``port``: the Kinesis emulator that models the shard
    lifecycle (split, merge, ChildShards, SHARD_END). Used where resharding matters."""
    if port_open(port):
        return status(port, state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / f"kinesis-mock-{port}.log"
    env = {
        **os.environ,
        "KINESIS_MOCK_PLAIN_PORT": str(port),
        "KINESIS_MOCK_TLS_PORT": str(free_port()),
        "LOG_LEVEL": "WARN",
        "CREATE_STREAM_DURATION": "100ms",
        "SPLIT_SHARD_DURATION": "200ms",
        "MERGE_SHARDS_DURATION": "200ms",
        "UPDATE_SHARD_COUNT_DURATION": "200ms",
        "SHARD_LIMIT": "100",
    }
    main = kinesis_mock_main()
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            ["node", str(main)],
            cwd=str(main.parent),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    _pid_file(state_dir, port).write_text(str(proc.pid))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"kinesis-mock exited with status {proc.returncode}; see {log_path}")
        if port_open(port):
            return status(port, state_dir)
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"kinesis-mock did not answer on port {port} within {timeout:.0f}s; see {log_path}")


def iam_enforcement(endpoint: str, enforce: bool | None = None, *, clear: bool = False) -> dict[str, Any]:
    """Switch the emulator's IAM enforcement (``enforce``) and read the decisions it made
    (``processor/devtools/emulator/iam_enforcement.py``); ``clear`` forgets those read."""
    url = f"{endpoint}/_qm/iam" + ("?clear=1" if clear else "")
    data = None if enforce is None else orjson.dumps({"enforce": enforce})
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")  # noqa: S310
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - 127.0.0.1 only
        result: dict[str, Any] = orjson.loads(response.read())
    return result
