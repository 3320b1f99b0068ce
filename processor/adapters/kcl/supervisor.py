"""Running a KCL MultiLangDaemon as a child of ``qm-ingest run``.

Owns: the worker-id slot (a file lock, so two workers on one host get distinct, stable
ids), the stale leader lock of this worker's previous incarnation, the properties file,
the Java process and its process group (record processors included), and the daemon's
log lines (re-emitted as JSON on our stderr).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError

from processor.adapters.aws import AwsClients
from processor.adapters.kcl import parent_death
from processor.adapters.kcl.daemon import (
    KclApplication,
    child_environment,
    java_command,
    processor_executable,
    properties,
)
from processor.platform.logs import LOG_SOCKET_ENV, get_logger
from processor.platform.settings import Settings

log = get_logger("processor.kcl.daemon")

_KCL_LINE = re.compile(
    r"^\S+ \S+ \[(?P<thread>[^\]]*)\] (?P<level>[A-Z]+)\s+(?P<logger>\S+) \[[^\]]*\] - (?P<msg>.*)$"
)
_STOP_TIMEOUT_S = 10.0


class WorkerSlot:
    """An exclusive, stable worker id for this host: ``<hostname>-1``, ``-2``, ...

    Held with an OS file lock for the life of the process; released by the kernel even on
    ``kill -9``, so a restarted worker gets its old id (and its old leases) back.
    """

    def __init__(self, settings: Settings, application: str) -> None:
        self._handle: IO[str] | None = None
        state = Path(settings.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        if settings.worker_id:
            self.worker_id = settings.worker_id
            self._lock(state / f"worker-{application}-{_safe(settings.worker_id)}.lock", wait=False)
            return
        for slot in range(1, 65):
            if self._lock(state / f"worker-{application}-{slot}.lock", wait=False, required=False):
                self.worker_id = settings.resolved_worker_id(slot)
                return
        raise RuntimeError("more than 64 workers of one application on this host")

    def _lock(self, path: Path, *, wait: bool, required: bool = True) -> bool:
        handle = open(path, "a+")  # noqa: SIM115 - held open for the life of the process
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            if required:
                raise RuntimeError(
                    f"another qm-ingest process on this host already uses {path.name}"
                ) from None
            return False
        # The holder's pid, so `replay --stop-workers` can ask this process to stop.
        handle.truncate(0)
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


@dataclass(frozen=True)
class LocalWorker:
    """A ``qm-ingest run`` of an application on this host (it holds a worker-slot lock)."""

    pid: int
    lock: Path


def local_workers(state_dir: Path, application: str) -> list[LocalWorker]:
    """The live workers of ``application`` started with this ``QM_STATE_DIR``."""
    found: list[LocalWorker] = []
    for path in sorted(state_dir.glob(f"worker-{application}-*.lock")):
        if _lock_free(path):
            continue
        try:
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
        found.append(LocalWorker(pid, path))
    return found


def _lock_free(path: Path) -> bool:
    try:
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            fcntl.flock(handle, fcntl.LOCK_UN)
            return True
    except OSError:
        return True


def stop_local_workers(workers: list[LocalWorker], timeout: float = 30.0) -> list[LocalWorker]:
    """SIGTERM each worker (the KCL checkpoints and releases its leases) and wait for it
    to let go of its slot. Returns the workers still running after ``timeout``."""
    for worker in workers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(worker.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    running = list(workers)
    while running and time.monotonic() < deadline:
        time.sleep(0.2)
        running = [w for w in running if not _lock_free(w.lock)]
    return running


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def release_own_leader_lock(aws: AwsClients, application: str, worker_id: str) -> bool:
    """Delete the KCL leader lock if it names *this* worker id (a dead earlier incarnation).

    KCL 3.x keeps its leader lock in ``<app>-CoordinatorState`` with a 120 s lease. Our
    worker id is exclusive on this host (``WorkerSlot``), so a lock in our name cannot
    belong to a live process. The delete is conditional on the lock being unchanged.
    """
    table = f"{application}-CoordinatorState"
    try:
        item = aws.dynamodb.get_item(TableName=table, Key={"key": {"S": "Leader"}}, ConsistentRead=True).get(
            "Item"
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ResourceNotFoundException":
            return False
        raise
    if not item or item.get("ownerName", {}).get("S") != worker_id:
        return False
    try:
        aws.dynamodb.delete_item(
            TableName=table,
            Key={"key": {"S": "Leader"}},
            ConditionExpression="ownerName = :o AND recordVersionNumber = :r",
            ExpressionAttributeValues={":o": {"S": worker_id}, ":r": item["recordVersionNumber"]},
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
            return False
        raise
    log.info("released the leader lock of this worker's previous run", application=application)
    return True


class KclDaemon:
    """One MultiLangDaemon child process for one KCL application."""

    def __init__(
        self, settings: Settings, aws: AwsClients, app: KclApplication, log_socket: str | None
    ) -> None:
        self.settings = settings
        self.app = app
        self._aws = aws
        self._log_socket = log_socket
        self._proc: subprocess.Popen[bytes] | None = None
        self._pumps: list[threading.Thread] = []
        self.started_at: float | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> None:
        state = Path(self.settings.state_dir) / "kcl"
        state.mkdir(parents=True, exist_ok=True)
        release_own_leader_lock(self._aws, self.app.application_name, self.app.worker_id)
        props = state / f"{self.app.application_name}.properties"
        executable = processor_executable(self.app.processor_module, state)
        props.write_text(properties(self.settings, self.app, executable))
        env = child_environment(self.settings)
        if self._log_socket:
            env[LOG_SOCKET_ENV] = self._log_socket
        command = java_command(self.settings, props)
        on_main_thread = threading.current_thread() is threading.main_thread()
        die_with_run = parent_death.preexec() if on_main_thread else None
        log.info(
            "starting KCL MultiLangDaemon",
            application=self.app.application_name,
            stream=self.app.stream_name,
            worker_id=self.app.worker_id,
        )
        self._proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            start_new_session=True,  # its own process group: record processors included
            # It dies with `run`: the signal follows the thread that starts it, so only from the
            # main thread. The hook makes one prctl call, resolved before the fork.
            preexec_fn=die_with_run,  # noqa: PLW1509
        )
        self.started_at = time.monotonic()
        from processor.platform import metrics

        metrics.kcl_daemon_starts.labels(application=self.app.application_name).inc()
        for stream in (self._proc.stdout, self._proc.stderr):
            assert stream is not None
            pump = threading.Thread(target=self._pump, args=(stream,), name="kcl-log", daemon=True)
            pump.start()
            self._pumps.append(pump)

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc else None

    def request_stop(self) -> None:
        """SIGTERM: the KCL asks each record processor to checkpoint and releases its leases."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = _STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (unless :meth:`request_stop` sent it), wait, then SIGKILL the group."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            self.request_stop()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.warning(
                    "KCL daemon did not stop in time; killing it", application=self.app.application_name
                )
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
        for pump in self._pumps:
            pump.join(timeout=2)
        return code

    def kill(self) -> None:
        """Fault injection: SIGKILL the daemon and its record processors at once."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def _pump(self, stream: IO[bytes]) -> None:
        level = "info"
        verbose = self.settings.log_level == "DEBUG"
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace").rstrip()
            if not line:
                continue
            match = _KCL_LINE.match(line)
            if match:
                level = match.group("level").lower()
                message = match.group("msg").strip()
                logger = match.group("logger")
            else:
                message, logger = line, "kcl"
            if level in ("warn", "warning", "error") or verbose:
                emit: Any = (
                    log.error if level == "error" else log.warning if level.startswith("warn") else log.info
                )
                emit(message, source="kcl", kcl_logger=logger, application=self.app.application_name)
