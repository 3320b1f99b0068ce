"""The embedded AWS emulator: moto's backends behind hypercorn, on one port.

Why this combination (measured, see docs/architecture.md, "Embedded AWS emulator"):

* moto serves Kinesis, DynamoDB, S3 and SQS in one process, with S3 -> SQS event
  notifications and ranged GETs, at ~10k records/s on this machine kind.
* The KCL's Kinesis client (AWS SDK for Java v2) insists on HTTP/2; moto's own
  Werkzeug server only speaks HTTP/1.1 and answers ``505``. hypercorn speaks HTTP/1.1
  and cleartext HTTP/2 on the same port, so boto3 and the KCL share the endpoint.

Run it with ``qm-ingest local up`` (detached) or ``python -m processor.local.server``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any

HEALTH_PATH = "/_qm/health"
SERVER_NAME = "qm-ingest-emulator"

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def build_app() -> WsgiApp:
    """moto's multi-service WSGI app with a small health route in front of it."""
    from moto.server import DomainDispatcherApplication, create_backend_app  # type: ignore[attr-defined]

    from processor.local import iam_enforcement, moto_patches

    moto_patches.apply()
    iam_enforcement.apply()
    moto_app = DomainDispatcherApplication(create_backend_app)
    body = f'{{"server":"{SERVER_NAME}","pid":{os.getpid()}}}'.encode()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == HEALTH_PATH:
            return _json(start_response, body)
        if environ.get("PATH_INFO") == iam_enforcement.ROUTE:
            return _json(start_response, _iam_route(environ))
        return _at_least_one_chunk(moto_app(environ, start_response))

    return app


def _json(start_response: Callable[..., Any], body: bytes) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


def _iam_route(environ: dict[str, Any]) -> bytes:
    """``POST {"enforce": bool}`` switches IAM enforcement; ``GET [?clear=1]`` reads its
    decisions (processor/local/iam_enforcement.py). The emulator listens on 127.0.0.1."""
    import orjson

    from processor.local import iam_enforcement

    if environ.get("REQUEST_METHOD") == "POST":
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = orjson.loads(environ["wsgi.input"].read(length) or b"{}")
        iam_enforcement.enforce(bool(request.get("enforce")))
    clear = "clear=1" in (environ.get("QUERY_STRING") or "")
    return orjson.dumps(
        {"enforce": iam_enforcement.enforcing(), "decisions": iam_enforcement.decisions(clear=clear)}
    )


def _at_least_one_chunk(body: Iterable[bytes]) -> Iterator[bytes]:
    """hypercorn's WSGI adapter only sends the response head with the first body chunk,
    so an empty body (HEAD, 204) would never be answered: yield one empty chunk then."""
    sent = False
    try:
        for chunk in body:
            sent = True
            yield chunk
        if not sent:
            yield b""
    finally:
        close = getattr(body, "close", None)
        if close is not None:
            close()


async def _serve(host: str, port: int) -> None:
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = "-"
    config.loglevel = "WARNING"
    config.keep_alive_timeout = 75
    # Kinesis records are up to 1 MiB and PutRecords batches up to 5 MiB.
    config.wsgi_max_body_size = 64 * 1024 * 1024
    config.h2_max_concurrent_streams = 256

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(build_app(), config, mode="wsgi", shutdown_trigger=stop.wait)


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
