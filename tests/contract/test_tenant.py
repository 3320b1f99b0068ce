"""The tenant check is on: which Connect instances are imported comes from QM_INSTANCE_ARN or
the console's ACD Configuration page, and nothing imports while neither names one."""

from __future__ import annotations

import os
import time
from dataclasses import replace

import orjson
import pytest

from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.adapters.dynamodb.runtime_config import RuntimeConfigStore
from processor.app.wiring import build_ingest
from processor.console.health_panel import resource_health
from processor.core.batch import StreamRecord
from processor.ops.doctor import Doctor, Severity
from processor.platform.exceptions import ConfigurationError, SourcePosition
from tests.contract.test_doctor import cli

OURS = "arn:aws:connect:us-east-1:111122223333:instance/0d6a8c5e-1111-4b7a-9e2d-6f0c3b9a1e11"
THEIRS = "arn:aws:connect:us-east-1:999988887777:instance/7f2b1d3c-2222-4c8d-8a1e-2b3c4d5e6f70"


def ctr(contact_id: str, instance: str) -> StreamRecord:
    doc = {
        "ContactId": contact_id,
        "InstanceARN": instance,
        "InitiationMethod": "INBOUND",
        "Channel": "VOICE",
        "InitiationTimestamp": "2026-06-01T10:00:00Z",
        "DisconnectTimestamp": "2026-06-01T10:05:00Z",
        "LastUpdateTimestamp": "2026-06-01T10:06:00Z",
        "Recordings": None,
    }
    return StreamRecord(orjson.dumps(doc), SourcePosition("kinesis", "ctr", "shardId-0", contact_id))


@pytest.fixture
def unnamed(bootstrapped, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """QM_INSTANCE_ARN unset, as by default."""
    monkeypatch.delenv("QM_INSTANCE_ARN", raising=False)
    return bootstrapped.model_copy(update={"instance_arn": None})


def save_console_instance(aws, settings, arn: str) -> None:  # type: ignore[no-untyped-def]
    store = RuntimeConfigStore(aws.dynamodb, settings.config_table)
    store.save(
        replace(store.load(), instance_arn=arn), updated_by="admin", updated_at="2026-06-01T09:00:00.000Z"
    )


def test_run_refuses_to_start_when_no_instance_is_named(unnamed, aws) -> None:
    [tenant] = [f for f in Doctor(unnamed, aws).check_all() if f.subject == "tenant check"]
    assert tenant.severity is Severity.FATAL
    assert "QM_INSTANCE_ARN" in tenant.fix and "any" in tenant.fix
    started = time.monotonic()
    done = cli("run", env={**os.environ, "QM_HEALTH_PORT": "0"})
    assert done.returncode == 1
    assert time.monotonic() - started < 60
    assert "refusing to start" in done.stderr
    assert "tenant check: no Amazon Connect instance is named" in done.stderr
    assert "QM_INSTANCE_ARN=any" in done.stderr
    doctor = cli("doctor", env=dict(os.environ))
    assert doctor.returncode != 0
    assert "FATAL    tenant check" in doctor.stdout


def test_nothing_imports_without_a_named_instance(unnamed, aws) -> None:
    with pytest.raises(ConfigurationError, match="QM_INSTANCE_ARN"):
        build_ingest(unnamed, aws)  # what replay, backfill, reconcile --fix and quarantine retry build
    done = cli("replay", "--trim-horizon", "--direct", env=dict(os.environ))
    assert done.returncode != 0
    assert "no Amazon Connect instance is named" in done.stderr


def test_the_console_instance_is_enforced(unnamed, aws) -> None:
    assert any("no Amazon Connect instance" in p for p, _ in resource_health(unnamed, aws).problems)
    save_console_instance(aws, unnamed, OURS)
    assert not any("no Amazon Connect instance" in p for p, _ in resource_health(unnamed, aws).problems)
    [tenant] = [f for f in Doctor(unnamed, aws).check_all() if f.subject == "tenant check"]
    assert tenant.severity is Severity.OK and OURS in tenant.message

    ingest = build_ingest(unnamed, aws)
    result = ingest.process([ctr("c-ours", OURS), ctr("c-theirs", THEIRS)])
    assert (result.created, result.quarantined) == (1, 1)
    [entry] = list(
        DynamoQuarantine(aws.dynamodb, unnamed.quarantine_table, aws.s3, unnamed.quarantine_bucket).list()
    )
    assert entry.reason == "foreign_instance"
    assert THEIRS in entry.detail


def test_several_instances_and_any(bootstrapped, aws) -> None:
    several = bootstrapped.model_copy(update={"instance_arn": f"{OURS}, {THEIRS}"})
    result = build_ingest(several, aws).process([ctr("c-1", OURS), ctr("c-2", THEIRS)])
    assert (result.created, result.quarantined) == (2, 0)
    other = "arn:aws:connect:eu-west-2:555566667777:instance/3a4b5c6d-3333-4d9e-9f0a-1b2c3d4e5f60"
    result = build_ingest(several, aws).process([ctr("c-3", other)])
    assert result.quarantined == 1
    anything = bootstrapped.model_copy(update={"instance_arn": "any"})
    assert build_ingest(anything, aws).process([ctr("c-4", other)]).created == 1
    [tenant] = [f for f in Doctor(anything, aws).check_all() if f.subject == "tenant check"]
    assert tenant.severity is Severity.WARNING
