"""Replay on the emulator, without the KCL daemon (tests/e2e covers it with the daemon):
direct re-import (idempotent, restores a wiped contacts table, dry-run diff, from an
instant), and the lease table (refusal while a worker renews, --force, --stop-workers,
the saved checkpoints and putting them back)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.leases import KclLeaseTable
from processor.adapters.kinesis.put_records import put_records
from processor.adapters.kinesis.stream_reader import ShardReader, StartAt, list_shard_ids
from processor.app.wiring import build_ingest
from processor.core.checkpoints import Checkpoint
from processor.devtools.publish_simulation import upload_recording
from processor.devtools.simulated_centre import RecordingUpload, build_scenario
from processor.ops.replay import ReplayFrom, load_checkpoints, replay_direct, replay_leases
from processor.platform.exceptions import ReplayRefused
from tests.contract.test_joiner import output_records
from tests.helpers import wait_until

TRIM = ReplayFrom(trim_horizon=True)
BOOKKEEPING = {"imported_at"}


def scenario(settings, seed: int, contacts: int, day: int = 3):
    return build_scenario(
        seed=seed,
        contacts=contacts,
        start=datetime(2026, 5, day, 9, tzinfo=UTC),
        bucket=settings.recordings_bucket,
        missing_rate=0.0,
        max_talk_seconds=15,
    )


def publish(aws, settings, sc) -> list[str]:
    for event in sc.events:
        if isinstance(event, RecordingUpload):
            upload_recording(aws, event)
    return put_records(aws.kinesis, settings.ctr_stream, [(p, str(i)) for i, p in enumerate(sc.deliveries)])


def docs(aws, settings) -> dict[str, dict]:
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    return {c.contact_id: {k: v for k, v in c.doc.items() if k not in BOOKKEEPING} for c in store.scan()}


def wipe_contacts(aws, settings) -> None:
    table = settings.contacts_table
    for page in aws.dynamodb.get_paginator("scan").paginate(
        TableName=table, ProjectionExpression="contact_id"
    ):
        for item in page.get("Items", []):
            aws.dynamodb.delete_item(TableName=table, Key={"contact_id": item["contact_id"]})


def direct(settings, aws, frm: ReplayFrom = TRIM, **kw):
    ingest = None if kw.get("dry_run") else build_ingest(settings, aws)
    try:
        return replay_direct(settings, aws, frm, ingest=ingest, progress=False, min_interval=0.0, **kw)
    finally:
        if ingest is not None:
            ingest.close()


def test_direct_replay_is_idempotent_and_restores_a_wiped_table(bootstrapped, aws) -> None:
    settings = bootstrapped
    sc = scenario(settings, 31, 40)
    publish(aws, settings, sc)
    first = direct(settings, aws)
    assert first.records == len(sc.deliveries)
    assert {cid: d["last_update"] for cid, d in docs(aws, settings).items()} == sc.expected
    imported = docs(aws, settings)
    emitted = len(output_records(aws, settings.output_stream))

    again = direct(settings, aws)
    assert (again.created, again.updated) == (0, 0)
    assert again.unchanged >= len(sc.expected) and again.records == len(sc.deliveries)
    assert len(output_records(aws, settings.output_stream)) == emitted
    assert docs(aws, settings) == imported

    dry = direct(settings, aws, dry_run=True)
    assert dry.gaps is not None and dry.gaps.clean and dry.gaps.ok == len(sc.expected)

    wipe_contacts(aws, settings)
    dry = direct(settings, aws, dry_run=True)
    assert dry.gaps is not None
    assert {v.contact_id for v in dry.gaps.missing} == set(sc.expected)
    assert docs(aws, settings) == {}  # a dry run writes nothing

    restored = direct(settings, aws)
    assert restored.created == len(sc.expected)
    assert docs(aws, settings) == imported


def test_direct_replay_from_an_instant_reads_only_what_arrived_since(bootstrapped, aws) -> None:
    settings = bootstrapped
    early, late = scenario(settings, 32, 10), scenario(settings, 33, 12, day=4)
    publish(aws, settings, early)
    time.sleep(1.5)
    between = datetime.now(UTC) - timedelta(milliseconds=500)
    publish(aws, settings, late)
    report = direct(settings, aws, ReplayFrom(timestamp=between))
    assert report.records == len(late.deliveries)
    assert set(docs(aws, settings)) == set(late.expected)
    only = list_shard_ids(aws.kinesis, settings.ctr_stream)[:1]
    report = direct(settings, aws, TRIM, shards=only)
    assert 0 < report.records < len(early.deliveries) + len(late.deliveries)


# --- the lease table ---------------------------------------------------------------------------
def make_lease_table(aws, settings, checkpoints: dict[str, str], owner: str | None = "w1") -> KclLeaseTable:
    """A lease table as the KCL creates and fills it."""
    ddb = aws.dynamodb
    ddb.create_table(
        TableName=settings.application_name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for shard, checkpoint in checkpoints.items():
        item = {
            "leaseKey": {"S": shard},
            "checkpoint": {"S": checkpoint},
            "checkpointSubSequenceNumber": {"N": "0"},
            "leaseCounter": {"N": "5"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "pendingCheckpoint": {"S": checkpoint},
            "pendingCheckpointSubSequenceNumber": {"N": "0"},
        }
        if owner:
            item["leaseOwner"] = {"S": owner}
        ddb.put_item(TableName=settings.application_name, Item=item)
    return KclLeaseTable(ddb, settings.application_name)


class Renewer:
    """A live worker's lease renewals: the counter moves, conditional on its last value."""

    def __init__(self, aws, table: str, period: float = 0.2) -> None:
        self.aws, self.table, self.period = aws, table, period
        self.lost: set[str] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from botocore.exceptions import ClientError

        counters = {
            i["leaseKey"]["S"]: int(i["leaseCounter"]["N"])
            for i in self.aws.dynamodb.scan(TableName=self.table)["Items"]
        }
        while not self.stop.wait(self.period):
            for shard, counter in list(counters.items()):
                if shard in self.lost:
                    continue
                try:
                    self.aws.dynamodb.update_item(
                        TableName=self.table,
                        Key={"leaseKey": {"S": shard}},
                        UpdateExpression="SET leaseCounter = :n",
                        ConditionExpression="leaseCounter = :c AND leaseOwner = :w",
                        ExpressionAttributeValues={
                            ":n": {"N": str(counter + 1)},
                            ":c": {"N": str(counter)},
                            ":w": {"S": "w1"},
                        },
                    )
                    counters[shard] = counter + 1
                except ClientError:
                    self.lost.add(shard)  # as the KCL: the lease is lost, the worker lets go


def fast(settings):
    return settings.model_copy(update={"kcl_failover_ms": 1000})


def test_refused_while_a_worker_renews_then_forced_and_undone(bootstrapped, aws, tmp_path: Path) -> None:
    settings = fast(bootstrapped)
    sequences = publish(aws, settings, scenario(settings, 34, 6))
    shards = list_shard_ids(aws.kinesis, settings.ctr_stream)
    last = {shard: max(sequences, key=int) for shard in shards}
    table = make_lease_table(aws, settings, last)
    before = table.read()

    plan = replay_leases(settings, aws, TRIM, dry_run=True, now=datetime.now(UTC))
    assert all(p.moves and p.target == Checkpoint("TRIM_HORIZON") for p in plan.plans)
    assert plan.saved_to is None and table.read() == before  # a dry run writes nothing

    renewer = Renewer(aws, settings.application_name)
    renewer.thread.start()
    try:
        saved = tmp_path / "saved.json"
        with pytest.raises(ReplayRefused) as refused:
            replay_leases(settings, aws, TRIM, save_to=saved, now=datetime.now(UTC))
        message = str(refused.value)
        assert (
            "held by running workers (w1)" in message and "--stop-workers" in message and "--force" in message
        )
        assert {k: v.checkpoint for k, v in table.read().items()} == {
            k: v.checkpoint for k, v in before.items()
        }
        assert load_checkpoints(saved).checkpoints() == {k: Checkpoint(v) for k, v in last.items()}

        forced = replay_leases(settings, aws, TRIM, force=True, save_to=saved, now=datetime.now(UTC))
        assert sorted(forced.moved) == sorted(shards) and forced.held_by
        after = table.read()
        for shard in shards:
            assert after[shard].checkpoint == Checkpoint("TRIM_HORIZON")
            assert after[shard].owner is None  # released: the KCL reassigns it from there
        # The worker's next renewal fails: it loses the lease instead of writing over the move.
        wait_until(lambda: renewer.lost == set(shards), 10, "the worker to lose its leases")
        raw = aws.dynamodb.get_item(TableName=settings.application_name, Key={"leaseKey": {"S": shards[0]}})[
            "Item"
        ]
        assert "pendingCheckpoint" not in raw
    finally:
        renewer.stop.set()

    undo = replay_leases(settings, aws, ReplayFrom(saved=load_checkpoints(saved)), now=datetime.now(UTC))
    assert sorted(undo.moved) == sorted(shards)
    assert {k: v.checkpoint for k, v in table.read().items()} == {k: Checkpoint(v) for k, v in last.items()}


def test_from_timestamp_points_each_lease_before_the_first_record_since(bootstrapped, aws) -> None:
    settings = fast(bootstrapped)
    publish(aws, settings, scenario(settings, 35, 4))
    time.sleep(1.5)
    between = datetime.now(UTC) - timedelta(milliseconds=500)
    late_scenario = scenario(settings, 36, 30, day=5)
    publish(aws, settings, late_scenario)
    late = set(late_scenario.deliveries)
    shards = list_shard_ids(aws.kinesis, settings.ctr_stream)
    first_late, last = {}, {}
    for shard in shards:
        reader = ShardReader(aws.kinesis, settings.ctr_stream, shard, StartAt("TRIM_HORIZON"), min_interval=0)
        records = [r for page in reader.pages() for r in page.records]
        first_late[shard] = next(r["SequenceNumber"] for r in records if bytes(r["Data"]) in late)
        last[shard] = records[-1]["SequenceNumber"]
    table = make_lease_table(aws, settings, last, owner=None)
    result = replay_leases(settings, aws, ReplayFrom(timestamp=between), now=datetime.now(UTC))
    moved = table.read()
    assert sorted(result.moved) == sorted(shards)
    for shard in shards:
        # The first record since the instant is the next one the consumer reads.
        assert moved[shard].checkpoint == Checkpoint.before(first_late[shard])


WORKER = textwrap.dedent(
    """
    import signal, threading, time
    from processor.adapters.aws import AwsClients
    from processor.adapters.kcl.supervisor import WorkerSlot
    from processor.platform.settings import Settings

    settings = Settings()
    slot = WorkerSlot(settings, settings.application_name)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ddb = AwsClients(settings).dynamodb
    print("ready", flush=True)
    while not stop.wait(0.2):
        for item in ddb.scan(TableName=settings.application_name)["Items"]:
            ddb.update_item(
                TableName=settings.application_name,
                Key={"leaseKey": item["leaseKey"]},
                UpdateExpression="ADD leaseCounter :one",
                ConditionExpression="attribute_exists(leaseOwner)",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
    # As the KCL does on shutdown: its leases stop moving; then the slot is released.
    slot.release()
    """
)


def test_stop_workers_stops_this_hosts_workers_then_moves(bootstrapped, aws, tmp_path: Path) -> None:
    import os

    settings = fast(bootstrapped)
    sequences = publish(aws, settings, scenario(settings, 37, 4))
    shards = list_shard_ids(aws.kinesis, settings.ctr_stream)
    table = make_lease_table(aws, settings, dict.fromkeys(shards, max(sequences, key=int)))
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        env={
            **os.environ,
            "QM_STATE_DIR": settings.state_dir,
            "QM_APPLICATION_NAME": settings.application_name,
        },
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        result = replay_leases(settings, aws, TRIM, stop_workers=True, now=datetime.now(UTC))
        assert result.stopped == [worker.pid]
        assert worker.wait(timeout=10) == 0
        assert not result.held_by and sorted(result.moved) == sorted(shards)
        assert all(lease.checkpoint == Checkpoint("TRIM_HORIZON") for lease in table.read().values())
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
