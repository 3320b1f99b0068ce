"""End to end: a simulated contact centre through the real KCL daemon and the recordings queue.

CTRs (duplicates, updates, out of order) go on the emulator's stream, recordings into S3
(before, between and after their CTRs; some never; some cut short; some with a broken
header; long ones as multipart uploads). ``qm-ingest run`` runs as users run it. The
contacts table must end with every contact at its newest version and the right join
state and duration; the output stream must hold each emitted version exactly once; a stop,
re-delivery of everything and a restart must add nothing.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.kinesis.put_records import put_records
from processor.devtools.publish_simulation import publish_scenario
from processor.devtools.simulated_centre import Scenario, build_scenario
from tests.contract.test_joiner import output_records
from tests.helpers import _LEASE_TABLE, ServiceProcess, lease_items, wait_until

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"QM_JOIN_WINDOW_SECONDS": "15", "QM_SWEEP_INTERVAL_SECONDS": "1"}

BAD_RECORDS = [
    b"{not json",
    b'{"ContactId": 42}',
    b"[1, 2, 3]",
    orjson.dumps(
        {
            "ContactId": "x",
            "InstanceARN": "a",
            "InitiationMethod": "INBOUND",
            "LastUpdateTimestamp": "9999-01-01T00:00:00Z",
        }
    ),
]


def scenario(seed: int, contacts: int, day: int, bucket: str) -> Scenario:
    return build_scenario(
        seed=seed,
        contacts=contacts,
        start=datetime(2026, 3, day, 9, tzinfo=UTC),
        bucket=bucket,
        max_talk_seconds=180,
        missing_rate=0.1,
    )


def final_views(store: DynamoContactStore) -> dict[str, dict]:
    return {c.contact_id: c.doc for c in store.scan() if c.view.state.final}


def all_final(store: DynamoContactStore, expected: dict[str, str]) -> bool:
    views = final_views(store)
    return all(k in views and views[k]["last_update"] == v for k, v in expected.items())


def assert_primed_leases_are_the_kcls(aws, stream: str, table: str) -> None:  # type: ignore[no-untyped-def]
    """The lease table and leases the tests prime are the KCL's own: same keys, index and
    billing; per shard the same fields, with the KCL's owner and progress on top."""
    described = aws.dynamodb.describe_table(TableName=table)["Table"]
    assert described["KeySchema"] == _LEASE_TABLE["KeySchema"]
    assert [
        {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
        for index in described["GlobalSecondaryIndexes"]
    ] == _LEASE_TABLE["GlobalSecondaryIndexes"]
    assert described["BillingModeSummary"]["BillingMode"] == _LEASE_TABLE["BillingMode"]
    shards = aws.kinesis.list_shards(StreamName=stream)["Shards"]
    kcl = {item["leaseKey"]["S"]: item for item in aws.dynamodb.scan(TableName=table)["Items"]}
    primed = {item["leaseKey"]["S"]: item for item in lease_items(shards, "TRIM_HORIZON")}
    assert set(kcl) == set(primed)
    for shard, item in primed.items():
        assert set(item) <= set(kcl[shard]), (item, kcl[shard])
        for field in ("startingHashKey", "endingHashKey", "checkpointSubSequenceNumber"):
            assert kcl[shard][field] == item[field], field


def test_join_end_to_end_stop_restart_no_duplicates(bootstrapped, aws, tmp_path: Path) -> None:
    settings = bootstrapped
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    first = scenario(11, 30, 1, settings.recordings_bucket)
    second = scenario(12, 20, 2, settings.recordings_bucket)

    put_records(aws.kinesis, settings.ctr_stream, [(b, str(i)) for i, b in enumerate(BAD_RECORDS)])
    log = tmp_path / "service.log"
    # A new application, as users start it: the KCL creates its lease table and leases itself
    # (every other test starts with them primed, tests/helpers.prime_kcl_leases).
    service = ServiceProcess(log, {**SERVICE_ENV, "TEST_KCL_PRIME": "0"}).start()
    try:
        publish_scenario(settings, aws, contacts=0, scenario=first)
        wait_until(lambda: all_final(store, first.expected), 180, "the first 30 contacts, final")
        assert_primed_leases_are_the_kcls(aws, settings.ctr_stream, settings.application_name)
        before = {cid: (doc["version"], doc["imported_at"]) for cid, doc in final_views(store).items()}
        output_before = output_records(aws, settings.output_stream)
        stop_seconds = service.stop()
        assert stop_seconds < 10, f"SIGTERM took {stop_seconds:.1f}s"
        assert service.proc is not None and service.proc.returncode == 0

        # Everything again (duplicates), plus a second day, then a fresh daemon.
        put_records(aws.kinesis, settings.ctr_stream, [(b, str(i)) for i, b in enumerate(first.deliveries)])
        publish_scenario(settings, aws, contacts=0, scenario=second)
        service = ServiceProcess(log, SERVICE_ENV).start()
        expected = {**first.expected, **second.expected}
        wait_until(lambda: all_final(store, expected), 180, "the second day's contacts, final")
    finally:
        if service.alive():
            service.stop()

    views = final_views(store)
    assert set(views) == set(expected)
    for cid in first.expected:
        assert (views[cid]["version"], views[cid]["imported_at"]) == before[cid], (
            "re-delivery changed a contact"
        )
    for sc in (first, second):
        for cid, state in sc.expected_state.items():
            doc = views[cid]
            assert doc["join_state"] == state, cid
            want = sc.expected_duration[cid]
            if state == "joined":
                assert doc["call_duration_seconds"] == pytest.approx(want, abs=0.01), cid
            assert doc["acd_id"] is None or doc["first_name"] is not None  # names from the users table

    records = output_records(aws, settings.output_stream)
    keys = Counter((r["contact_id"], r["version"]) for r in records)
    assert max(keys.values()) == 1, "a version was emitted twice"
    last = {}
    for r in records:
        last[r["contact_id"]] = r
    assert {cid: r["version"] for cid, r in last.items()} == {cid: d["version"] for cid, d in views.items()}
    assert len([r for r in records if r["contact_id"] in first.expected]) == len(output_before)

    quarantine = aws.dynamodb.scan(TableName=settings.quarantine_table)["Items"]
    assert sorted(item["reason"]["S"] for item in quarantine) == [
        "absurd_timestamp",
        "bad_json",
        "not_an_object",
        "schema",
    ]
    text = log.read_text()
    assert "Traceback" not in text
    # No phone number of the test data appears in clear in any log line.
    for sc in (first, second):
        for ctr in sc.newest.values():
            for endpoint in ("CustomerEndpoint", "SystemEndpoint"):
                digits = re.sub(r"\D", "", ctr[endpoint]["Address"])
                assert digits not in text
