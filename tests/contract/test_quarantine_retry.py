"""Quarantined input runs again after a fix, through the same idempotent path."""

from __future__ import annotations

from pathlib import Path

import orjson

from processor.app.wiring import build_ingest, build_quarantine
from processor.core.batch import StreamRecord
from processor.ops.quarantine_retry import retry_entries
from processor.platform.exceptions import SourcePosition
from processor.platform.settings import Settings


def test_foreign_instance_retried_after_the_setting_is_fixed(
    bootstrapped, aws, samples_dir: Path, monkeypatch
) -> None:
    raw = (samples_dir / "ctr/smg-agenttrack-quickstart-1.json").read_bytes()
    wrong = bootstrapped.model_copy(update={"instance_arn": "arn:aws:connect:us-east-1:1:instance/other"})
    ingest = build_ingest(wrong, aws)
    position = SourcePosition("kinesis", wrong.ctr_stream, "shardId-000000000000", "42")
    result = ingest.process([StreamRecord(raw, position), StreamRecord(b"{broken", position)])
    assert (result.quarantined, result.imported) == (2, 0)
    entries = {e.reason: e for e in build_quarantine(bootstrapped, aws).list()}
    assert set(entries) == {"foreign_instance", "bad_json"}
    assert entries["foreign_instance"].payload == raw
    # The operator fixes QM_INSTANCE_ARN (the CTR's real instance) and retries.
    fixed = bootstrapped.model_copy(
        update={
            "instance_arn": "arn:aws:connect:us-east-1:847765041971:instance/"
            "2fee1c1f-9d48-42f9-99ee-d129e70dd33f"
        }
    )
    report = retry_entries(fixed, aws, everything=True)
    assert (report.retried, report.still_failing) == (1, 1)  # broken JSON stays broken
    contact = aws.dynamodb.get_item(
        TableName=fixed.contacts_table, Key={"contact_id": {"S": "08ce9577-8f42-4bed-9cee-a0a14b574966"}}
    )["Item"]
    assert orjson.loads(contact["doc"]["S"])["join_state"] == "no_recording_expected"
    statuses = {e.reason: e.status for e in build_quarantine(fixed, aws).list()}
    assert statuses == {"foreign_instance": "retried", "bad_json": "open"}
    assert retry_entries(fixed, aws, everything=True).retried == 0  # nothing left to retry
    assert isinstance(fixed, Settings)
