"""Outage: the emulator unreachable for 30 s in the middle of a run (a network partition: every
call hangs), then slow responses, then connections reset for a while. The service keeps
/healthz at 200, reports not-ready on /readyz while AWS is away, backs off, and recovers by
itself; the audit finds nothing lost and nothing emitted twice."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.devtools.faultproxy import FaultProxy
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    contact_centre,
    delivered,
    expectation,
    judge,
    phases,
    publish,
    wait_audit_ok,
    wait_caught_up,
    wait_for,
)
from tests.helpers import ServiceProcess

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

OUTAGE_S = 30.0
LATENCY_S = 0.25
RESETS_S = 10.0


@pytest.mark.slow
def test_outage_slow_responses_and_resets(
    bootstrapped, aws, tmp_path: Path, *, services: list[ServiceProcess], record_figures, proxy: FaultProxy
) -> None:
    started_at = time.monotonic()
    settings = bootstrapped
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    centre = contact_centre(101, 120, settings.recordings_bucket)
    first, second, third, fourth = phases(centre, 4)
    log = tmp_path / "service.log"
    service = ServiceProcess(log, {**SERVICE_ENV, "AWS_ENDPOINT_URL": proxy.endpoint}).start()
    services.append(service)
    publish(aws, settings.ctr_stream, first)
    wait_caught_up(store, delivered(first), time.monotonic(), 150)
    wait_for(lambda: service.get("/readyz")[0] == 200, 60, "/readyz 200 before the outage")

    # 1. A 30 s partition while Connect keeps writing (straight to the emulator).
    publish(aws, settings.ctr_stream, second[: len(second) // 2])
    proxy.partition()
    partitioned = time.monotonic()
    not_ready_after: float | None = None
    alive_throughout = True
    publish(aws, settings.ctr_stream, second[len(second) // 2 :])
    while time.monotonic() - partitioned < OUTAGE_S:
        if not_ready_after is None and service.get("/readyz")[0] == 503:
            not_ready_after = time.monotonic() - partitioned
        alive_throughout &= service.get("/healthz")[0] == 200
        time.sleep(0.5)
    proxy.heal()
    healed = time.monotonic()
    wait_for(lambda: service.get("/readyz")[0] == 200, 120, "/readyz 200 after the outage")
    ready_again = time.monotonic() - healed
    outage_recovery = wait_caught_up(store, delivered(first + second), healed, 180)
    assert alive_throughout, "/healthz must stay 200 during an outage (a restart would not help)"
    assert not_ready_after is not None, f"/readyz never reported not-ready during the {OUTAGE_S:.0f}s outage"

    # 2. Slow responses: every chunk of every answer waits.
    proxy.delay(LATENCY_S)
    slow_started = time.monotonic()
    publish(aws, settings.ctr_stream, third)
    slow_catch_up = wait_caught_up(store, delivered(first + second + third), slow_started, 240)
    proxy.delay(0)

    # 3. Connections reset, and refused, for a while.
    publish(aws, settings.ctr_stream, fourth)
    proxy.refuse()
    time.sleep(RESETS_S)
    proxy.heal()
    reset_healed = time.monotonic()
    reset_recovery = wait_caught_up(store, delivered(centre.events), reset_healed, 180)

    expect = expectation(centre)
    wait_audit_ok(settings, aws, expect, 120)
    assert service.stop() < 10
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    assert "Traceback" not in log.read_text()
    record_figures(
        Figures(
            f"emulator unreachable {OUTAGE_S:.0f} s, then {LATENCY_S * 1000:.0f} ms per response chunk, "
            f"then connections reset for {RESETS_S:.0f} s",
            report,
            [outage_recovery, reset_recovery],
            f"/readyz 503 after {not_ready_after:.1f} s of the outage, 200 again {ready_again:.1f} s "
            f"after it; /healthz 200 throughout; caught up under slow responses in {slow_catch_up:.1f} s",
            time.monotonic() - started_at,
        )
    )
