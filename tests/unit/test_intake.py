"""The one bad-input policy of the stream consumers (processor.app.intake), on the in-memory quarantine."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.exceptions import ClientError

from processor.adapters.memory import MemoryQuarantine
from processor.app.intake import Intake, each
from processor.core.batch import BatchResult, StreamRecord
from processor.platform.exceptions import InvalidInput, SourcePosition

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def records(*payloads: bytes) -> list[StreamRecord]:
    return [
        StreamRecord(p, SourcePosition("kinesis", "ctr", "shardId-0", str(100 + i)))
        for i, p in enumerate(payloads)
    ]


def parse(record: StreamRecord) -> int:
    if not record.data.isdigit():
        raise InvalidInput("bad_json", "not a number")
    return int(record.data)


def access_denied() -> ClientError:
    return ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "PutItem")


def test_unparsable_records_are_quarantined_with_position_and_payload_and_the_batch_goes_on() -> None:
    quarantine = MemoryQuarantine()
    intake = Intake(quarantine, lambda: NOW, noun="CTR")
    result = BatchResult(read=3)
    parsed = intake.parse_all(records(b"1", b"{oops", b"3"), parse, result)
    assert [item for item, _ in parsed] == [1, 3]
    [entry] = list(quarantine.list())
    assert (entry.reason, entry.payload, entry.position["sequence_number"]) == ("bad_json", b"{oops", "101")
    assert result.quarantined == 1 and result.quarantined_by_reason == {"bad_json": 1}


def test_a_record_s_own_failure_is_quarantined_as_a_processing_error() -> None:
    quarantine = MemoryQuarantine()
    intake = Intake(quarantine, lambda: NOW, noun="agent event")
    result = BatchResult(read=3)
    items = intake.parse_all(records(b"1", b"2", b"3"), parse, result)

    def handle(n: int) -> str:
        if n == 2:
            raise ValueError("this record only")
        return f"done {n}"

    done = intake.settle(items, each(handle, items), result)
    assert done == [(1, "done 1"), (3, "done 3")]
    [entry] = list(quarantine.list())
    assert entry.reason == "processing_error" and entry.payload == b"2"
    assert "ValueError: this record only" in entry.detail
    assert result.quarantined_by_reason == {"processing_error": 1}


def test_a_failure_of_the_surroundings_fails_the_batch_and_quarantines_nothing() -> None:
    quarantine = MemoryQuarantine()
    intake = Intake(quarantine, lambda: NOW, noun="CTR")
    result = BatchResult(read=2)
    items = intake.parse_all(records(b"1", b"2"), parse, result)
    with pytest.raises(ClientError):
        intake.settle(items, [access_denied(), "ok"], result)
    handled: list[int] = []

    def handle(n: int) -> str:
        handled.append(n)
        raise access_denied()

    with pytest.raises(ClientError):
        each(handle, items)
    assert handled == [1]  # the rest of the batch is not tried: it is read again from the checkpoint
    assert list(quarantine.list()) == [] and result.quarantined == 0
