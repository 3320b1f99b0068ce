"""The join store and the contact store, each run against its DynamoDB-backed adapter (on the
emulator) and its in-memory one, as tests/contract/test_ports.py does for the other ports."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from processor.adapters.dynamodb import bulk
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.join_store import DynamoJoinStore, SeenObject
from processor.adapters.memory import (
    MemoryContactStore,
    MemoryJoinStore,
)
from processor.core.emission import ClaimResult
from processor.core.join import RecordingObject
from tests.contract.test_stores import view_of

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


Transact = Callable[[list[dict[str, Any]]], None]


@pytest.fixture(params=["dynamodb", "memory"])
def joins(request: pytest.FixtureRequest) -> tuple[Any, Transact]:
    """The join store, and how a contact's transaction applies the store's actions."""
    if request.param == "memory":
        memory = MemoryJoinStore(retention=timedelta(days=7))
        return memory, memory.apply
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")
    store = DynamoJoinStore(aws.dynamodb, settings.join_table, timedelta(days=7))

    def transact(actions: list[dict[str, Any]]) -> None:
        assert [o.written for o in bulk.transact_groups(aws.dynamodb, [actions])] == [True]

    return store, transact


def _seen(location: str, size: int = 960_044, duration: float | None = 30.0) -> SeenObject:
    return SeenObject(RecordingObject(location, size, NOW, duration, "header", "both"), f"etag-{size}")


def test_join_store_reads_back_each_half_written_and_absent_ones_as_absent(
    joins: tuple[Any, Transact],
) -> None:
    store, _ = joins
    a, b, c = "rec/connect/a.wav", "rec/connect/b.wav", "rec/connect/c.wav"
    assert store.read_halves([], NOW) == {}
    store.write(store.link_requests([(a, "c-1"), (b, "c-2")], NOW))
    store.write(store.object_requests([(_seen(a), None), (_seen(c, duration=12.3456789), None)], NOW))
    halves = store.read_halves([a, b, c, "rec/none.wav", a], NOW)
    assert list(halves) == [a, b, c, "rec/none.wav"]
    assert (halves[a].contact_id, halves[b].contact_id, halves[c].contact_id) == ("c-1", "c-2", None)
    assert halves[a].obj == _seen(a).obj
    assert halves[b].obj is None and halves["rec/none.wav"] == type(halves[a])("rec/none.wav", None, None)
    assert halves[c].obj is not None and halves[c].obj.duration_seconds == 12.345679
    only_objects = store.read_halves([a], NOW, links=False)[a]
    assert (only_objects.contact_id, only_objects.obj) == (None, _seen(a).obj)
    assert store.read_halves([a], NOW, objects=False)[a].obj is None
    store.write(store.object_requests([(_seen(a, size=2_000_044, duration=62.5), None)], NOW))  # overwritten
    assert store.read_halves([a], NOW)[a].obj == _seen(a, size=2_000_044, duration=62.5).obj
    expired = NOW + timedelta(days=8)  # past the retention: absent, whether or not deleted yet
    assert store.read_halves([a, b], expired) == {
        a: type(halves[a])(a, None, None),
        b: type(halves[a])(b, None, None),
    }


def test_join_store_lists_due_waiting_contacts_until_their_marker_is_removed(
    joins: tuple[Any, Transact],
) -> None:
    store, transact = joins
    transact([store.waiting_put("c-due", NOW + timedelta(minutes=5), NOW)])
    transact([store.waiting_put("c-later", NOW + timedelta(hours=1), NOW)])
    transact([store.waiting_put("c-gone", NOW + timedelta(minutes=1), NOW)])
    transact([store.waiting_delete("c-gone")])
    assert store.count_pending() == (2, 0)
    assert list(store.due(NOW)) == []
    due = list(store.due(NOW + timedelta(minutes=10)))
    assert [(d.kind, d.key, d.due_at) for d in due] == [("contact", "c-due", NOW + timedelta(minutes=5))]
    transact([store.waiting_put("c-due", NOW + timedelta(minutes=20), NOW)])  # its window moved
    assert list(store.due(NOW + timedelta(minutes=10))) == []
    store.clear_waiting(["c-due", "c-later", "c-never-waited"])
    assert store.count_pending() == (0, 0)
    assert list(store.due(NOW + timedelta(days=1))) == []


def test_join_store_reports_an_unclaimed_orphan_once_and_a_claimed_one_never(
    joins: tuple[Any, Transact],
) -> None:
    store, _ = joins
    lone, claimed = "rec/connect/lone.wav", "rec/connect/claimed.wav"
    due_at = NOW + timedelta(minutes=5)
    store.write(store.object_requests([(_seen(lone), due_at), (_seen(claimed), due_at)], NOW))
    assert store.count_pending() == (0, 2)
    assert list(store.due(NOW)) == []
    assert sorted((d.kind, d.key, d.due_at) for d in store.due(due_at)) == [
        ("recording", claimed, due_at),
        ("recording", lone, due_at),
    ]
    store.write(store.link_requests([(claimed, "c-1")], NOW))  # its CTR came within the window
    assert store.settle_orphans([lone, claimed], due_at) == [lone]
    assert (
        store.settle_orphans([lone, claimed], due_at) == []
    )  # reported once: a second sweeper is told nothing
    assert store.count_pending() == (0, 0)
    assert list(store.due(due_at)) == []
    assert store.read_halves([lone], due_at)[lone].obj == _seen(lone).obj  # the object half stays


@pytest.fixture(params=["dynamodb", "memory"])
def stores(request: pytest.FixtureRequest) -> tuple[Any, Any]:
    """The contact store and the join store whose actions its transactions carry."""
    if request.param == "memory":
        joins = MemoryJoinStore()
        return MemoryContactStore(joins), joins
    settings, aws = request.getfixturevalue("bootstrapped"), request.getfixturevalue("aws")
    return (
        DynamoContactStore(aws.dynamodb, settings.contacts_table),
        DynamoJoinStore(aws.dynamodb, settings.join_table, timedelta(days=7)),
    )


def test_contact_store_writes_a_view_only_over_the_version_it_was_decided_from(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, _ = stores
    old, old_raw = view_of(samples_dir, "2022-01-05T17:48:35Z")
    new, new_raw = view_of(samples_dir, "2022-01-11T03:41:32Z")
    cid = new.contact_id
    assert contacts.load(cid) is None and contacts.load_many([cid, "nobody"]) == {}

    def put(view: Any, replaces: Any, raw: bytes | None, **kw: Any) -> tuple[bool, str | None]:
        [outcome] = contacts.transact(
            [[contacts.put_action(view, replaces=replaces, raw_ctr=raw, now=NOW, **kw)]]
        )
        return outcome.written, outcome.reason

    assert put(new, None, new_raw, create_only=True) == (True, None)
    assert put(new, None, new_raw, create_only=True) == (False, bulk.CONDITION_FAILED)  # exists
    assert put(old, None, old_raw) == (False, bulk.CONDITION_FAILED)  # an older CTR version
    assert put(new, None, new_raw) == (False, bulk.CONDITION_FAILED)  # the same one
    stored = contacts.load(cid)
    assert stored is not None and stored.last_update == "2022-01-11T03:41:32.000Z"
    assert (stored.imported_at, stored.ctr, stored.emission_pending) == (
        "2026-06-01T12:00:00.000Z",
        new_raw,
        True,
    )
    assert stored.doc["contact_id"] == cid and stored.view.state is new.state
    revised = replace(stored.view, revision=1)
    assert put(revised, None, None)[0] is False  # a revision needs the version it replaces
    assert put(revised, stored, None) == (True, None)
    assert put(replace(revised, revision=2), stored, None) == (False, bulk.CONDITION_FAILED)  # stale base
    again = contacts.load_many([cid, "nobody"])
    assert list(again) == [cid]
    assert again[cid].version.endswith("#000001") and again[cid].ctr == new_raw
    assert again[cid].imported_at == "2026-06-01T12:00:00.000Z"  # the first import's
    assert list(contacts.contact_ids_of_agent(str(new.contact.acd_id))) == [cid]
    assert list(contacts.contact_ids_of_agent("nobody")) == []


def test_contact_store_writes_each_group_whole_with_its_sweeper_marker_or_not_at_all(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, joins = stores
    first, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="g-1")
    other, other_raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="g-2")
    due = NOW + timedelta(minutes=5)
    assert contacts.transact([]) == []
    outcomes = contacts.transact(
        [
            [
                contacts.put_action(first, replaces=None, raw_ctr=raw, now=NOW),
                joins.waiting_put("g-1", due, NOW),
            ],
            [],  # nothing to write: written
            [contacts.put_action(other, replaces=None, raw_ctr=other_raw, now=NOW)],
        ]
    )
    assert [o.written for o in outcomes] == [True, True, True]
    stale = contacts.load("g-1")
    assert stale is not None
    assert contacts.transact(
        [[contacts.put_action(replace(first, revision=1), replaces=stale, raw_ctr=None, now=NOW)]]
    )[0].written
    refused, written = contacts.transact(
        [
            [
                contacts.put_action(replace(first, revision=2), replaces=stale, raw_ctr=None, now=NOW),
                joins.waiting_delete("g-1"),
            ],
            [contacts.emitted_action("g-2", other.version), joins.waiting_put("g-2", due, NOW)],
        ]
    )
    assert (refused.written, refused.reason, written.written) == (False, bulk.CONDITION_FAILED, True)
    assert sorted(d.key for d in joins.due(due)) == ["g-1", "g-2"]  # g-1's marker kept: its group refused
    assert contacts.load("g-1").view.revision == 1  # type: ignore[union-attr]
    done = contacts.load("g-2")
    assert done is not None and not done.emission_pending
    assert not contacts.transact([[contacts.emitted_action("g-1", first.version)]])[
        0
    ].written  # replaced since


def test_contact_store_lets_one_holder_claim_an_emission_and_a_lapsed_claim_be_taken_over(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, _ = stores
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="claim-1")
    assert contacts.claim_emission("claim-1", view.version, "a", NOW, 30) is ClaimResult.DONE  # no contact
    assert contacts.transact([[contacts.put_action(view, replaces=None, raw_ctr=raw, now=NOW)]])[0].written
    assert contacts.claim_emission("claim-1", view.version, "a", NOW, 30) is ClaimResult.CLAIMED
    assert contacts.claim_emission("claim-1", view.version, "b", NOW, 30) is ClaimResult.BUSY
    assert (
        contacts.claim_emission("claim-1", "2000-01-01T00:00:00.000Z#000000", "b", NOW, 30)
        is ClaimResult.DONE
    )
    later = NOW + timedelta(seconds=31)
    assert contacts.claim_emission("claim-1", view.version, "b", later, 30) is ClaimResult.CLAIMED
    with pytest.raises(ClientError) as taken:
        contacts.note_attempt("claim-1", view.version, "a", later)  # a's claim was taken over
    assert taken.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert contacts.note_attempt("claim-1", view.version, "b", later) is None
    assert contacts.note_attempt("claim-1", view.version, "b", later) == "2026-06-01T12:00:31.000Z"
    contacts.mark_emitted("claim-1", "2000-01-01T00:00:00.000Z#000000")  # another version: nothing
    assert contacts.load("claim-1").emission_pending  # type: ignore[union-attr]
    contacts.mark_emitted("claim-1", view.version)
    assert not contacts.load("claim-1").emission_pending  # type: ignore[union-attr]
    assert contacts.claim_emission("claim-1", view.version, "c", later, 30) is ClaimResult.DONE


def test_contact_store_claimed_on_write_is_busy_to_others(stores: tuple[Any, Any], samples_dir: Path) -> None:
    contacts, _ = stores
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="claim-2")
    action = contacts.put_action(view, replaces=None, raw_ctr=raw, now=NOW, claim_owner="w1")
    assert contacts.transact([[action]])[0].written
    assert contacts.claim_emission("claim-2", view.version, "w2", NOW, 30) is ClaimResult.BUSY
    assert contacts.note_attempt("claim-2", view.version, "w1", NOW) == "2026-06-01T12:00:00.000Z"


def test_contact_store_lets_one_of_concurrent_creators_win(
    stores: tuple[Any, Any], samples_dir: Path
) -> None:
    contacts, _ = stores
    view, raw = view_of(samples_dir, "2022-01-05T17:48:35Z", contact_id="race-1")

    def create(_: int) -> bool:
        action = contacts.put_action(view, replaces=None, raw_ctr=raw, now=NOW, create_only=True)
        return bool(contacts.transact([[action]])[0].written)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(create, range(16))).count(True) == 1
