"""Users sync from Amazon Connect into the users table (the emulator's DynamoDB).

The emulator does not serve Connect's ListUsers/DescribeUser, so the Connect side is
botocore's Stubber on a real ``connect`` client: it checks every request we send and every
response fixture against the Connect service model, and fails on any call not expected.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from botocore.stub import Stubber

from processor.adapters.connect.user_listing import BotoConnectUsers, SyncStateStore, sync_users
from processor.adapters.dynamodb.users_table import DynamoUserAdmin
from processor.core.user_directory import QmUser
from tests.connect_fixtures import load

INSTANCE = "8f3c1d2e-5b6a-4c7d-9e8f-0a1b2c3d4e5f"
IDS = {
    "ana": "0a6f2c1e-7d3b-4e1a-9c2f-5b8d7e6a1f01",
    "chloe": "1b7e3d2f-8e4c-4f2b-8d3e-6c9e8f7b2a02",
    "dmitri": "2c8f4e30-9f5d-4a3c-9e4f-7daf9a8c3b03",
}


def _clock() -> Any:
    counter = itertools.count()
    return lambda: f"2024-07-01T08:00:{next(counter):02d}.000Z"


def _stub_full_sync(
    stubber: Stubber,
    describe: tuple[str, ...] = ("ana", "chloe", "dmitri"),
    bodies: dict[str, Any] | None = None,
) -> None:
    first = load("list-users-page1")
    stubber.add_response("list_users", first, {"InstanceId": INSTANCE, "MaxResults": 1000})
    stubber.add_response(
        "list_users",
        load("list-users-page2"),
        {"InstanceId": INSTANCE, "MaxResults": 1000, "NextToken": first["NextToken"]},
    )
    for name in describe:
        body = (bodies or {}).get(name) or load(f"describe-user-{name}")
        stubber.add_response("describe_user", body, {"InstanceId": INSTANCE, "UserId": IDS[name]})


@pytest.fixture
def parts(bootstrapped, aws):  # type: ignore[no-untyped-def]
    client = aws.client("connect")
    users = DynamoUserAdmin(aws.dynamodb, bootstrapped.users_table, cache_seconds=0)
    state = SyncStateStore(aws.dynamodb, bootstrapped.config_table)
    return client, users, state


def test_sync_keeps_what_qm_administrators_set(parts) -> None:  # type: ignore[no-untyped-def]
    client, users, state = parts
    # A QM administrator already enabled screen recording for Ana and bound her desktop.
    users.put(QmUser("ana.silva", "Old", "Name", screen_recording=True, desktop_id="PC-7"))
    with Stubber(client) as stubber:
        _stub_full_sync(stubber)
        outcome = sync_users(BotoConnectUsers(client), users, state, instance_id=INSTANCE, now=_clock())
        stubber.assert_no_pending_responses()
    assert sorted(outcome.created) == ["chloé@example.com", "dmitri"]
    assert outcome.updated == ["ana.silva"]
    ana = users.get("ana.silva")
    assert ana is not None
    assert (ana.first_name, ana.last_name, ana.screen_recording, ana.desktop_id) == (
        "Ana",
        "Silva",
        True,
        "PC-7",
    )
    assert ana.agent_arn is not None and ana.agent_arn.endswith(IDS["ana"])
    chloe = users.get("chloé@example.com")
    assert chloe is not None and (chloe.first_name, chloe.screen_recording) == ("Chloé", False)
    dmitri = users.get("dmitri")
    assert dmitri is not None and dmitri.last_name is None
    last = state.load()
    assert (last.synced_at, last.users, last.problems) == ("2024-07-01T08:00:00.000Z", 3, 0)


def test_resync_marks_users_gone_and_survives_a_vanished_user(parts) -> None:  # type: ignore[no-untyped-def]
    client, users, state = parts
    with Stubber(client) as stubber:
        _stub_full_sync(stubber)
        sync_users(BotoConnectUsers(client), users, state, instance_id=INSTANCE, now=_clock())
    users.set_screen_recording(["dmitri"], True)
    with Stubber(client) as stubber:
        stubber.add_response(
            "list_users", load("list-users-page2"), {"InstanceId": INSTANCE, "MaxResults": 1000}
        )
        # Dmitri is deleted between ListUsers and DescribeUser: skipped, the sync goes on.
        stubber.add_client_error(
            "describe_user", "ResourceNotFoundException", http_status_code=404, expected_params=None
        )
        outcome = sync_users(
            BotoConnectUsers(client),
            users,
            state,
            instance_id=INSTANCE,
            now=lambda: "2024-07-02T08:00:00.000Z",
        )
    assert outcome.total == 0
    assert outcome.gone == ["ana.silva", "chloé@example.com", "dmitri"]
    rows = {r.user.username: r for r in users.rows()}
    assert rows["ana.silva"].gone_from_connect_at == "2024-07-02T08:00:00.000Z"
    assert rows["dmitri"].user.screen_recording is True  # kept, never deleted by a sync


def test_throttling_is_not_swallowed(parts) -> None:  # type: ignore[no-untyped-def]
    from botocore.exceptions import ClientError

    client, users, state = parts
    with Stubber(client) as stubber:
        stubber.add_client_error("list_users", "ThrottlingException", http_status_code=429)
        with pytest.raises(ClientError):
            sync_users(BotoConnectUsers(client), users, state, instance_id=INSTANCE, now=_clock())
    assert state.load().synced_at is None


def test_desktop_contact_is_recorded_and_never_goes_back(parts) -> None:  # type: ignore[no-untyped-def]
    _, users, _ = parts
    users.put(QmUser("ana.silva", "Ana", "Silva"))
    users.record_desktop_contact(
        "ana.silva", seen_at="2024-07-01T10:00:00.000Z", desktop_id="PC-9", queue_depth=3
    )
    users.record_desktop_contact("ana.silva", seen_at="2024-07-01T09:00:00.000Z", queue_depth=7)
    (row,) = users.rows()
    assert (row.desktop_last_seen_at, row.desktop_reported_queue_depth, row.user.desktop_id) == (
        "2024-07-01T10:00:00.000Z",
        3,
        "PC-9",
    )


def _names_of(aws, settings, contact_id: str) -> tuple:  # type: ignore[no-untyped-def, type-arg]
    from processor.adapters.dynamodb.contacts import DynamoContactStore

    stored = DynamoContactStore(aws.dynamodb, settings.contacts_table).get(contact_id)
    assert stored is not None
    return stored.doc["first_name"], stored.doc["last_name"], "user_unknown" in stored.doc["flags"]


def _emitted(aws, settings, contact_id: str) -> int:  # type: ignore[no-untyped-def]
    from tests.contract.test_joiner import output_records

    return sum(1 for r in output_records(aws, settings.output_stream) if r["contact_id"] == contact_id)


def test_users_sync_names_the_contacts_imported_before_the_user(bootstrapped, aws) -> None:  # type: ignore[no-untyped-def]
    # Ana's contact is imported before her QM user exists: no names. The sync that creates
    # her user (any path: CLI, console, schedule) gives the contact her names, one new revision.
    from processor.app.users_sync import ContactNamer, sync_and_name
    from processor.app.wiring import build_joiner
    from tests.contract.test_screen_control import ctr

    record, raw = ctr("c-before-user", "ana.silva")
    build_joiner(bootstrapped, aws).on_ctr(record, raw)
    assert _names_of(aws, bootstrapped, "c-before-user") == (None, None, True)
    assert _emitted(aws, bootstrapped, "c-before-user") == 1

    client = aws.client("connect")
    namer = ContactNamer(bootstrapped, aws)
    arn = f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE}"

    def sync():  # type: ignore[no-untyped-def]
        return sync_and_name(
            bootstrapped,
            aws,
            arn,
            synced_by="test",
            namer=namer,
            source=BotoConnectUsers(client),
            now=_clock(),
        )

    with Stubber(client) as stubber:
        _stub_full_sync(stubber)
        outcome, named = sync()
    assert "ana.silva" in outcome.created and named == 1
    assert _names_of(aws, bootstrapped, "c-before-user") == ("Ana", "Silva", False)
    assert _emitted(aws, bootstrapped, "c-before-user") == 2

    # The same sync again changes no name: no new revision.
    with Stubber(client) as stubber:
        _stub_full_sync(stubber)
        outcome, named = sync()
    assert outcome.renamed == [] and named == 0
    assert _emitted(aws, bootstrapped, "c-before-user") == 2

    # Ana is renamed in Connect: her contacts follow.
    renamed = load("describe-user-ana")
    renamed["User"]["IdentityInfo"]["LastName"] = "Silva-Costa"
    with Stubber(client) as stubber:
        _stub_full_sync(stubber, bodies={"ana": renamed})
        outcome, named = sync()
    assert outcome.renamed == ["ana.silva"] and named == 1
    assert _names_of(aws, bootstrapped, "c-before-user") == ("Ana", "Silva-Costa", False)
    assert _emitted(aws, bootstrapped, "c-before-user") == 3


def test_the_scheduled_sync_runs_and_names(bootstrapped, aws) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from processor.adapters.dynamodb.runtime_config import RuntimeConfigStore
    from processor.app.users_sync import run_scheduled_sync
    from processor.app.wiring import build_joiner
    from tests.contract.test_screen_control import ctr

    store = RuntimeConfigStore(aws.dynamodb, bootstrapped.config_table)
    from dataclasses import replace

    store.save(
        replace(store.load(), instance_arn=f"arn:aws:connect:us-east-1:123456789012:instance/{INSTANCE}"),
        updated_by="admin",
        updated_at="2024-07-01T07:00:00.000Z",
    )
    record, raw = ctr("c-scheduled", "dmitri")
    build_joiner(bootstrapped, aws).on_ctr(record, raw)
    client = aws.client("connect")
    stop = threading.Event()
    with Stubber(client) as stubber:
        _stub_full_sync(stubber)
        thread = threading.Thread(
            target=run_scheduled_sync,
            args=(bootstrapped, aws),
            kwargs={"interval": 0.2, "stop": stop, "source": lambda: BotoConnectUsers(client)},
        )
        thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _names_of(aws, bootstrapped, "c-scheduled")[0] is None:
            time.sleep(0.2)
        stop.set()
        thread.join(timeout=10)
    assert _names_of(aws, bootstrapped, "c-scheduled")[:2] == ("Dmitri", None)
