"""The DynamoDB adapters against the emulator: conditional writes decide, not the caller."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import orjson

from processor.adapters.contacts import DynamoContactStore, WriteOutcome
from processor.adapters.quarantine import DynamoQuarantine
from processor.adapters.users import DynamoUserDirectory
from processor.core.ctr import parse_ctr
from processor.core.mapping import map_contact
from processor.core.users import QmUser
from processor.exceptions import InvalidInput, SourcePosition


def contact(samples_dir: Path, last_update: str):
    raw = orjson.loads((samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes())
    raw["LastUpdateTimestamp"] = last_update
    payload = orjson.dumps(raw)
    return map_contact(parse_ctr(payload)), payload


def test_newest_version_wins_in_any_order(bootstrapped, aws, samples_dir: Path) -> None:
    store = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table)
    old, old_raw = contact(samples_dir, "2019-01-02T01:00:06Z")
    new, new_raw = contact(samples_dir, "2019-01-02T02:00:00Z")
    assert store.put_if_newer(new, new_raw, "2026-01-01T00:00:00.000Z") is WriteOutcome.CREATED
    assert store.put_if_newer(old, old_raw, "2026-01-01T00:00:01.000Z") is WriteOutcome.UNCHANGED
    assert store.put_if_newer(new, new_raw, "2026-01-01T00:00:02.000Z") is WriteOutcome.UNCHANGED
    stored = store.get(new.contact_id)
    assert stored is not None
    assert stored.last_update == "2019-01-02T02:00:00.000Z"
    assert stored.imported_at == "2026-01-01T00:00:00.000Z"  # the duplicate rewrote nothing
    assert stored.ctr == new_raw
    newer = replace(new, last_update="2019-01-03T00:00:00.000Z")
    assert store.put_if_newer(newer, None, "x") is WriteOutcome.UPDATED


def test_concurrent_writers_one_winner(bootstrapped, aws, samples_dir: Path) -> None:
    store = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table)
    c, raw = contact(samples_dir, "2019-01-02T01:00:06Z")
    c = replace(c, contact_id="race-1")
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda i: store.put_if_newer(c, raw, f"t{i}"), range(16)))
    assert outcomes.count(WriteOutcome.CREATED) == 1
    assert outcomes.count(WriteOutcome.UNCHANGED) == 15


def test_quarantine_keeps_payload_position_reason_idempotently(bootstrapped, aws) -> None:
    q = DynamoQuarantine(aws.dynamodb, bootstrapped.quarantine_table, aws.s3, bootstrapped.quarantine_bucket)
    position = SourcePosition("kinesis", "s", "shardId-000000000000", "123")
    small = InvalidInput("bad_json", "not JSON", payload=b"{oops", position=position)
    big_payload = bytes(range(256)) * 8000  # ~2 MB, incompressible-ish: goes to S3
    big = InvalidInput(
        "oversized", "too big", payload=big_payload, position=SourcePosition("kinesis", "s", "x", "9")
    )
    first = q.put(small, "2026-01-01T00:00:00.000Z")
    assert q.put(small, "2026-01-01T00:00:09.000Z") == first
    q.put(big, "2026-01-01T00:00:01.000Z")
    entries = {e.reason: e for e in q.list()}
    assert len(entries) == 2
    assert entries["bad_json"].payload == b"{oops"
    assert entries["bad_json"].position == position.as_dict()
    assert entries["oversized"].payload == big_payload


def test_users_batch_lookup(bootstrapped, aws) -> None:
    directory = DynamoUserDirectory(aws.dynamodb, bootstrapped.users_table, cache_seconds=0)
    users = [QmUser(f"user{i}", f"F{i}", f"L{i}", i % 2 == 0) for i in range(150)]
    for user in users:
        directory.put(user)
    found = directory.get_many([u.username for u in users] + ["nobody"])
    assert len(found) == 150 and "nobody" not in found
    assert found["user42"] == users[42]
