"""The AWS CLI, imported once: a fork server for tests that run shell scripts calling ``aws``.

Each ``aws`` invocation spends about a second importing the CLI and loading its plugins before
it sends its one request; the LocalStack hook makes over forty of them per run. The server
imports ``awscli`` and builds its driver once, then forks a child per invocation, which runs
the real CLI (``CLIDriver.main``) with the caller's arguments, environment, working directory
and standard streams, and answers with its exit status. The ``aws`` that the script finds on
its ``PATH`` is a small client (:func:`install_shim`) that hands its own streams over the
server's Unix socket (SCM_RIGHTS) and exits with the status it gets back.

The commands, their output and their exit status are the CLI's own; only the start-up is
shared.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

_HEADER = struct.Struct("!I")
#: What the LocalStack hook calls (``s3api`` is the CLI's command for the s3 service).
WARM_SERVICES = ("dynamodb", "s3", "sqs", "kinesis")
SERVICE_COMMANDS = {"s3": "s3api"}


def _send(sock: socket.socket, payload: bytes, fds: list[int] | None = None) -> None:
    data = _HEADER.pack(len(payload)) + payload
    if fds:
        socket.send_fds(sock, [data], fds)
    else:
        sock.sendall(data)


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[bytes, list[int]]:
    data, fds, _, _ = socket.recv_fds(sock, 1 << 20, max_fds)
    if len(data) < _HEADER.size:
        raise ConnectionError("short message")
    (length,) = _HEADER.unpack_from(data)
    while len(data) < _HEADER.size + length:
        more = sock.recv(1 << 20)
        if not more:
            raise ConnectionError("message cut short")
        data += more
    return data[_HEADER.size : _HEADER.size + length], list(fds)


def _run_child(driver: object, request: dict[str, object], fds: list[int]) -> None:
    """In the forked child: become the caller's ``aws`` process and run the command."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    sys.stdin = os.fdopen(0, "r", closefd=False)
    sys.stdout = os.fdopen(1, "w", closefd=False)
    sys.stderr = os.fdopen(2, "w", closefd=False)
    os.environ.clear()
    os.environ.update(request["env"])  # type: ignore[arg-type]
    os.chdir(str(request["cwd"]))
    status = 255
    try:
        status = driver.main(list(request["args"]))  # type: ignore[attr-defined]
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status if isinstance(status, int) else 255)


def serve(path: str) -> None:
    from awscli.clidriver import create_clidriver

    driver = create_clidriver()
    driver._get_command_table()  # the command table loads the plugins and the service list
    # The models, endpoint rules and waiters of the services the scripts call, into the
    # session's loader cache that every child inherits.
    for service in WARM_SERVICES:
        client = driver.session.create_client(service, region_name="us-east-1")
        for name in client.waiter_names:
            client.get_waiter(name)
        driver._get_command_table()[SERVICE_COMMANDS.get(service, service)]._get_command_table()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(16)
        print("ready", flush=True)
        while True:
            conn, _ = server.accept()
            with conn:
                payload, fds = _receive(conn, max_fds=3)
                request = orjson.loads(payload)
                pid = os.fork()
                if pid == 0:
                    server.close()
                    _run_child(driver, request, fds)
                for fd in fds:
                    os.close(fd)
                _, wait_status = os.waitpid(pid, 0)
                _send(conn, str(os.waitstatus_to_exitcode(wait_status)).encode())


def client(path: str, args: list[str]) -> int:
    request = {"args": args, "env": dict(os.environ), "cwd": os.getcwd()}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)
        _send(sock, orjson.dumps(request), [0, 1, 2])
        answer, _ = _receive(sock)
    return int(answer)


SHIM = """#!{python} -S
import sys

sys.path.insert(0, {root!r})
sys.path[1:1] = {site!r}
from tests.warm_aws_cli import client

sys.exit(client({socket!r}, sys.argv[1:]))
"""


@contextlib.contextmanager
def warm_aws_cli(directory: Path) -> Iterator[Path]:
    """A directory holding an ``aws`` that runs each command in the warm server: put it first
    on a script's ``PATH``. The server stops when the context ends."""
    directory.mkdir(parents=True, exist_ok=True)
    path = str(directory / "aws.sock")
    root = str(Path(__file__).resolve().parents[1])
    server = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import sys; sys.path.insert(0, {root!r}); "
            f"from tests.warm_aws_cli import serve; serve({path!r})",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        deadline = time.monotonic() + 60
        while server.stdout.readline().strip() != "ready":
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the warm AWS CLI did not start")
        site = [p for p in sys.path if "site-packages" in p]
        shim = directory / "aws"
        shim.write_text(SHIM.format(python=sys.executable, root=root, site=site, socket=path))
        shim.chmod(0o755)
        yield directory
    finally:
        server.terminate()
        server.wait(timeout=10)
