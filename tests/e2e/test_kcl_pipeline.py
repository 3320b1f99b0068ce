"""End to end: CTRs on the emulator's stream, the real KCL MultiLangDaemon, the contacts table.

One KCL application per test module (a new application's first start costs up to 30 s
of the KCL's own lease-table wait), driven through ``qm-ingest run`` as a child process.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from processor.adapters.contacts import DynamoContactStore
from processor.adapters.kinesis import put_records
from processor.simulation import build_scenario
from tests.helpers import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

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


def stored_versions(store: DynamoContactStore) -> dict[str, tuple[str, str | None]]:
    return {c.contact_id: (c.last_update, c.imported_at) for c in store.scan()}


def test_import_stop_restart_no_duplicates(bootstrapped, aws, tmp_path: Path) -> None:
    settings = bootstrapped
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    first = build_scenario(seed=11, contacts=40, start=datetime(2026, 3, 1, 9, tzinfo=UTC))
    second = build_scenario(seed=12, contacts=25, start=datetime(2026, 3, 2, 9, tzinfo=UTC))
    assert not set(first.expected) & set(second.expected)

    def put(payloads: list[bytes]) -> None:
        put_records(aws.kinesis, settings.ctr_stream, [(p, str(i)) for i, p in enumerate(payloads)])

    put(first.deliveries[:30] + BAD_RECORDS + first.deliveries[30:])
    log = tmp_path / "service.log"
    service = ServiceProcess(log).start()
    try:
        wait_until(
            lambda: all(stored_versions(store).get(k, ("",))[0] == v for k, v in first.expected.items()),
            timeout=150,
            what="the first 40 contacts at their newest versions",
        )
        before = stored_versions(store)
        assert set(before) == set(first.expected)
        wait_until(lambda: "batch processed" in service.logs(), 10, "a checkpointed batch")
        stop_seconds = service.stop()
        assert stop_seconds < 10, f"SIGTERM took {stop_seconds:.1f}s"
        assert service.proc is not None and service.proc.returncode == 0

        # Everything again (duplicates), plus 25 new contacts, then a fresh daemon.
        put(first.deliveries + second.deliveries)
        service = ServiceProcess(log).start()
        expected = {**first.expected, **second.expected}
        wait_until(
            lambda: all(stored_versions(store).get(k, ("",))[0] == v for k, v in expected.items()),
            timeout=120,
            what="the 25 new contacts after restart",
        )
    finally:
        if service.alive():
            service.stop()
    after = stored_versions(store)
    assert set(after) == set(expected)
    for contact_id, version in before.items():
        assert after[contact_id] == version, "a re-delivered contact was written again"

    quarantine = list(aws.dynamodb.scan(TableName=settings.quarantine_table)["Items"])
    reasons = sorted(item["reason"]["S"] for item in quarantine)
    assert reasons == ["absurd_timestamp", "bad_json", "not_an_object", "schema"]

    text = log.read_text()
    created = sum(int(m) for m in re.findall(r'"created":(\d+)', text))
    updated = sum(int(m) for m in re.findall(r'"updated":(\d+)', text))
    # Each contact was created once; the only rewrites are updates that overtook nothing.
    assert created == len(expected)
    assert updated <= sum(1 for s in (first, second) for _ in s.deliveries) - len(expected)
    # No phone number of the test data appears in clear in any log line.
    for scenario in (first, second):
        for ctr in scenario.newest.values():
            digits = ctr["CustomerEndpoint"]["Address"].strip().lstrip("+")
            assert digits not in text
