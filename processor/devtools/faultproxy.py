"""A fault-injecting TCP proxy on 127.0.0.1, between the service and the emulator.

The fault suite points ``AWS_ENDPOINT_URL`` (boto3 and the KCL alike) at this proxy and
breaks the network on command:

* ``partition()`` — nothing passes either way; new connections are accepted and hang. Bytes
  in flight are held, and delivered after ``heal()``, as TCP would after a short partition.
  Clients see timeouts, not errors: the hardest outage to notice.
* ``refuse()`` — every open connection is reset (RST) and new ones are reset at once:
  ``connection reset`` / ``connection refused`` for every call until ``heal()``.
* ``reset_connections()`` — reset what is open now, then carry on.
* ``delay(seconds)`` — every chunk of every response waits this long (slow responses).
* ``latency(seconds)`` — every byte of every response arrives this much later, as over a
  long network path: chunks are timed as they come from the emulator and passed on that
  long after, in order, without waiting for each other, so a request costs one such delay
  however many chunks its answer takes and however many HTTP/2 streams share a connection
  (what the benchmarks add as an AWS round trip).
* ``inject(...)`` — answer matching HTTP/1.1 requests (boto3's, and the KCL's DynamoDB
  client) with a canned AWS error (throttling, 5xx, access denied) or a reset, for a
  number of requests, without reaching the emulator. HTTP/2 connections (the KCL's Kinesis
  client) pass through untouched.

Why not Toxiproxy (design.md §6): its latency/timeout/reset toxics cover the first four,
but it cannot answer a request with an AWS error, which is how throttling and 5xx reach
the service; and it would need the Go toolchain and a second process with its own control
API. This proxy is ~300 lines of asyncio in the repository, runs on a thread of the test
process, and is driven by plain method calls.

It only ever listens on, and connects to, loopback. ``python -m processor.devtools.faultproxy``
runs it standalone with an HTTP control port (see :func:`main`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import struct
import threading
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, TypeVar

import orjson

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
CHUNK = 64 * 1024
MAX_HEAD = 64 * 1024
#: Request bodies up to this size are read before deciding on an injection (to match on them).
MAX_MATCHED_BODY = 256 * 1024
H2_PREFACE = b"PRI * HTTP/2.0"

T = TypeVar("T")


@dataclass
class Injection:
    """Answer matching HTTP/1.1 requests with ``status`` + ``body`` (or a reset) ``times`` times.

    A request matches when its ``X-Amz-Target`` header contains ``target`` (when given), its
    request line contains ``path`` (when given), and its head or body contains ``contains``
    (when given).
    """

    status: int = 500
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    path: str | None = None
    contains: bytes | None = None
    times: int | None = 1  # None: until cleared
    reset: bool = False  # reset the connection instead of answering
    hits: int = 0

    def matches(self, head: bytes, body: bytes, target: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.target is not None and self.target not in target:
            return False
        request_line = head.split(b"\r\n", 1)[0]
        if self.path is not None and self.path.encode() not in request_line:
            return False
        return self.contains is None or self.contains in head or self.contains in body

    def response(self) -> bytes:
        try:
            reason = HTTPStatus(self.status).phrase
        except ValueError:
            reason = "Error"
        headers = {
            "Content-Length": str(len(self.body)),
            "x-amzn-RequestId": str(uuid.uuid4()),
            "Connection": "close",
            **self.headers,
        }
        head = f"HTTP/1.1 {self.status} {reason}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return head.encode() + b"\r\n" + self.body


def aws_json_error(code: str, message: str = "injected by the fault proxy", status: int = 400) -> Injection:
    """An error as the JSON protocols (DynamoDB, Kinesis, SQS) send it."""
    return Injection(
        status=status,
        body=orjson.dumps({"__type": code, "message": message}),
        headers={"Content-Type": "application/x-amz-json-1.0", "x-amzn-ErrorType": code},
    )


def s3_error(code: str, message: str, *, status: int, path: str, times: int | None = 1) -> Injection:
    """An error as S3 sends it (REST-XML), on requests whose request line contains ``path``."""
    return Injection(
        status=status,
        body=f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>{message}</Message></Error>".encode(),
        headers={"Content-Type": "application/xml"},
        path=path,
        times=times,
    )


def throttling(
    target: str | None = None, *, contains: bytes | None = None, times: int | None = 1
) -> Injection:
    """DynamoDB's throttling error (botocore's standard retry mode retries it, then raises it)."""
    rule = aws_json_error(
        "ProvisionedThroughputExceededException", "Rate of requests exceeds the allowed rate"
    )
    rule.target, rule.contains, rule.times = target, contains, times
    return rule


def server_error(
    target: str | None = None, *, contains: bytes | None = None, times: int | None = 1
) -> Injection:
    rule = aws_json_error("InternalServerError", "injected 500", status=500)
    rule.target, rule.contains, rule.times = target, contains, times
    return rule


@dataclass
class ProxyStats:
    connections: int = 0
    resets: int = 0
    injected: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


class FaultProxy:
    """``127.0.0.1:<port>`` -> ``upstream_host:upstream_port``, with faults on command."""

    def __init__(self, upstream_port: int, *, port: int = 0, upstream_host: str = "127.0.0.1") -> None:
        if upstream_host not in LOOPBACK:
            raise ValueError(f"the fault proxy only connects to loopback, not {upstream_host}")
        self.upstream = (upstream_host, upstream_port)
        self._requested_port = port
        self.port = 0
        self.stats = ProxyStats()
        self._rules: list[Injection] = []
        self._lock = threading.Lock()
        self._refusing = False
        self._delay = 0.0
        self._latency = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._open: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # --- lifecycle ----------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        self._thread = threading.Thread(target=self._run, name="fault-proxy", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise RuntimeError(f"the fault proxy did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._call(self._shutdown())
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self._requested_port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        assert self._open is not None
        self._open.set()
        for writer in list(self._writers):
            writer.transport.abort()
        # Every connection's tasks end here, not as "destroyed but pending" when the loop closes.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # --- faults (called from any thread) ------------------------------------------------------
    def partition(self) -> None:
        """Nothing passes until :meth:`heal`; connections hang (timeouts, not errors)."""
        self._call(self._set_open(False))

    def heal(self) -> None:
        """Back to normal: held bytes flow, new connections reach the upstream."""
        self._refusing = False
        self._call(self._set_open(True))

    def refuse(self) -> None:
        """Reset every open connection and every new one until :meth:`heal`."""
        self._refusing = True
        self.reset_connections()

    def reset_connections(self) -> int:
        """Reset (RST) every open connection now; returns how many."""
        return self._call(self._reset_all())

    def delay(self, seconds: float) -> None:
        """Every chunk of every response waits ``seconds`` (0 turns it off)."""
        self._delay = max(0.0, seconds)

    def latency(self, seconds: float) -> None:
        """Every response byte arrives ``seconds`` later, chunks not waiting for each other
        (0 turns it off)."""
        self._latency = max(0.0, seconds)

    def inject(self, rule: Injection) -> Injection:
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Every fault off: no injections, no delay or latency, no partition, no refusal."""
        with self._lock:
            self._rules.clear()
        self._delay = 0.0
        self._latency = 0.0
        self.heal()

    async def _set_open(self, value: bool) -> None:
        assert self._open is not None
        if value:
            self._open.set()
        else:
            self._open.clear()

    async def _reset_all(self) -> int:
        writers = list(self._writers)
        for writer in writers:
            _rst(writer)
        self.stats.resets += len(writers)
        return len(writers)

    # --- connections --------------------------------------------------------------------
    async def _handle(self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        self._writers.add(client)
        upstream: asyncio.StreamWriter | None = None
        try:
            if self._refusing:
                _rst(client)
                self.stats.resets += 1
                return
            await self._gate()
            try:
                upstream_reader, upstream = await asyncio.open_connection(*self.upstream)
            except OSError:
                _rst(client)
                self.stats.resets += 1
                return
            self._writers.add(upstream)
            down = asyncio.create_task(self._pump_down(upstream_reader, client))
            up = asyncio.create_task(self._pump_up(client_reader, upstream, client))
            await asyncio.wait({down, up}, return_when=asyncio.FIRST_COMPLETED)
            if up.done() and not up.cancelled() and up.exception() is None and up.result():
                # The client finished sending: pass the end on and let the answer come back.
                with contextlib.suppress(OSError, RuntimeError):
                    if upstream.can_write_eof():
                        upstream.write_eof()
                with contextlib.suppress(Exception):
                    await down
            for task in (down, up):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        finally:
            for writer in (client, upstream):
                if writer is not None:
                    self._writers.discard(writer)
                    with contextlib.suppress(Exception):
                        writer.close()

    async def _gate(self) -> None:
        assert self._open is not None
        await self._open.wait()

    async def _pump_down(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        # Chunks read, each with the time it is due at the client (latency), in order.
        due: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(due, client))
        try:
            while chunk := await reader.read(CHUNK):
                await self._gate()
                if deliver.done():
                    break  # the client is gone (its error is raised below)
                due.put_nowait((loop.time() + self._latency, chunk))
            due.put_nowait(None)
            await deliver
        finally:
            # Not awaited: this runs also when the proxy stops and its coroutines are closed.
            deliver.cancel()

    async def _deliver(
        self, due: asyncio.Queue[tuple[float, bytes] | None], client: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        while (item := await due.get()) is not None:
            at, chunk = item
            if (wait := at - loop.time()) > 0:
                await asyncio.sleep(wait)
            await self._gate()
            if self._delay:
                await asyncio.sleep(self._delay)
            client.write(chunk)
            self.stats.bytes_down += len(chunk)
            await client.drain()

    async def _forward(self, upstream: asyncio.StreamWriter, data: bytes) -> None:
        await self._gate()
        upstream.write(data)
        self.stats.bytes_up += len(data)
        await upstream.drain()

    async def _pump_up(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> bool:
        """Client -> upstream. True when the client ended its side (the answer may still come);
        False when the proxy answered itself and the connection is to be closed."""
        first = await reader.read(CHUNK)
        if not first:
            return True
        if first.startswith(H2_PREFACE[:3]):
            # HTTP/2 (the KCL's Kinesis client): bytes as they come, no injection.
            await self._forward(upstream, first)
            while chunk := await reader.read(CHUNK):
                await self._forward(upstream, chunk)
            return True
        buffer = bytearray(first)
        while True:
            request = await _read_request_head(reader, buffer)
            if request is None:
                if buffer:
                    await self._forward(upstream, bytes(buffer))
                return True
            if not await self._one_request(reader, upstream, client, buffer, request):
                return False

    async def _one_request(
        self,
        reader: asyncio.StreamReader,
        upstream: asyncio.StreamWriter,
        client: asyncio.StreamWriter,
        buffer: bytearray,
        request: tuple[bytes, int, bool, bool],
    ) -> bool:
        """Pass one HTTP/1.1 request on, or answer it (False: the connection is to be closed)."""
        head, length, chunked, expects_continue = request
        body = b""
        if not chunked and not expects_continue and length <= MAX_MATCHED_BODY:
            while len(buffer) < length:
                more = await reader.read(CHUNK)
                if not more:
                    return False
                buffer += more
            body = bytes(buffer[:length])
            del buffer[:length]
            length = 0
        rule = self._match(head, body)
        if rule is not None:
            await self._gate()
            if rule.reset:
                _rst(client)
                self.stats.resets += 1
            else:
                client.write(rule.response())
                await client.drain()
            return False  # the answer closes the connection: the client opens a new one
        await self._forward(upstream, head + body)
        if chunked:
            await self._forward_chunked(reader, upstream, buffer)
        else:
            await self._forward_exactly(reader, upstream, buffer, length)
        return True

    def _match(self, head: bytes, body: bytes) -> Injection | None:
        target = ""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"x-amz-target":
                target = value.strip().decode(errors="replace")
        with self._lock:
            for rule in self._rules:
                if rule.matches(head, body, target):
                    rule.hits += 1
                    self.stats.injected += 1
                    return rule
        return None

    async def _forward_exactly(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, buffer: bytearray, length: int
    ) -> None:
        take = min(length, len(buffer))
        if take:
            await self._forward(upstream, bytes(buffer[:take]))
            del buffer[:take]
            length -= take
        while length > 0:
            chunk = await reader.read(min(CHUNK, length))
            if not chunk:
                return
            await self._forward(upstream, chunk)
            length -= len(chunk)

    async def _forward_chunked(
        self, reader: asyncio.StreamReader, upstream: asyncio.StreamWriter, buffer: bytearray
    ) -> None:
        while True:
            line = await _read_line(reader, buffer)
            if line is None:
                return
            await self._forward(upstream, line)
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                # Trailers, up to the empty line.
                while (trailer := await _read_line(reader, buffer)) is not None:
                    await self._forward(upstream, trailer)
                    if trailer == b"\r\n":
                        return
                return
            await self._forward_exactly(reader, upstream, buffer, size + 2)


async def _read_line(reader: asyncio.StreamReader, buffer: bytearray) -> bytes | None:
    while b"\r\n" not in buffer:
        more = await reader.read(CHUNK)
        if not more:
            return None
        buffer += more
    end = buffer.index(b"\r\n") + 2
    line = bytes(buffer[:end])
    del buffer[:end]
    return line


async def _read_request_head(
    reader: asyncio.StreamReader, buffer: bytearray
) -> tuple[bytes, int, bool, bool] | None:
    """The next request's head (taken out of ``buffer``), its body length, whether it is
    chunked and whether it waits for ``100 Continue``; None at the end of the connection."""
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD:
            return None
        more = await reader.read(CHUNK)
        if not more:
            return None
        buffer += more
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    length, chunked, expects_continue = 0, False, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value.strip() or b"0")
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"expect" and b"100-continue" in value.lower():
            expects_continue = True
    return head, length, chunked, expects_continue


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a crashed or unreachable peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


# --- standalone ------------------------------------------------------------------------------
def _control_handler(proxy: FaultProxy) -> Callable[..., Any]:
    from http.server import BaseHTTPRequestHandler
    from urllib.parse import parse_qs, urlsplit

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            action = url.path.strip("/")
            if action == "partition":
                proxy.partition()
            elif action == "heal":
                proxy.heal()
            elif action == "refuse":
                proxy.refuse()
            elif action == "reset":
                proxy.reset_connections()
            elif action == "delay":
                proxy.delay(float(query.get("seconds", "0")))
            elif action == "latency":
                proxy.latency(float(query.get("seconds", "0")))
            elif action == "inject":
                rule = aws_json_error(
                    query.get("code", "InternalServerError"), status=int(query.get("status", "500"))
                )
                rule.target = query.get("target")
                rule.times = int(query["times"]) if "times" in query else None
                proxy.inject(rule)
            elif action == "clear":
                proxy.clear()
            else:
                self._send(404, {"error": f"unknown action {action}"})
                return
            self._send(200, {"ok": True, "stats": proxy.stats.__dict__})

        def do_GET(self) -> None:
            self._send(200, proxy.stats.__dict__)

        def _send(self, status: int, doc: Any) -> None:
            body = orjson.dumps(doc) + b"\n"
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    return Handler


def main(argv: list[str] | None = None) -> None:
    """``python -m processor.devtools.faultproxy --upstream-port 4566 --port 4567 --control-port 4568``;
    then e.g. ``curl -X POST 127.0.0.1:4568/partition``, ``/heal``, ``/refuse``, ``/reset``,
    ``/delay?seconds=2``, ``/latency?seconds=0.01``, ``/clear``, and
    ``/inject?target=DynamoDB_20120810.PutItem&code=ThrottlingException&status=400&times=5``;
    ``GET /`` shows the counters."""
    from http.server import ThreadingHTTPServer

    parser = argparse.ArgumentParser(description="fault-injecting TCP proxy on 127.0.0.1")
    parser.add_argument("--upstream-port", type=int, required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--control-port", type=int, default=0)
    args = parser.parse_args(argv)
    proxy = FaultProxy(args.upstream_port, port=args.port).start()
    control = ThreadingHTTPServer(("127.0.0.1", args.control_port), _control_handler(proxy))
    print(  # noqa: T201 - the command's own output
        f"fault proxy {proxy.endpoint} -> 127.0.0.1:{args.upstream_port}; "
        f"control http://127.0.0.1:{control.server_address[1]}",
        flush=True,
    )
    try:
        control.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        control.server_close()
        proxy.stop()


if __name__ == "__main__":
    main()
