"""Every exception qm-ingest raises on purpose, in one place.

Two families matter to the stream path:

* :class:`InvalidInput` — the input itself is bad (poison). It carries the raw payload,
  where it came from and a machine-readable reason, and is handled in exactly one place:
  the quarantine. Retrying it can never succeed.
* :class:`TransientError` — the world is temporarily unavailable (throttling, 5xx,
  connection refused). It is retried with backoff and never quarantined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class QmIngestError(Exception):
    """Base of every deliberate qm-ingest error."""


class ConfigurationError(QmIngestError):
    """Settings are missing or invalid; the message says which and how to fix it."""


@dataclass(frozen=True)
class SourcePosition:
    """Where an input came from: enough to find it again and to replay it."""

    source: str  # "kinesis", "sqs", "s3", "file"
    stream_or_queue: str | None = None
    shard_id: str | None = None
    sequence_number: str | None = None
    object_key: str | None = None
    byte_offset: int | None = None
    index: int | None = None  # position in a file or batch (0-based)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    def describe(self) -> str:
        parts = [self.source]
        for name in ("stream_or_queue", "shard_id", "sequence_number", "object_key", "byte_offset", "index"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value}")
        return " ".join(parts)


class InvalidInput(QmIngestError):
    """A record that can never be processed as it is: quarantine it, never retry it.

    ``reason`` is a short stable code (``bad_json``, ``schema``, ``oversized``,
    ``foreign_instance``, ...) used as a metric label; ``detail`` is for people.
    """

    def __init__(
        self,
        reason: str,
        detail: str,
        *,
        payload: bytes | None = None,
        position: SourcePosition | None = None,
    ) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.payload = payload
        self.position = position

    @classmethod
    def processing_error(
        cls, exc: BaseException, payload: bytes, position: SourcePosition | None = None
    ) -> InvalidInput:
        """A failure only this record causes (see ``fails_the_batch`` for the others)."""
        return cls(
            "processing_error", f"{type(exc).__name__}: {str(exc)[:500]}", payload=payload, position=position
        )

    def at(self, position: SourcePosition, payload: bytes | None = None) -> InvalidInput:
        """The same error, located (the parser does not know where its input came from)."""
        return InvalidInput(
            self.reason,
            self.detail,
            payload=payload if payload is not None else self.payload,
            position=position,
        )


class TransientError(QmIngestError):
    """A dependency failed in a way that a later attempt may fix (throttling, 5xx, network)."""


class ResourceMissing(QmIngestError):
    """A stream, table, bucket or queue does not exist: run ``qm-ingest bootstrap``."""


@dataclass
class ProblemReport:
    """A list of human-readable problems, each with the fix (doctor, validation)."""

    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, problem: str, fix: str) -> None:
        self.problems.append((problem, fix))

    def __bool__(self) -> bool:
        return bool(self.problems)


class EnvelopeError(QmIngestError):
    """An encrypted screen recording cannot be opened (see ``processor.core.envelope``)."""


class TamperedEnvelope(EnvelopeError):
    """Authentication failed: the file was modified, or it is not ours. Never played."""


class TruncatedEnvelope(EnvelopeError):
    """The file ends before its final chunk: cut off in transfer, on disk, or by a crash."""


class KeyMismatch(EnvelopeError):
    """The file was encrypted for another key than the one offered."""


class SegmentUnavailable(QmIngestError):
    """A screen segment the desktop needs is missing or cannot be read (with the reason)."""


class ReplayRefused(QmIngestError):
    """A replay would move checkpoints under live workers; the message says which and how
    to go on (``--stop-workers`` or ``--force``)."""


class SessionLookupError(QmIngestError):
    """The PC's console session (who is logged on at the PC) could not be read; the desktop
    then serves no agent until it can."""


class OsLoginTaken(QmIngestError):
    """An operating-system login is already mapped to another QM user: one login, one agent."""
