"""The embedded AWS emulator: moto's backends behind hypercorn, on one port.

Why this combination (measured, see docs/architecture.md, "Embedded AWS emulator"):

* moto serves Kinesis, DynamoDB, S3 and SQS in one process, with S3 -> SQS event
  notifications and ranged GETs, at ~10k records/s on this machine kind.
* The KCL's Kinesis client (AWS SDK for Java v2) insists on HTTP/2; moto's own
  Werkzeug server only speaks HTTP/1.1 and answers ``505``. hypercorn speaks HTTP/1.1
  and cleartext HTTP/2 on the same port, so boto3 and the KCL share the endpoint.

Run it with ``qm-ingest local up`` (detached) or ``python -m processor.devtools.emulator.moto_server``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterable
from typing import Any, cast

HEALTH_PATH = "/_qm/health"
SERVER_NAME = "qm-ingest-emulator"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def build_app() -> WsgiApp:
    """moto's multi-service WSGI app with a small health route in front of it."""
    from moto.server import DomainDispatcherApplication, create_backend_app  # type: ignore[attr-defined]

    from processor.devtools.emulator import iam_enforcement, moto_patches

    moto_patches.apply()
    iam_enforcement.apply()
    moto_app = DomainDispatcherApplication(create_backend_app)
    body = f'{{"server":"{SERVER_NAME}","pid":{os.getpid()}}}'.encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            return _json(start_response, body)
        if environ.get("PATH_INFO") == iam_enforcement.ROUTE:
            return _json(start_response, _iam_route(environ))
        return cast(Iterable[bytes], moto_app(environ, start_response))

    return app


def _json(start_response: Callable[..., Any], body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _iam_route(environ: dict[str, Any]) -> bytes:
    """``POST {"enforce": bool}`` switches IAM enforcement; ``GET [?clear=1]`` reads its
    decisions (processor/devtools/emulator/iam_enforcement.py). The emulator listens on 127.0.0.1."""
    import orjson

    from processor.devtools.emulator import iam_enforcement

    if environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = orjson.loads(environ["wsgi.input"].read(length) or b"{}")
        iam_enforcement.enforce(bool(request.get("enforce")))
    clear = "clear=1" in (environ.get("QUERY_STRING") or "")
    return orjson.dumps(
        {"enforce": iam_enforcement.enforcing(), "decisions": iam_enforcement.decisions(clear=clear)}
    )


#: Requests the emulator works on at once. Each is a thread (moto is synchronous) and an
#: SQS long poll holds its thread for the whole wait: asyncio's default executor (cpu + 4
#: threads, 6 on two cores) let a few idle consumers' polls queue every other request.
WORKER_THREADS = 64
#: Kinesis records are up to 1 MiB and PutRecords batches up to 5 MiB.
MAX_BODY_BYTES = 64 * 1024 * 1024


class WsgiOverAsgi:
    """moto's WSGI app served as an ASGI app: each request runs whole in a worker thread,
    its response buffered there and sent from the event loop in one step (head and body).

    hypercorn's own WSGI mode crosses from the worker thread to the loop and back once for
    the head and once for every body chunk (a ``run_coroutine_threadsafe`` each): a quarter
    of the emulator's CPU went into those hops and waking the loop (measured with a sampling
    profiler). moto's responses are built in memory, so buffering costs nothing, and a
    response always has a head even when its body is empty (HEAD, 204)."""

    def __init__(self, app: WsgiApp, *, threads: int = WORKER_THREADS) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.app = app
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="emulator")

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.pool.shutdown(wait=False, cancel_futures=True)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body.extend(message.get("body", b""))
            if len(body) > MAX_BODY_BYTES:
                await send({"type": "http.response.start", "status": 413, "headers": []})
                await send({"type": "http.response.body", "body": b""})
                return
            if not message.get("more_body"):
                break
        loop = asyncio.get_running_loop()
        status, headers, payload = await loop.run_in_executor(self.pool, self._run, scope, bytes(body))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})

    def _run(self, scope: dict[str, Any], body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
            answer[:] = [int(status.split(" ", 1)[0]), headers]

        result = self.app(wsgi_environ(scope, body), start_response)
        try:
            payload = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not answer:
            raise RuntimeError("the WSGI app did not call start_response")
        status, headers = answer
        return status, [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers], payload


def wsgi_environ(scope: dict[str, Any], body: bytes) -> dict[str, Any]:
    """The WSGI environ of an ASGI HTTP request (PEP 3333; the same keys hypercorn sets)."""
    from io import BytesIO

    server = scope.get("server") or ("localhost", 80)
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": "",
        "PATH_INFO": scope["path"].encode("utf8").decode("latin1"),
        "QUERY_STRING": scope["query_string"].decode("ascii"),
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    if scope.get("client") is not None:
        environ["REMOTE_ADDR"] = scope["client"][0]
    for raw_name, raw_value in scope.get("headers", []):
        name = raw_name.decode("latin1")
        if name == "content-length":
            key = "CONTENT_LENGTH"
        elif name == "content-type":
            key = "CONTENT_TYPE"
        else:
            key = "HTTP_" + name.upper().replace("-", "_")
        value = raw_value.decode("latin1")
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


async def _serve(host: str, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 75
    config.h2_max_concurrent_streams = 256

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # ASGI's message types are TypedDicts; this adapter's plain dicts carry the same keys.
    await serve(cast(Any, WsgiOverAsgi(build_app())), config, mode="asgi", shutdown_trigger=stop.wait)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="qm-ingest embedded AWS emulator (moto + hypercorn)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=4566)
    args = parser.parse_args(argv)
    # moto reads this to build ARNs and URLs; keep it consistent with the served port.
    os.environ.setdefault("MOTO_PORT", str(args.port))
    asyncio.run(_serve(args.host, args.port))


if __name__ == "__main__":
    main()
