"""Structured logs: JSON lines on stderr (stdout belongs to the KCL protocol).

Personal data never reaches a log line in clear: values under keys that name phone
numbers or endpoints are masked, and any ``+digits`` run in a free-text field is masked too.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import MutableMapping
from typing import Any

import structlog

_SENSITIVE_KEY = re.compile(r"(number|phone|address|endpoint|calling|called|ani|dnis)", re.IGNORECASE)
# Phone numbers in free text: "+" and 7..15 digits (formatting allowed), or a bare run of
# 10..15 digits that is not part of an identifier (shardId-000000000001, ARNs' account ids,
# 50-digit Kinesis sequence numbers, dates and times are left alone).
_PHONE_IN_TEXT = re.compile(
    r"\+\d(?:[\s().-]{0,2}\d){6,14}(?!\d)"  # E.164 and international, however spaced
    r"|(?<![\w:/.+-])\d{10,15}(?![\w])"  # a bare national or international number
    r"|(?<![\w])\(\d{2,4}\)[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?![\w])"  # (918) 269-0528
    r"|(?<![\w.:/-])\d{3}[\s.-]\d{3}[\s.-]\d{4}(?![\w.-])"  # 918-269-0528, 918.269.0528
)
_SAFE_KEYS = frozenset(
    {"sequence_number", "seq", "shard_id", "byte_offset", "records", "count", "timestamp", "level", "logger"}
)


def mask_phone(value: str) -> str:
    """``+19182690528`` -> ``+*********28``: the last two digits help support, no more."""
    digits = [c for c in value if c.isdigit()]
    if len(digits) <= 2:
        return "*" * len(value)
    prefix = "+" if value.strip().startswith("+") else ""
    return prefix + "*" * (len(digits) - 2) + "".join(digits[-2:])


def _mask_text(text: str) -> str:
    return _PHONE_IN_TEXT.sub(lambda m: mask_phone(m.group(0)), text)


def _mask_value(key: str, value: Any) -> Any:
    if key in _SAFE_KEYS:
        return value
    if isinstance(value, str):
        if _SENSITIVE_KEY.search(key):
            return mask_phone(value) if any(c.isdigit() for c in value) else value
        return _mask_text(value)
    if isinstance(value, dict):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_value(key, v) for v in value]
    return value


def mask_personal_data(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event_dict):
        event_dict[key] = _mask_value(key, event_dict[key])
    return event_dict


_configured = False
_process_context: dict[str, Any] = {}


def bind_process_context(**values: Any) -> None:
    """Fields added to every log line of this process, from every thread (a record
    processor's stream and shard). Unlike contextvars, pool threads see them too."""
    _process_context.update(values)


def _add_process_context(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key, value in _process_context.items():
        event_dict.setdefault(key, value)
    return event_dict


LOG_SOCKET_ENV = "QM_LOG_SOCKET"


class DatagramLineWriter:
    """A file-like sink that sends each log line as one datagram to the supervisor.

    Record processors are children of the Java daemon, which would wrap their stderr
    lines in its own log format; instead they send JSON lines over an abstract UNIX
    datagram socket to ``qm-ingest run``, which writes them to its stderr unchanged.
    One datagram per line: lines from concurrent processes never interleave.
    """

    def __init__(self, address: str, fallback: Any) -> None:
        self._address = "\0" + address
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._fallback = fallback
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            try:
                self._sock.sendto(line.encode(), self._address)
            except OSError:
                self._fallback.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self._fallback.flush()

    def isatty(self) -> bool:
        return False


class LogRelay:
    """The supervisor's end of :class:`DatagramLineWriter`: datagrams -> stderr lines."""

    def __init__(self, out: Any = None) -> None:
        self.address = f"qm-ingest-log-{os.getpid()}-{id(self):x}"
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        self._sock.bind("\0" + self.address)
        self._sock.settimeout(0.5)
        self._out = out or sys.stderr
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="log-relay", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 20)
            except TimeoutError:
                continue
            except OSError:
                return
            with contextlib.suppress(Exception):
                self._out.write(data.decode(errors="replace") + "\n")
                self._out.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close()


class _CurrentStderr:
    """Whatever ``sys.stderr`` is when a line is written, not when logging was configured
    (a caller that swaps stderr for a while, and closes its stand-in, must not take the
    process's logging down with it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(level: str = "INFO", fmt: str = "json", *, stream: Any = None) -> None:
    """Configure structlog and the stdlib root logger (boto, moto) once per process."""
    global _configured  # noqa: PLW0603 - logging is process-wide by nature
    out: Any = stream or _CurrentStderr()
    relay = os.environ.get(LOG_SOCKET_ENV)
    if stream is None and relay and hasattr(socket, "AF_UNIX"):
        out = DatagramLineWriter(relay, sys.stderr)
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
    else:
        renderer = structlog.processors.JSONRenderer(serializer=_orjson_dumps)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        _add_process_context,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_personal_data,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # One write per line (print() writes the newline separately, and the log relay thread
        # writing to the same stderr could land between the two).
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[*shared[1:], _drop_meta, renderer], foreign_pre_chain=[]
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Third-party loggers stay at WARNING: botocore's DEBUG output contains request bodies.
    root.setLevel(logging.WARNING)
    logging.getLogger("processor").setLevel(level)
    _configured = True


def _drop_meta(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    event_dict.pop("_record", None)
    event_dict.pop("_from_structlog", None)
    return event_dict


def _orjson_dumps(obj: Any, **_: Any) -> str:
    import orjson

    return orjson.dumps(obj, default=str).decode()


def get_logger(name: str) -> Any:
    if not _configured:
        configure_logging()
    return structlog.get_logger(name)
