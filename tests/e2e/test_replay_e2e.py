"""Replay end to end: the real KCL daemon (``qm-ingest run``) and ``qm-ingest replay`` as users
run them. N contacts imported; replay from TRIM_HORIZON under the running worker (--force):
the consumer re-reads everything, 0 new contacts, 0 new output records. The contacts table
wiped; the dry run reports all N missing; replay with --stop-workers, start the service
again: exactly the N contacts back."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.kinesis.put_records import put_records
from processor.devtools.publish_simulation import upload_recording
from processor.devtools.simulated_centre import RecordingUpload, build_scenario
from tests.contract.test_joiner import output_records
from tests.contract.test_replay import wipe_contacts
from tests.helpers import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

CONTACTS = 25


def cli(*args: str, timeout: float = 240) -> tuple[int, dict]:
    done = subprocess.run(
        [sys.executable, "-m", "processor", *args, "--json"],
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    doc = orjson.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, {**doc, "_stderr": done.stderr[-3000:]}


def records_read(service: ServiceProcess) -> float:
    status, body = service.get("/metrics")
    if status != 200:
        return -1.0
    found = re.findall(rb"^qm_records_read_total\{[^}]*\} ([0-9.e+]+)$", body, re.MULTILINE)
    return sum(float(x) for x in found)


def contact_docs(store: DynamoContactStore, *, keep_imported_at: bool = True) -> dict[str, dict]:
    out = {}
    for stored in store.scan():
        doc = dict(stored.doc)
        if not keep_imported_at:
            doc.pop("imported_at", None)
        out[stored.contact_id] = doc
    return out


def test_replay_under_the_running_consumer_then_after_the_table_is_lost(
    bootstrapped, aws, tmp_path: Path
) -> None:
    settings = bootstrapped
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    sc = build_scenario(
        seed=41,
        contacts=CONTACTS,
        start=datetime(2026, 5, 20, 9, tzinfo=UTC),
        bucket=settings.recordings_bucket,
        missing_rate=0.0,
        max_talk_seconds=15,
    )
    for event in sc.events:
        if isinstance(event, RecordingUpload):
            upload_recording(aws, event)
    log = tmp_path / "service.log"
    service = ServiceProcess(log).start()
    try:
        put_records(aws.kinesis, settings.ctr_stream, [(p, str(i)) for i, p in enumerate(sc.deliveries)])
        wait_until(
            lambda: (
                {c.contact_id: c.doc["last_update"] for c in store.scan() if c.view.state.final}
                == sc.expected
            ),
            180,
            f"{CONTACTS} contacts imported",
        )
        # A contact is final in the table before its output record is put: wait until every
        # emission is marked done, so the baseline holds every record the import puts.
        wait_until(
            lambda: not any(c.emission_pending for c in store.scan()), 60, "every emission marked done"
        )
        imported = contact_docs(store)
        emitted = output_records(aws, settings.output_stream)
        assert {r["emission_id"] for r in emitted} >= {f"{c.contact_id}@{c.version}" for c in store.scan()}, (
            "an imported contact's final version was not emitted"
        )
        assert len({r["emission_id"] for r in emitted}) == len(emitted), "the import emitted twice"
        wait_until(lambda: records_read(service) >= len(sc.deliveries), 60, "the read counter")
        read_before = records_read(service)

        # 1. Under the running worker: the lease moves, the worker re-reads everything.
        code, doc = cli("replay", "--trim-horizon", "--force", "--wait-timeout", "180")
        assert code == 0, doc
        assert all(s["moved"] for s in doc["shards"]), doc
        assert doc["held_by"], "the running worker held the leases"
        assert doc["caught_up"] and all(doc["caught_up"].values()), doc
        saved = Path(doc["saved_to"])
        assert saved.is_file()
        wait_until(
            lambda: records_read(service) - read_before >= len(sc.deliveries), 60, "every record read again"
        )
        assert contact_docs(store) == imported, "a replay changed a contact"
        again = output_records(aws, settings.output_stream)
        assert [r["emission_id"] for r in again[len(emitted) :]] == [], "a replay emitted again"
        assert again == emitted, "a replay changed the output stream"

        # 2. The contacts table is lost; the dry run says what a replay would bring back.
        wipe_contacts(aws, settings)
        code, doc = cli("replay", "--trim-horizon", "--dry-run")
        assert code == 0, doc
        assert doc["diff"]["missing"] == CONTACTS and doc["diff"]["stale"] == 0, doc
        assert not list(store.scan())

        # 3. Stop the worker through replay, move the checkpoints, start it again.
        code, doc = cli("replay", "--trim-horizon", "--stop-workers", "--no-wait")
        assert code == 0, doc
        assert doc["stopped_workers"] == [service.proc.pid], doc
        assert service.proc.wait(timeout=30) == 0
        assert all(s["moved"] for s in doc["shards"]), doc
        service = ServiceProcess(log).start()
        wait_until(
            lambda: {c.contact_id for c in store.scan() if c.view.state.final} == set(sc.expected),
            180,
            f"the {CONTACTS} contacts back",
        )
        restored = contact_docs(store, keep_imported_at=False)
        assert restored == {
            cid: {k: v for k, v in d.items() if k != "imported_at"} for cid, d in imported.items()
        }
    finally:
        if service.alive():
            service.stop()
    text = log.read_text()
    assert "Traceback" not in text
    assert "lease lost" in text  # the forced replay took the leases from the running worker
