"""Checkpoint order and moves, lease holders, the checkpoints file, the gap report, and the
Firehose layout's date pruning: the pure parts of replay, backfill and reconciliation."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft7Validator

from processor.core.archive_layout import (
    folder,
    in_range,
    listing_prefixes,
    object_hour,
    parse_date,
    parse_s3_url,
)
from processor.core.checkpoints import (
    TRIM_HORIZON_CHECKPOINT,
    Checkpoint,
    LeaseState,
    SavedCheckpoints,
    held,
    replay_checkpoint,
    select_shards,
)
from processor.core.reconcile import NewestVersions, compare
from processor.core.schemas import load_schema

SEQ_A = "49650000000000000000000000000000000000000000000000000001"
SEQ_B = "49650000000000000000000000000000000000000000000000000002"


# --- checkpoints -----------------------------------------------------------------------------
def test_order_is_the_kcls() -> None:
    order = [
        Checkpoint("AT_TIMESTAMP"),
        Checkpoint("TRIM_HORIZON"),
        Checkpoint("LATEST"),
        Checkpoint.before(SEQ_A),
        Checkpoint(SEQ_A),
        Checkpoint(SEQ_A, 3),
        Checkpoint(SEQ_B),
        Checkpoint("SHARD_END"),
    ]
    keys = [c.order_key() for c in order]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    with pytest.raises(ValueError, match="not a sequence number"):
        Checkpoint("12abc")


@pytest.mark.parametrize(
    ("current", "target", "expected"),
    [
        (Checkpoint(SEQ_B), TRIM_HORIZON_CHECKPOINT, TRIM_HORIZON_CHECKPOINT),
        (Checkpoint(SEQ_B), Checkpoint.before(SEQ_A), Checkpoint.before(SEQ_A)),
        # Never forward past what the consumer has not processed yet.
        (Checkpoint(SEQ_A), Checkpoint.before(SEQ_B), Checkpoint(SEQ_A)),
        (TRIM_HORIZON_CHECKPOINT, Checkpoint.before(SEQ_A), TRIM_HORIZON_CHECKPOINT),
        (Checkpoint("AT_TIMESTAMP"), Checkpoint.before(SEQ_A), Checkpoint("AT_TIMESTAMP")),
        # LATEST and SHARD_END are after every record.
        (Checkpoint("LATEST"), Checkpoint.before(SEQ_A), Checkpoint.before(SEQ_A)),
        (Checkpoint("SHARD_END"), TRIM_HORIZON_CHECKPOINT, TRIM_HORIZON_CHECKPOINT),
        # No record at or after the instant on this shard: nothing to re-read.
        (Checkpoint(SEQ_B), None, Checkpoint(SEQ_B)),
    ],
)
def test_a_replay_moves_a_checkpoint_back_never_forward(
    current: Checkpoint, target: Checkpoint | None, expected: Checkpoint
) -> None:
    assert replay_checkpoint(current, target) == expected


def lease(shard: str, owner: str | None, counter: int, checkpoint: str = SEQ_A) -> LeaseState:
    return LeaseState(shard, Checkpoint(checkpoint), owner, counter)


def test_a_lease_is_held_when_its_owner_renews_it() -> None:
    first = {
        "s0": lease("s0", "w1", 10),  # renewed: held
        "s1": lease("s1", "w2", 5),  # owner set but the counter stood still: a dead worker
        "s2": lease("s2", None, 7),  # nobody
        "s3": lease("s3", "w1", 3),  # taken over by another worker meanwhile
    }
    second = {
        "s0": lease("s0", "w1", 12),
        "s1": lease("s1", "w2", 5),
        "s2": lease("s2", None, 8),
        "s3": lease("s3", "w3", 4),
        "s4": lease("s4", "w1", 0),  # appeared meanwhile, with an owner
    }
    assert held(first, second) == {"s0": "w1", "s3": "w3", "s4": "w1"}


def test_checkpoints_file_round_trip_and_schema() -> None:
    saved = SavedCheckpoints(
        application="app",
        stream="ctr",
        saved_at=datetime(2026, 5, 1, 12, tzinfo=UTC),
        leases=(lease("s1", None, 2, "SHARD_END"), LeaseState("s0", Checkpoint.before(SEQ_B), "w1", 9)),
        note="before replay",
    )
    doc = orjson.loads(orjson.dumps(saved.to_dict()))
    assert not list(Draft7Validator(load_schema("kcl-checkpoints")).iter_errors(doc))
    assert [item["shard_id"] for item in doc["leases"]] == ["s0", "s1"]
    back = SavedCheckpoints.from_dict(doc)
    assert back.checkpoints() == {"s0": Checkpoint.before(SEQ_B), "s1": Checkpoint("SHARD_END")}
    assert back.saved_at == saved.saved_at and back.application == "app"
    doc["leases"][0]["checkpoint"] = "yesterday"
    with pytest.raises(ValueError, match="not a qm-ingest checkpoints file"):
        SavedCheckpoints.from_dict(doc)


def test_select_shards_names_unknown_ones() -> None:
    leases = [lease("s0", None, 1), lease("s1", None, 1)]
    assert [x.shard_id for x in select_shards(leases, ["s1"])] == ["s1"]
    assert len(select_shards(leases, None)) == 2
    with pytest.raises(ValueError, match="s9"):
        select_shards(leases, ["s9"])


# --- gap report ------------------------------------------------------------------------------
def test_gap_report_kinds() -> None:
    newest = NewestVersions()
    for cid, version in (
        ("a", "2026-01-01T10:00:00.000Z"),
        ("a", "2026-01-01T11:00:00.000Z"),
        ("b", "1"),
        ("c", "5"),
        ("d", "5"),
    ):
        newest.add(cid, version, "here")
    newest.add("a", "2026-01-01T09:00:00.000Z", "older: ignored")
    assert newest.versions["a"].last_update == "2026-01-01T11:00:00.000Z"
    imported = {"a": "2026-01-01T10:00:00.000Z", "c": "5", "d": "6"}
    report = compare(
        newest.versions,
        imported,
        imported_in_range=[("c", "5"), ("x", "5"), ("y", "5")],
        seen_anywhere={"y"},
    )
    assert [v.contact_id for v in report.missing] == ["b"]
    assert [(v.contact_id, have) for v, have in report.stale] == [("a", "2026-01-01T10:00:00.000Z")]
    assert (report.ok, report.ahead) == (1, 1)
    assert report.extra == [("x", "5")]
    assert report.gaps == 2 and not report.clean
    assert report.to_dict(limit=0)["missing"] == 1


# --- Firehose layout ---------------------------------------------------------------------------
def test_urls_dates_and_hour_folders() -> None:
    assert parse_s3_url("s3://bucket/connect/ctr") == parse_s3_url("s3://bucket/connect/ctr/")
    assert parse_s3_url("s3://bucket").prefix == ""
    with pytest.raises(ValueError):
        parse_s3_url("https://bucket/x")
    assert folder("/ctr") == "ctr/" and folder("") == ""
    assert parse_date("2026-04-02") == datetime(2026, 4, 2, tzinfo=UTC)
    assert parse_date("2026-04-02", end=True) == datetime(2026, 4, 3, tzinfo=UTC)
    assert parse_date("2026-04-02T10:30:00+02:00") == datetime(2026, 4, 2, 8, 30, tzinfo=UTC)
    assert parse_date("2026-04-02T10:30") == datetime(2026, 4, 2, 10, 30, tzinfo=UTC)
    assert object_hour("p/", "p/2026/04/02/13/stream-1-2026-04-02-13-01-02-x.gz") == datetime(
        2026, 4, 2, 13, tzinfo=UTC
    )
    assert object_hour("p/", "p/processing-failed/2026/04/02/13/x") is None
    assert object_hour("p/", "p/2026/13/02/13/x") is None
    assert object_hour("p/", "other/2026/04/02/13/x") is None


def test_listing_covers_exactly_the_overlapping_hours_with_whole_days_in_one_listing() -> None:
    since = datetime(2026, 4, 1, 22, 30, tzinfo=UTC)
    until = datetime(2026, 4, 4, 2, 0, tzinfo=UTC)
    assert listing_prefixes("p/", since, until) == [
        "p/2026/04/01/22/",
        "p/2026/04/01/23/",
        "p/2026/04/02/",
        "p/2026/04/03/",
        "p/2026/04/04/00/",
        "p/2026/04/04/01/",
    ]
    assert listing_prefixes("p/", None, None) == ["p/"]
    hour = datetime(2026, 4, 1, 22, tzinfo=UTC)
    assert in_range(hour, since, until)  # 22:00-23:00 overlaps 22:30
    assert not in_range(hour, datetime(2026, 4, 1, 23, tzinfo=UTC), until)
    assert not in_range(datetime(2026, 4, 4, 2, tzinfo=UTC), since, until)
