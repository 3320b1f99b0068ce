"""The DynamoDB adapters against the emulator: conditional writes decide, not the caller."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.adapters.dynamodb.users_table import DynamoUserDirectory
from processor.core.ctr import parse_ctr
from processor.core.emission import ClaimResult
from processor.core.join import Tolerance, on_ctr
from processor.core.mapping import map_contact
from processor.core.user_directory import QmUser
from processor.platform.exceptions import InvalidInput, SourcePosition


def view_of(samples_dir: Path, last_update: str, contact_id: str | None = None):
    raw = orjson.loads((samples_dir / "ctr/kyopark-call-center-analytics-1.json").read_bytes())
    raw["LastUpdateTimestamp"] = last_update
    raw["Recordings"] = raw["Recording"] = None  # no recording: final at once
    if contact_id:
        raw["ContactId"] = contact_id
    payload = orjson.dumps(raw)
    record = parse_ctr(payload)
    view = on_ctr(
        None,
        record=record,
        base=map_contact(record),
        objects={},
        now=NOW,
        window=timedelta(minutes=30),
        tolerance=Tolerance(),
    )
    assert view is not None
    return view, payload


NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_newest_version_wins_in_any_order(bootstrapped, aws, samples_dir: Path) -> None:
    store = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table)
    old, old_raw = view_of(samples_dir, "2022-01-05T17:48:35Z")
    new, new_raw = view_of(samples_dir, "2022-01-11T03:41:32Z")
    assert store.write(new, replaces=None, raw_ctr=new_raw, now=NOW)
    assert not store.write(old, replaces=None, raw_ctr=old_raw, now=NOW)  # older: refused
    assert not store.write(new, replaces=None, raw_ctr=new_raw, now=NOW)  # same: refused
    stored = store.load(new.contact_id)
    assert stored is not None
    assert stored.last_update == "2022-01-11T03:41:32.000Z"
    assert stored.imported_at == "2026-01-01T00:00:00.000Z"
    assert stored.ctr == new_raw
    assert stored.emission_pending  # a final view waits for its emission
    revised = replace(stored.view, revision=1)
    assert not store.write(
        revised, replaces=None, raw_ctr=None, now=NOW
    )  # a revision needs the version it replaces
    assert store.write(revised, replaces=stored, raw_ctr=None, now=NOW)
    assert not store.write(replace(revised, revision=2), replaces=stored, raw_ctr=None, now=NOW)  # stale base
    again = store.load(new.contact_id)
    assert again is not None and again.version.endswith("#000001") and again.ctr == new_raw


def test_concurrent_writers_one_winner(bootstrapped, aws, samples_dir: Path) -> None:
    store = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table)
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="race-1")
    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: store.write(view, replaces=None, raw_ctr=raw, now=NOW), range(16)))
    assert outcomes.count(True) == 1


def test_emission_claims_are_exclusive_and_expire(bootstrapped, aws, samples_dir: Path) -> None:
    store = DynamoContactStore(aws.dynamodb, bootstrapped.contacts_table)
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="claim-1")
    store.write(view, replaces=None, raw_ctr=raw, now=NOW)
    assert store.claim_emission("claim-1", view.version, "a", NOW, 30) is ClaimResult.CLAIMED
    assert store.claim_emission("claim-1", view.version, "b", NOW, 30) is ClaimResult.BUSY
    later = NOW + timedelta(seconds=31)
    assert store.claim_emission("claim-1", view.version, "b", later, 30) is ClaimResult.CLAIMED
    assert store.note_attempt("claim-1", view.version, "b", later) is None
    assert store.note_attempt("claim-1", view.version, "b", later) == "2026-01-01T00:00:31.000Z"
    store.mark_emitted("claim-1", view.version)
    assert store.claim_emission("claim-1", view.version, "c", later, 30) is ClaimResult.DONE


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
