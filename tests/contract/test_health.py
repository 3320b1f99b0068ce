"""Readiness from the KCL lease table and the processors' heartbeats; the HTTP endpoint."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from processor.app.health_endpoint import HealthServer, ReadinessMonitor, ReadinessProbe, ServiceCollector
from processor.entrypoints.probe import probe


@dataclass
class App:
    application_name: str
    stream_name: str
    worker_id: str


@dataclass
class FakeDaemon:
    """Stands in for a KclDaemon (a Java process): readiness only asks it these two things."""

    app: App
    exit_code: int | None = None

    def poll(self) -> int | None:
        return self.exit_code


def lease_table(aws, name: str, leases: dict[str, tuple[str, str]]) -> None:
    """A KCL lease table as the KCL writes it: leaseKey -> (leaseOwner, checkpoint)."""
    aws.dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "leaseKey", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "leaseKey", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for key, (owner, checkpoint) in leases.items():
        aws.dynamodb.put_item(
            TableName=name,
            Item={"leaseKey": {"S": key}, "leaseOwner": {"S": owner}, "checkpoint": {"S": checkpoint}},
        )


def failed(readiness) -> dict[str, str]:
    return {c.name: c.detail for c in readiness.checks if not c.ok}


def test_readiness_needs_aws_daemon_leases_and_heartbeats(settings, aws) -> None:
    app = App(settings.application_name, settings.ctr_stream, "host-1")
    daemon = FakeDaemon(app)
    beats: dict[tuple[str, str], float] = {}
    now = [1000.0]
    probe_ = ReadinessProbe(settings, aws, lambda: [daemon], lambda: beats, clock=lambda: now[0])

    first = probe_.check()
    assert (
        not first.ready and failed(first)["leases:" + app.application_name] == "lease table not created yet"
    )

    lease_table(
        aws,
        app.application_name,
        {
            "shardId-000000000000": ("host-1", "4959"),
            "shardId-000000000001": ("host-2", "4960"),  # another worker's
            "shardId-000000000002": ("host-1", "SHARD_END"),  # finished: needs no processor
        },
    )
    waiting = probe_.check()
    assert failed(waiting) == {
        "processors": "0/1 reporting; silent for more than 120s: " + f"{app.stream_name}/shardId-000000000000"
    }
    beats[(app.stream_name, "shardId-000000000000")] = 990.0
    ready = probe_.check()
    assert ready.ready, ready.checks
    assert {c.name: c.detail for c in ready.checks}["leases"] == "1 held by this worker (need 1)"

    now[0] = 990.0 + settings.ready_heartbeat_max_age_s + 1  # the processor went silent
    assert "processors" in failed(probe_.check())
    now[0] = 1000.0
    daemon.exit_code = 1
    assert failed(probe_.check()) == {f"kcl:{app.application_name}": "exited with 1"}


def test_not_ready_while_a_shard_retries_a_failed_batch(settings, aws) -> None:
    from processor.app.health_endpoint import FailingBatch

    app = App(settings.application_name, settings.ctr_stream, "host-1")
    lease_table(aws, app.application_name, {"shardId-000000000000": ("host-1", "4959")})
    beats = {(app.stream_name, "shardId-000000000000"): 995.0}
    failing = {(app.stream_name, "shardId-000000000000"): FailingBatch(958.0, "AccessDeniedException")}
    probe_ = ReadinessProbe(
        settings,
        aws,
        lambda: [FakeDaemon(app)],
        lambda: beats,
        clock=lambda: 1000.0,
        failing_batches=lambda: failing,
    )
    assert failed(probe_.check()) == {
        "batches": "retrying a failed batch in place (the shard waits until it succeeds): "
        f"{app.stream_name}/shardId-000000000000 for 42s (AccessDeniedException)"
    }
    failing.clear()
    ready = probe_.check()
    assert ready.ready, ready.checks
    assert {c.name: c.detail for c in ready.checks}["batches"] == "no shard retrying a failed batch"


def test_standby_worker_may_be_ready_without_leases(settings, aws, monkeypatch) -> None:
    standby = settings.model_copy(update={"ready_min_leases": 0})
    app = App(settings.application_name, settings.ctr_stream, "host-9")
    lease_table(aws, app.application_name, {"shardId-000000000000": ("host-1", "1")})
    assert ReadinessProbe(standby, aws, lambda: [FakeDaemon(app)], dict).check().ready
    assert not ReadinessProbe(settings, aws, lambda: [FakeDaemon(app)], dict).check().ready


def get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read(), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers["Content-Type"]


def test_http_endpoint(settings, aws, tmp_path: Path, monkeypatch) -> None:
    state = {"ready": False}

    def fake_probe():
        from processor.app.health_endpoint import Check, Readiness

        return Readiness((Check("aws", state["ready"], "test"),), time.time())

    monitor = ReadinessMonitor(fake_probe, interval=0.1).start()
    server = HealthServer("127.0.0.1", 0, readiness=monitor, collector=ServiceCollector(tmp_path)).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert get(f"{base}/healthz")[0] == 200
        monkeypatch.setenv("QM_HEALTH_PORT", str(server.port))
        assert probe("healthz") is True
        time.sleep(0.3)
        status, body, kind = get(f"{base}/readyz")
        assert status == 503 and kind == "application/json"
        assert orjson.loads(body)["checks"] == [{"name": "aws", "ok": False, "detail": "test"}]
        assert probe("readyz") is False
        state["ready"] = True
        time.sleep(0.3)
        assert get(f"{base}/readyz")[0] == 200
        status, body, kind = get(f"{base}/metrics")
        assert status == 200 and kind.startswith("text/plain; version=0.0.4")
        assert list(text_string_to_metric_families(body.decode())) is not None
        assert get(f"{base}/nope")[0] == 404
    finally:
        server.stop()
        monitor.stop()
    assert probe("healthz", port=server.port) is False
