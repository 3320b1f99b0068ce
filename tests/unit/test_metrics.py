"""Metrics across processes: what separate record processors write is summed by the service's
collector; live-only gauges of exited processes disappear; checkpoint age is derived at scrape."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from processor.app.health_endpoint import ServiceCollector, render_metrics
from processor.platform import metrics_files

# One "record processor": a separate interpreter writing metrics into the shared directory.
WORKER = textwrap.dedent(
    """
    import sys, time
    from types import SimpleNamespace
    from processor.platform.exceptions import InvalidInput, SourcePosition
    from processor.platform import metrics

    shard, records, created, pending = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    m = metrics.ShardMetrics("qm-ctr", shard, clock=lambda: 1000.0)
    m.heartbeat(millis_behind=250)
    m.batch_read(records)
    for _ in range(created):
        metrics.JoinMetrics().emitted("joined")
    m.batch_result(SimpleNamespace(unchanged=1))
    metrics.count_quarantined(InvalidInput("bad_json", "x", position=SourcePosition("kinesis")))
    if pending == "checkpointed":
        m.checkpointed()
    """
)


def run_worker(directory: Path, *args: str) -> None:
    env = {**os.environ, metrics_files.MULTIPROC_ENV: str(directory)}
    subprocess.run([sys.executable, "-c", WORKER, *args], env=env, check=True, timeout=60)


def values(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_values_of_separate_processes_are_summed(tmp_path: Path) -> None:
    run_worker(tmp_path, "shardId-000000000000", "7", "5", "checkpointed")
    run_worker(tmp_path, "shardId-000000000001", "4", "3", "pending")
    collector = ServiceCollector(tmp_path, clock=lambda: 1030.0)
    # The workers have exited: their counters stay, their live-only gauges are reaped.
    got = values(render_metrics(collector))
    assert got[("qm_records_read_total", (("stream", "qm-ctr"),))] == 11
    assert got[("qm_contacts_emitted_total", (("join_state", "joined"),))] == 8
    assert got[("qm_contacts_unchanged_total", ())] == 2
    assert got[("qm_quarantined_total", (("reason", "bad_json"), ("source", "kinesis")))] == 2
    assert not any(name == "qm_millis_behind_latest" for name, _ in got)
    assert not any(name == "qm_checkpoint_age_seconds" for name, _ in got)


def test_live_gauges_and_checkpoint_age_while_processors_run(tmp_path: Path) -> None:
    # The "processors" are this test's own pid: alive, so nothing is reaped.
    script = textwrap.dedent(
        """
        import os, sys, time
        from processor.platform import metrics
        a = metrics.ShardMetrics("qm-ctr", "shardId-000000000000", clock=lambda: 1000.0)
        a.heartbeat(millis_behind=250); a.batch_read(3); a.checkpointed()
        b = metrics.ShardMetrics("qm-ctr", "shardId-000000000001", clock=lambda: 1010.0)
        b.heartbeat(millis_behind=90000); b.batch_read(2)  # stuck before its checkpoint
        print("ready", flush=True)
        sys.stdin.read()
        """
    )
    env = {**os.environ, metrics_files.MULTIPROC_ENV: str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        collector = ServiceCollector(tmp_path, clock=lambda: 1070.0)
        got = values(render_metrics(collector))
        shard0 = (("shard", "shardId-000000000000"), ("stream", "qm-ctr"))
        shard1 = (("shard", "shardId-000000000001"), ("stream", "qm-ctr"))
        assert got[("qm_millis_behind_latest", shard0)] == 250
        assert got[("qm_millis_behind_latest", shard1)] == 90000
        assert got[("qm_checkpoint_age_seconds", shard0)] == 0
        assert got[("qm_checkpoint_age_seconds", shard1)] == 60  # read at 1010, scraped at 1070
        assert got[("qm_last_checkpoint_timestamp_seconds", shard0)] == 1000
        assert collector.heartbeats() == {
            ("qm-ctr", "shardId-000000000000"): 1000.0,
            ("qm-ctr", "shardId-000000000001"): 1010.0,
        }
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
    # Gone: its per-shard gauges go with it.
    assert ServiceCollector(tmp_path).heartbeats() == {}


def test_retries_are_counted_through_the_retry_hook() -> None:
    from botocore.exceptions import ClientError
    from prometheus_client import REGISTRY

    from processor.platform import metrics  # noqa: F401 - registers the hook
    from processor.platform.retry import retry_transient

    labels = {"operation": "test.op", "error": "ThrottlingException"}
    before = REGISTRY.get_sample_value("qm_retries_total", labels) or 0.0
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ClientError({"Error": {"Code": "ThrottlingException"}}, "PutItem")
        return "done"

    assert retry_transient(flaky, "test.op") == "done"
    assert REGISTRY.get_sample_value("qm_retries_total", labels) == before + 2


def test_prepare_gives_each_run_a_fresh_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(metrics_files.MULTIPROC_ENV, raising=False)
    stale = tmp_path / "metrics" / "999999999"
    stale.mkdir(parents=True)
    (stale / "counter_999999999.db").write_bytes(b"x")
    path = metrics_files.prepare(tmp_path)
    try:
        assert path == tmp_path / "metrics" / str(os.getpid())
        assert os.environ[metrics_files.MULTIPROC_ENV] == str(path)
        assert not stale.exists(), "a dead run's values would be summed into ours"
    finally:
        metrics_files.remove(path)
        from prometheus_client import values as prom_values

        # This pytest process goes back to in-memory values.
        prom_values.ValueClass = prom_values.MutexValue
    assert not path.exists()


def test_a_shard_retrying_a_failed_batch_is_seen_by_the_service(tmp_path: Path) -> None:
    """The record processor's failing-batch gauge reaches readiness through the metric files."""
    script = textwrap.dedent(
        """
        import sys
        from processor.platform import metrics
        m = metrics.ShardMetrics("qm-ctr", "shardId-000000000000", clock=lambda: 1000.0)
        m.batch_failing("AccessDeniedException")
        m.batch_failing("ResourceNotFoundException")  # the cause changed: one series left
        print("failing", flush=True)
        sys.stdin.readline()
        m.batch_recovered()
        print("recovered", flush=True)
        sys.stdin.read()
        """
    )
    from processor.app.health_endpoint import FailingBatch

    env = {**os.environ, metrics_files.MULTIPROC_ENV: str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "failing"
        collector = ServiceCollector(tmp_path)
        assert collector.failing_batches() == {
            ("qm-ctr", "shardId-000000000000"): FailingBatch(1000.0, "ResourceNotFoundException")
        }
        assert collector.heartbeats() == {("qm-ctr", "shardId-000000000000"): 1000.0}
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "recovered"
        assert collector.failing_batches() == {}
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=30)
