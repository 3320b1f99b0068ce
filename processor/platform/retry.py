"""Retrying transient failures (throttling, 5xx, network), never poison input.

botocore already retries each call a few times; this is the outer loop for when AWS or
the emulator is away for longer (an outage): exponential backoff with jitter, capped,
forever by default on the stream path (a shard must never skip a record), bounded for
interactive commands.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_never,
    wait_random_exponential,
)

from processor.adapters.aws import error_code, is_transient
from processor.platform.logs import get_logger

T = TypeVar("T")
log = get_logger("processor.platform.retry")

#: Called with the error code of each retried failure (metrics hook).
on_retry_hooks: list[Callable[[str, str], None]] = []


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        code = error_code(exc) if exc else "unknown"
        for hook in on_retry_hooks:
            hook(what, code)
        log.warning(
            "transient failure, retrying",
            operation=what,
            error=code,
            attempt=state.attempt_number,
            sleep_s=round(state.upcoming_sleep, 2),
        )

    return before_sleep


def retry_transient(fn: Callable[[], T], what: str, *, max_seconds: float | None = None) -> T:
    """Run ``fn``; retry it while it fails transiently. Other errors propagate at once."""
    retrying = Retrying(
        retry=retry_if_exception(is_transient),
        wait=wait_random_exponential(multiplier=0.2, max=20),
        stop=stop_after_delay(max_seconds) if max_seconds is not None else stop_never,
        before_sleep=_log_retry(what),
        reraise=True,
    )
    return retrying(fn)
