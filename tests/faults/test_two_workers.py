"""Two workers: a second ``qm-ingest run`` joins in the middle of a stream of four shards and
takes leases over; then the first one stops and its leases move to the second. Both workers
process the same contacts around each handoff; the audit finds no contact and no output
record twice, and nothing lost."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    contact_centre,
    delivered,
    expectation,
    judge,
    kcl_state,
    lease_owners,
    log_events,
    phases,
    publish,
    wait_audit_ok,
    wait_caught_up,
    wait_for,
)
from tests.helpers import ServiceProcess

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

SHARDS = 4


@pytest.fixture
def four_shards(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("QM_CTR_STREAM_SHARDS", str(SHARDS))
    return SHARDS


def batches(log: Path, stream: str) -> set[str]:
    return {
        e["shard_id"]
        for e in log_events(log)
        if e.get("event") == "batch processed" and e.get("stream") == stream
    }


@pytest.mark.slow
def test_a_second_worker_joins_then_the_first_leaves(
    four_shards: int, bootstrapped, aws, tmp_path: Path, *, services: list[ServiceProcess], record_figures
) -> None:
    started_at = time.monotonic()
    settings = bootstrapped
    app = settings.application_name
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    centre = contact_centre(121, 160, settings.recordings_bucket)
    first, second, third, fourth = phases(centre, 4)
    logs = {name: tmp_path / f"{name}.log" for name in ("worker-1", "worker-2")}

    def worker(name: str) -> ServiceProcess:
        service = ServiceProcess(logs[name], {**SERVICE_ENV, "QM_WORKER_ID": name}).start()
        services.append(service)
        return service

    one = worker("worker-1")
    publish(aws, settings.ctr_stream, first)
    wait_caught_up(store, delivered(first), time.monotonic(), 180)
    assert set(lease_owners(aws, app).values()) == {"worker-1"}

    # A second worker starts in the middle of the stream and takes some leases.
    two = worker("worker-2")
    joined = time.monotonic()
    publish(aws, settings.ctr_stream, second)
    wait_for(lambda: "worker-2" in lease_owners(aws, app).values(), 180, "worker-2 to take a lease")
    took_lease = time.monotonic() - joined
    publish(aws, settings.ctr_stream, third)
    wait_caught_up(store, delivered(first + second + third), joined, 180, lambda: kcl_state(aws, app))
    shared = lease_owners(aws, app)

    # The first worker leaves: every lease moves to the second, which carries on.
    publish(aws, settings.ctr_stream, fourth[: len(fourth) // 2])
    stop_seconds = one.stop()
    left = time.monotonic()
    publish(aws, settings.ctr_stream, fourth[len(fourth) // 2 :])
    wait_for(lambda: set(lease_owners(aws, app).values()) == {"worker-2"}, 120, "every lease on worker-2")
    moved = time.monotonic() - left
    # A timeout names the pending emissions' claims and the leases: which revisit is missing.
    recovery = wait_caught_up(store, delivered(centre.events), left, 180, lambda: kcl_state(aws, app))

    expect = expectation(centre)
    wait_audit_ok(settings, aws, expect, 120)
    two.stop()
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    assert batches(logs["worker-1"], settings.ctr_stream) and batches(logs["worker-2"], settings.ctr_stream)
    assert stop_seconds < 10
    held = sorted(shared.values()).count("worker-2")
    record_figures(
        Figures(
            f"two workers on {SHARDS} shards: a second joins mid-stream, then the first stops",
            report,
            [recovery],
            f"worker-2 took its first lease {took_lease:.1f} s after starting ({held} of {SHARDS} shared); "
            f"all leases on worker-2 {moved:.1f} s after worker-1's SIGTERM",
            time.monotonic() - started_at,
        )
    )
