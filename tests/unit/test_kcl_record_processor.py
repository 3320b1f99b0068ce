"""The KCL record processor: a batch that fails for no record's fault is retried in place
(the shard waits; nothing is skipped or checkpointed past it), and the processor exits only
where retrying cannot help."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import ClientError
from prometheus_client import REGISTRY

from processor.adapters.kcl import record_processor
from processor.adapters.kcl.parent_death import EXIT_PARENT_GONE
from processor.adapters.kcl.record_processor import EXIT_BATCH_FAILED, KclRecordProcessor
from processor.core.batch import BatchResult, StreamRecord

STREAM = "qm-ctr-test-rp"


class Exited(BaseException):  # like os._exit: nothing may catch it
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@pytest.fixture(autouse=True)
def no_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    def exit_now(code: int) -> None:
        raise Exited(code)

    monkeypatch.setattr(record_processor, "exit_now", exit_now)


def denied() -> ClientError:
    return ClientError({"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}}, "PutItem")


@dataclass
class Handler:
    """Fails the first ``failures`` calls, then succeeds; remembers every batch it got."""

    failures: list[Exception] = field(default_factory=list)
    calls: list[list[bytes]] = field(default_factory=list)
    closed: bool = False

    def process(self, records: Sequence[StreamRecord]) -> BatchResult:
        self.calls.append([r.data for r in records])
        if self.failures:
            raise self.failures.pop(0)
        return BatchResult(read=len(records), created=len(records))

    def close(self) -> None:
        self.closed = True


class Record(dict):  # amazon_kclpy's records are dicts with attributes
    def __init__(self, data: bytes, sequence_number: str) -> None:
        super().__init__(data=base64.b64encode(data).decode())
        self.sequence_number = sequence_number
        self.sub_sequence_number = None


@dataclass
class Checkpointer:
    at: list[str | None] = field(default_factory=list)
    error: Exception | None = None

    def checkpoint(self, sequence_number: str | None = None, sub_sequence_number: int | None = None) -> None:
        if self.error is not None:
            raise self.error
        self.at.append(sequence_number)


def batch(checkpointer: Checkpointer, *payloads: bytes, first: int = 1) -> Any:
    records = [Record(p, str(first + i)) for i, p in enumerate(payloads)]
    return SimpleNamespace(records=records, checkpointer=checkpointer, millis_behind_latest=0)


def started(
    handler: Handler, shard: str, *, parent_alive: Any = lambda: True
) -> tuple[KclRecordProcessor, list[float]]:
    slept: list[float] = []
    processor = KclRecordProcessor(
        STREAM, lambda _shard: handler, sleep=slept.append, parent_alive=parent_alive, jitter=lambda: 0.0
    )
    processor.initialize(SimpleNamespace(shard_id=shard, sequence_number="0"))
    return processor, slept


def failing_since(shard: str, error: str) -> float | None:
    return REGISTRY.get_sample_value(
        "qm_batch_failing_since_timestamp_seconds", {"stream": STREAM, "shard": shard, "error": error}
    )


def test_a_failed_batch_is_retried_in_place_then_checkpointed() -> None:
    shard = "shardId-000000000001"
    handler = Handler(failures=[denied(), denied(), denied()])
    processor, slept = started(handler, shard)
    checkpointer = Checkpointer()

    processor.process_records(batch(checkpointer, b"a", b"b", first=10))

    # The same batch, four times; nothing checkpointed until it went through, then at its end.
    assert handler.calls == [[b"a", b"b"]] * 4
    assert checkpointer.at == ["11"]
    # Capped exponential back-off (1, 2, 4 s), slept in slices so that a gone daemon is noticed.
    assert sum(slept) == pytest.approx(7.0)
    assert max(slept) <= record_processor.PARENT_CHECK_S
    assert failing_since(shard, "AccessDeniedException") == 0  # recovered
    retries = REGISTRY.get_sample_value(
        "qm_batch_retries_total", {"stream": STREAM, "error": "AccessDeniedException"}
    )
    assert retries is not None and retries >= 3

    # The next batch is handled as usual.
    processor.process_records(batch(checkpointer, b"c", first=12))
    assert checkpointer.at == ["11", "12"]


def test_the_shard_is_marked_failing_while_it_retries() -> None:
    shard = "shardId-000000000002"
    seen: list[float | None] = []

    class Watching(Handler):
        def process(self, records: Sequence[StreamRecord]) -> BatchResult:
            seen.append(failing_since(shard, "AccessDeniedException"))
            return super().process(records)

    processor, _ = started(Watching(failures=[denied(), denied()]), shard)
    processor.process_records(batch(Checkpointer(), b"a"))
    first, second, third = seen
    assert first is None  # not failing yet
    assert second is not None and second > 0 and third == second  # since the first failure
    assert failing_since(shard, "AccessDeniedException") == 0


def test_back_off_is_capped() -> None:
    processor, _ = started(Handler(), "shardId-000000000003")
    delays = [processor._backoff(n) for n in range(1, 12)]
    assert delays[:5] == [1, 2, 4, 8, 16]
    assert max(delays) == record_processor.BATCH_RETRY_MAX_S


def test_a_retry_ends_when_the_daemon_is_gone() -> None:
    alive = [True, True, False]
    handler = Handler(failures=[denied()] * 10)
    processor, _ = started(handler, "shardId-000000000004", parent_alive=lambda: alive.pop(0))
    checkpointer = Checkpointer()
    with pytest.raises(Exited) as exited:
        processor.process_records(batch(checkpointer, b"a"))
    assert exited.value.code == EXIT_PARENT_GONE
    assert checkpointer.at == []  # the next owner replays the batch from the last checkpoint
    assert len(handler.calls) == 2


def test_a_bug_is_retried_like_an_aws_failure() -> None:
    """Whatever the handler raises is no record's fault (it quarantines those itself)."""
    handler = Handler(failures=[RuntimeError("boom")])
    processor, _ = started(handler, "shardId-000000000005")
    checkpointer = Checkpointer()
    processor.process_records(batch(checkpointer, b"a"))
    assert len(handler.calls) == 2 and checkpointer.at == ["1"]


def test_a_broken_protocol_still_exits() -> None:
    """A checkpoint call that fails outside the KCL's own errors: the channel is gone."""
    processor, _ = started(Handler(), "shardId-000000000006")
    with pytest.raises(Exited) as exited:
        processor.process_records(batch(Checkpointer(error=ValueError("Expecting value")), b"a"))
    assert exited.value.code == EXIT_BATCH_FAILED


def test_a_handler_that_cannot_be_built_exits() -> None:
    def broken(_shard: str) -> Handler:
        raise RuntimeError("no settings")

    processor = KclRecordProcessor(STREAM, broken, parent_alive=lambda: True)
    with pytest.raises(Exited) as exited:
        processor.initialize(SimpleNamespace(shard_id="shardId-000000000007", sequence_number="0"))
    assert exited.value.code == EXIT_BATCH_FAILED


def test_empty_batches_are_heartbeats_only() -> None:
    handler = Handler()
    processor, _ = started(handler, "shardId-000000000008")
    checkpointer = Checkpointer()
    processor.process_records(batch(checkpointer))
    assert handler.calls == [] and checkpointer.at == []
