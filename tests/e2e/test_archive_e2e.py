"""The Firehose archive end to end, as users run it: ``qm-ingest backfill`` killed with SIGKILL
in the middle of an object and started again (every contact exactly once, the finished
objects skipped), ``qm-ingest reconcile`` before and after, and ``qm-ingest run
--ctr-source firehose-s3`` importing new objects from their S3 notifications."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.s3.archive import DynamoArchiveCursor
from processor.devtools.publish_simulation import archive_deliveries, upload_recording
from processor.devtools.simulated_centre import RecordingUpload, build_scenario
from tests.contract.test_joiner import output_records
from tests.helpers import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

PREFIX = "firehose/ctr/"


def scenario(settings, seed: int, contacts: int, day: int):
    sc = build_scenario(
        seed=seed,
        contacts=contacts,
        start=datetime(2026, 6, day, 9, tzinfo=UTC),
        bucket=settings.recordings_bucket,
        missing_rate=0.0,
        max_talk_seconds=15,
    )
    return sc


def upload_recordings(aws, sc) -> None:
    for event in sc.events:
        if isinstance(event, RecordingUpload):
            upload_recording(aws, event)


def qm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_backfill_killed_midway_resumes_and_imports_every_contact_once(bootstrapped, aws) -> None:
    settings = bootstrapped
    sc = scenario(settings, 51, 60, day=1)
    upload_recordings(aws, sc)
    half = len(sc.deliveries) // 2
    objects = archive_deliveries(aws, settings.archive_bucket, PREFIX, sc.deliveries[:half], per_object=6)
    objects += archive_deliveries(
        aws, settings.archive_bucket, PREFIX, sc.deliveries[half:], per_object=6, compress=True, newline=True
    )
    url = f"s3://{settings.archive_bucket}/{PREFIX}"
    cursor = DynamoArchiveCursor(aws.dynamodb, settings.archive_cursor_table)
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)

    # Killed (SIGKILL) after the 5th object's records are written, before its cursor entry.
    killed = qm("backfill", url, "--parallel", "1", env={"QM_FAULT_KILL_AT": "backfill_after_batch:5"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert cursor.count() == 4
    partial = {c.contact_id for c in store.scan()}
    assert 0 < len(partial) < len(sc.expected)

    gaps = qm("reconcile", url, "--since", "2026-06-01", "--until", "2026-06-01", "--json")
    assert gaps.returncode == 4, gaps.stderr[-2000:]
    assert orjson.loads(gaps.stdout)["report"]["missing"] == len(sc.expected) - len(partial)

    resumed = qm("backfill", url, "--json")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    report = orjson.loads(resumed.stdout)
    assert report["skipped"] == 4
    assert report["imported_objects"] == len(objects) - 4
    assert cursor.count() == len(objects)

    assert {c.contact_id: c.doc["last_update"] for c in store.scan()} == sc.expected
    emitted = output_records(aws, settings.output_stream)
    per_version = Counter((r["contact_id"], r["version"]) for r in emitted)
    assert max(per_version.values()) == 1, "a contact version was emitted twice"
    assert {cid for cid, _ in per_version} == set(sc.expected)

    clean = qm("reconcile", url, "--since", "2026-06-01", "--until", "2026-06-01", "--json")
    assert clean.returncode == 0, clean.stderr[-2000:]
    doc = orjson.loads(clean.stdout)["report"]
    assert (doc["missing"], doc["stale"], doc["extra"]) == (0, 0, 0)
    assert doc["ok"] + doc["ahead"] == len(sc.expected)

    again = qm("backfill", url, "--json")
    assert orjson.loads(again.stdout)["skipped"] == len(objects)
    assert len(output_records(aws, settings.output_stream)) == len(emitted)


def test_run_follows_the_firehose_archive(bootstrapped, aws, tmp_path: Path) -> None:
    settings = bootstrapped
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    env = {"QM_ARCHIVE_PREFIX": PREFIX}
    # The archive notification filters on the prefix: bootstrap again with it.
    assert qm("bootstrap", env=env).returncode == 0
    log = tmp_path / "service.log"
    with ServiceProcess(log, env, args=("--ctr-source", "firehose-s3")) as service:
        wait_until(lambda: service.get("/readyz")[0] == 200, 60, "readiness without a KCL daemon")
        sc = scenario(settings, 52, 20, day=2)
        upload_recordings(aws, sc)
        archive_deliveries(aws, settings.archive_bucket, PREFIX, sc.deliveries, per_object=5, compress=True)
        # Outside the prefix: no notification, never imported.
        other = scenario(settings, 53, 3, day=3)
        archive_deliveries(aws, settings.archive_bucket, "elsewhere/", other.deliveries, per_object=5)
        wait_until(
            lambda: (
                {c.contact_id: c.doc["last_update"] for c in store.scan() if c.view.state.final}
                == sc.expected
            ),
            120,
            "the archived contacts",
        )
        status, body = service.get("/readyz")
        assert status == 200 and b"firehose-s3" in body
    text = log.read_text()
    started = [
        line["application"]
        for line in (orjson.loads(raw) for raw in text.splitlines() if raw.startswith("{"))
        if line.get("event") == "starting KCL MultiLangDaemon"
    ]
    # The CTR stream has no reader in this mode; the agent event stream still has its own.
    assert settings.application_name not in started
    assert settings.agent_application_name in started
    assert "following the Firehose archive" in text
    assert "Traceback" not in text
    assert not set(other.expected) & {c.contact_id for c in store.scan()}
