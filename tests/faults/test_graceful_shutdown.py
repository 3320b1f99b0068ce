"""Graceful shutdown: SIGTERM in the middle of a stream checkpoints exactly what is durable and
exits within 10 s; a restart resumes from there and nothing is lost or emitted twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    checkpoints,
    contact_centre,
    delivered,
    expectation,
    judge,
    log_events,
    phases,
    publish,
    stored_versions,
    wait_audit_ok,
    wait_caught_up,
    wait_for,
)
from tests.helpers import ServiceProcess

pytestmark = [pytest.mark.faults, pytest.mark.e2e]


def test_sigterm_mid_stream_checkpoints_what_is_durable(
    bootstrapped, aws, tmp_path: Path, services: list[ServiceProcess], record_figures
) -> None:
    started_at = time.monotonic()
    settings = bootstrapped
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    centre = contact_centre(71, 240, settings.recordings_bucket)
    first, second, third = phases(centre, 3)
    log = tmp_path / "service.log"
    service = ServiceProcess(log, SERVICE_ENV).start()
    services.append(service)

    publish(aws, settings.ctr_stream, first)
    wait_caught_up(store, delivered(first), time.monotonic(), 150)
    # The second phase goes in while the service works; SIGTERM lands as soon as part of it is in.
    publish(aws, settings.ctr_stream, second)
    wanted = set(delivered(second))
    wait_for(lambda: wanted & set(stored_versions(store)), 60, "the second phase to be under way", 0.2)
    stop_seconds = service.stop()
    assert stop_seconds < 10, f"SIGTERM took {stop_seconds:.1f}s"
    assert service.proc is not None and service.proc.returncode == 0

    # What the processors had made durable is exactly what the lease table says is checkpointed.
    events = log_events(log)
    last_batch: dict[str, str] = {}
    for event in events:
        if event.get("event") == "batch processed" and event.get("stream") == settings.ctr_stream:
            last_batch[event["shard_id"]] = event["sequence_number"]
    shut_down = {e["shard_id"] for e in events if e.get("event") == "shutdown requested; checkpointed"}
    table = checkpoints(aws, settings.application_name)
    assert last_batch and set(last_batch) <= shut_down
    for shard, sequence in last_batch.items():
        assert table[shard] == sequence, f"{shard}: checkpoint {table[shard]}, last durable batch {sequence}"

    # A restart resumes from those checkpoints.
    restart = ServiceProcess(log, SERVICE_ENV).start()
    services.append(restart)
    restarted = time.monotonic()
    recovery = wait_caught_up(store, delivered(first + second), restarted, 150)
    resumed = [e for e in log_events(log)[len(events) :] if e.get("event") == "record processor initialised"]
    for event in resumed:
        if event.get("shard_id") in table and event.get("stream", settings.ctr_stream) == settings.ctr_stream:
            assert event["sequence_number"] == table[event["shard_id"]]

    publish(aws, settings.ctr_stream, third)
    expect = expectation(centre)
    wait_audit_ok(settings, aws, expect, 120)
    assert restart.stop() < 10
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    assert "Traceback" not in log.read_text()
    record_figures(
        Figures(
            "graceful shutdown (SIGTERM mid-stream, restart)",
            report,
            [recovery],
            f"SIGTERM to exit {stop_seconds:.1f} s; checkpoint = last durable batch on every shard",
            time.monotonic() - started_at,
        )
    )
