"""Resharding while consuming: a shard is split, then one of its children is merged with its
neighbour, while contacts (updates of the same contact included) keep coming. Kinesis runs
on kinesis-mock (moto does not model the shard lifecycle, design.md §3), DynamoDB, S3 and SQS
on the embedded emulator. Every child shard is processed only after its parents ended with a
shard-end checkpoint; the audit finds nothing lost and nothing emitted twice."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    contact_centre,
    delivered,
    expectation,
    judge,
    log_events,
    phases,
    publish,
    wait_audit_ok,
    wait_caught_up,
    wait_for,
)
from tests.helpers import ServiceProcess

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


@pytest.fixture
def kinesis_on_mock(kinesis_mock: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Kinesis on kinesis-mock for this test (set before the settings are read)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_KINESIS", kinesis_mock)
    return kinesis_mock


def shards(aws: Any, stream: str) -> dict[str, dict[str, Any]]:
    return {s["ShardId"]: s for s in aws.kinesis.list_shards(StreamName=stream)["Shards"]}


def wait_active(aws: Any, stream: str) -> None:
    wait_for(
        lambda: (
            aws.kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE"
        ),
        60,
        "the stream to be active again",
    )


def timeline(log: Path, stream: str) -> tuple[dict[str, str], dict[str, str]]:
    """Per shard: when it ended with its checkpoint, and when its first batch was processed."""
    ended: dict[str, str] = {}
    first_batch: dict[str, str] = {}
    for event in log_events(log):
        if event.get("stream") != stream:
            continue
        shard = event.get("shard_id", "")
        if event.get("event") == "shard ended; checkpointed at shard end":
            ended.setdefault(shard, event["timestamp"])
        elif event.get("event") == "batch processed":
            first_batch.setdefault(shard, event["timestamp"])
    return ended, first_batch


@pytest.mark.slow
def test_split_and_merge_while_consuming(
    kinesis_on_mock: str, bootstrapped, aws, tmp_path: Path, *, services: list[ServiceProcess], record_figures
) -> None:
    started_at = time.monotonic()
    settings = bootstrapped
    stream = settings.ctr_stream
    assert aws.kinesis.meta.endpoint_url == kinesis_on_mock
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    centre = contact_centre(111, 90, settings.recordings_bucket)
    before, between, after = phases(centre, 3)
    log = tmp_path / "service.log"
    service = ServiceProcess(log, SERVICE_ENV).start()
    services.append(service)
    publish(aws, stream, before)
    wait_caught_up(store, delivered(before), time.monotonic(), 180)

    # Split shard 0 in the middle of its hash range, while the service consumes.
    original = shards(aws, stream)
    first = original["shardId-000000000000"]
    low, high = int(first["HashKeyRange"]["StartingHashKey"]), int(first["HashKeyRange"]["EndingHashKey"])
    aws.kinesis.split_shard(
        StreamName=stream, ShardToSplit=first["ShardId"], NewStartingHashKey=str((low + high) // 2 + 1)
    )
    wait_active(aws, stream)
    split_at = time.monotonic()
    publish(aws, stream, between)
    split_recovery = wait_caught_up(store, delivered(before + between), split_at, 180)

    # Merge the upper child of shard 0 with shard 1, its neighbour.
    children = [s for s in shards(aws, stream).values() if s.get("ParentShardId") == first["ShardId"]]
    upper = max(children, key=lambda s: int(s["HashKeyRange"]["StartingHashKey"]))
    aws.kinesis.merge_shards(
        StreamName=stream, ShardToMerge=upper["ShardId"], AdjacentShardToMerge="shardId-000000000001"
    )
    wait_active(aws, stream)
    merged_at = time.monotonic()
    publish(aws, stream, after)
    merge_recovery = wait_caught_up(store, delivered(centre.events), merged_at, 240)

    expect = expectation(centre)
    wait_audit_ok(settings, aws, expect, 180)
    assert service.stop() < 10
    report = judge(expect, tmp_path / "expect.json", {"AWS_ENDPOINT_URL_KINESIS": kinesis_on_mock})
    assert_clean(report)

    # Children only after their parents, and every parent ended with its shard-end checkpoint.
    final = shards(aws, stream)
    ended, first_batch = timeline(log, stream)
    parents = {
        child["ShardId"]: [p for p in (child.get("ParentShardId"), child.get("AdjacentParentShardId")) if p]
        for child in final.values()
        if child["ShardId"] not in original
    }
    assert len(parents) == 3, parents  # two children of the split, one of the merge
    for child, its_parents in parents.items():
        for parent in its_parents:
            assert parent in ended, f"{parent} never took its shard-end checkpoint"
            if child in first_batch:
                assert first_batch[child] > ended[parent], f"{child} was processed before {parent} ended"
    assert all(child in first_batch for child in parents), "a child shard was never read"
    assert "Traceback" not in log.read_text()
    record_figures(
        Figures(
            "resharding on kinesis-mock: split, then merge, while consuming",
            report,
            [split_recovery, merge_recovery],
            f"{len(ended)} parent shards ended with their checkpoint; {len(parents)} children read only "
            "after their parents",
            time.monotonic() - started_at,
        )
    )
