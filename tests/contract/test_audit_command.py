"""``qm-ingest audit`` against the emulator: it reads the contacts table, the whole output stream
and the quarantine, says ok (exit 0) for a clean import, and fails (exit 1) naming a contact
that is missing, a version emitted twice and a quarantine count other than expected."""

from __future__ import annotations

from pathlib import Path

import orjson
from jsonschema import Draft7Validator
from typer.testing import CliRunner

from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.core.ctr import ctr_from_object
from processor.core.schemas import load_schema
from processor.entrypoints.cli import app
from processor.platform.exceptions import InvalidInput, SourcePosition
from tests.contract.test_joiner import FakeClock, make_joiner, output_records


def ivr_ctr(contact_id: str, version: str) -> dict:
    return {
        "ContactId": contact_id,
        "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
        "InitiationMethod": "INBOUND",
        "LastUpdateTimestamp": version,
        "Agent": None,
        "Recordings": None,
    }


def run_audit(expect: dict, tmp_path: Path) -> tuple[int, dict, str]:
    path = tmp_path / "expect.json"
    path.write_bytes(orjson.dumps(expect))
    as_json = CliRunner().invoke(app, ["audit", "--expect", str(path), "--json"])
    text = CliRunner().invoke(app, ["audit", "--expect", str(path)])
    assert as_json.exit_code == text.exit_code
    report = orjson.loads(as_json.stdout)
    Draft7Validator(load_schema("audit-report")).validate(report)
    return as_json.exit_code, report, text.stdout


def test_audit_judges_what_qm_holds(bootstrapped, aws, tmp_path: Path) -> None:
    settings = bootstrapped
    joiner = make_joiner(settings, aws, FakeClock())
    for cid, version in (("ivr-1", "2026-06-01T11:00:00Z"), ("ivr-2", "2026-06-01T11:01:00Z")):
        obj = ivr_ctr(cid, version)
        joiner.on_ctr(ctr_from_object(obj), orjson.dumps(obj))
    newer = ivr_ctr("ivr-2", "2026-06-01T11:30:00Z")
    joiner.on_ctr(ctr_from_object(newer), orjson.dumps(newer))
    DynamoQuarantine(aws.dynamodb, settings.quarantine_table).put(
        InvalidInput("bad_json", "not JSON", payload=b"{", position=SourcePosition("kinesis", "s", "0", "1")),
        "2026-06-01T11:00:00.000Z",
    )
    expect = {
        "contacts": {
            "ivr-1": {"last_update": "2026-06-01T11:00:00Z", "join_state": "no_recording_expected"},
            "ivr-2": {"last_update": "2026-06-01T11:30:00Z", "join_state": "no_recording_expected"},
        },
        "quarantined": {"total": 1, "by_source": {"kinesis": 1}},
    }
    code, report, text = run_audit(expect, tmp_path)
    assert code == 0, text
    assert (report["expected"], report["imported"], report["lost"], report["duplicated"]) == (2, 2, 0, 0)
    # ivr-2's first version went out too, once: three versions, one record each.
    assert report["records_per_version"] == {"0": 0, "1": 3, ">1": 0}
    assert report["output_records"] == 3
    assert "OK: nothing lost, nothing duplicated" in text

    # A version put on the output stream a second time, a contact never imported, and a
    # quarantine count that does not match: each one is named.
    [first] = [r for r in output_records(aws, settings.output_stream) if r["contact_id"] == "ivr-1"]
    aws.kinesis.put_record(StreamName=settings.output_stream, Data=orjson.dumps(first), PartitionKey="ivr-1")
    expect["contacts"]["ivr-3"] = "2026-06-01T12:00:00Z"
    expect["quarantined"] = {"total": 2}
    code, report, text = run_audit(expect, tmp_path)
    assert code == 1
    assert (report["imported"], report["lost"], report["duplicated"]) == (1, 1, 1)
    assert sorted((p["kind"], p["contact_id"]) for p in report["problems"]) == [
        ("duplicated", "ivr-1"),
        ("missing", "ivr-3"),
        ("quarantine_count", None),
    ]
    assert "FAILED" in text


def test_audit_refuses_a_bad_expectation_file(bootstrapped, tmp_path: Path) -> None:
    path = tmp_path / "expect.json"
    path.write_bytes(b'{"a": 42}')
    result = CliRunner().invoke(app, ["audit", "--expect", str(path)])
    assert result.exit_code == 2
    assert "not an audit expectation" in result.stderr
