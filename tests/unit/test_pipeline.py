"""The CTR path's contract: poison is quarantined once and the batch moves on; transient
failures and failures of the surroundings are never quarantined (the batch waits for
them, or fails to be read again)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from processor.adapters.memory import MemoryQuarantine
from processor.app.ctr_path import CtrIngest
from processor.core.batch import StreamRecord
from processor.core.ctr import AcceptedInstances, ContactRecord
from processor.platform.exceptions import SourcePosition


class Join:
    def __init__(self, fail: dict[str, BaseException]) -> None:
        self.fail = fail
        self.seen: list[str] = []

    def on_ctrs(self, batch: Sequence[tuple[ContactRecord, bytes]]) -> list[str | Exception]:
        outcomes: list[str | Exception] = []
        for record, _ in batch:
            failure = self.fail.get(record.contact_id)
            if isinstance(failure, Exception):
                outcomes.append(failure)  # this record's failure, reported beside the others'
                continue
            if failure is not None:
                raise failure
            self.seen.append(record.contact_id)
            outcomes.append("created")
        return outcomes


def records(samples_dir: Path, ids: list[str]) -> list[StreamRecord]:
    base = orjson.loads((samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes())
    return [
        StreamRecord(
            orjson.dumps({**base, "ContactId": cid}), SourcePosition("kinesis", "s", "shard-0", str(i))
        )
        for i, cid in enumerate(ids)
    ]


def test_a_record_that_breaks_the_join_is_quarantined_and_the_batch_moves_on(samples_dir: Path) -> None:
    quarantine = MemoryQuarantine()
    join = Join({"bad": ValueError("boom")})
    ingest = CtrIngest(
        joiner=join,
        quarantine=quarantine,
        instances=AcceptedInstances(any_instance=True),
        max_record_bytes=1 << 20,
    )
    result = ingest.process(records(samples_dir, ["a", "bad", "b"]))
    assert (result.created, result.quarantined) == (2, 1)
    assert sorted(join.seen) == ["a", "b"]
    [entry] = quarantine.list()
    assert entry.reason == "processing_error" and "ValueError: boom" in entry.detail
    assert entry.position["sequence_number"] == "1"
    assert orjson.loads(entry.payload or b"")["ContactId"] == "bad"


def test_transient_failures_are_never_quarantined(samples_dir: Path) -> None:
    quarantine = MemoryQuarantine()
    join = Join({"b": EndpointConnectionError(endpoint_url="http://127.0.0.1")})
    ingest = CtrIngest(
        joiner=join,
        quarantine=quarantine,
        instances=AcceptedInstances(any_instance=True),
        max_record_bytes=1 << 20,
    )
    with pytest.raises(EndpointConnectionError):
        ingest.process(records(samples_dir, ["a", "b"]))
    assert list(quarantine.list()) == []


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "PutItem"
    )


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "ResourceNotFoundException", "UnrecognizedClientException"]
)
def test_a_failure_of_the_surroundings_fails_the_batch_instead_of_quarantining(
    samples_dir: Path, code: str
) -> None:
    """A missing permission or table is no record's fault: quarantining would move every
    contact into quarantine until it is fixed. The batch fails, to be read again."""
    quarantine = MemoryQuarantine()
    join = Join({"b": client_error(code, 400)})
    ingest = CtrIngest(
        joiner=join,
        quarantine=quarantine,
        instances=AcceptedInstances(any_instance=True),
        max_record_bytes=1 << 20,
    )
    with pytest.raises(ClientError):
        ingest.process(records(samples_dir, ["a", "b"]))
    assert list(quarantine.list()) == []


def test_an_item_too_large_for_dynamodb_is_the_records_fault(samples_dir: Path) -> None:
    quarantine = MemoryQuarantine()
    join = Join({"big": client_error("ValidationException", 400)})
    ingest = CtrIngest(
        joiner=join,
        quarantine=quarantine,
        instances=AcceptedInstances(any_instance=True),
        max_record_bytes=1 << 20,
    )
    result = ingest.process(records(samples_dir, ["a", "big"]))
    assert (result.created, result.quarantined) == (1, 1)
    [entry] = quarantine.list()
    assert entry.reason == "processing_error" and "ValidationException" in entry.detail
