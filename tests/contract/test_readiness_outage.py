"""/readyz during an outage where calls hang rather than fail (a partition): the probe's own
short timeouts turn it to 503 within seconds, and a probe that produces no result for too
long counts as not ready."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from processor.app import health_endpoint
from processor.devtools.faultproxy import FaultProxy
from tests.contract.test_health import App, FakeDaemon, failed, lease_table


def test_a_partition_makes_the_probe_fail_fast(emulator: str, settings) -> None:
    with FaultProxy(urlsplit(emulator).port or 0) as proxy:
        through = settings.model_copy(update={"aws_endpoint_url": proxy.endpoint})
        aws = health_endpoint.probe_clients(through)  # what `run` gives its readiness probe
        lease_table(aws, settings.application_name, {"shardId-0": ("host-1", "1")})
        app = App(settings.application_name, settings.ctr_stream, "host-1")
        probe = health_endpoint.ReadinessProbe(
            through, aws, lambda: [FakeDaemon(app)], lambda: {(settings.ctr_stream, "shardId-0"): time.time()}
        )
        assert probe.check().ready
        proxy.partition()
        started = time.monotonic()
        result = probe.check()
        took = time.monotonic() - started
        proxy.heal()
        assert not result.ready and "aws" in failed(result)
        assert took < 2 * health_endpoint.PROBE_TIMEOUT_S + 1, f"the probe hung {took:.1f}s"
        assert probe.check().ready


def test_a_stuck_probe_is_not_ready() -> None:
    ready = health_endpoint.Readiness((health_endpoint.Check("aws", True, "ok"),), at=1000.0)
    monitor = health_endpoint.ReadinessMonitor(probe=lambda: ready, latest=ready)
    assert monitor.current(now=1000.0 + health_endpoint.STALE_AFTER_S).ready
    stale = monitor.current(now=1000.0 + health_endpoint.STALE_AFTER_S + 1)
    assert not stale.ready and "probe" in failed(stale)
