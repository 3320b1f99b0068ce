"""Metrics cost: a record processor's per-batch metrics in multiprocess mode, and /metrics scrape time.

Per batch a record processor records a heartbeat, MillisBehindLatest, records read, one write
outcome per contact and its checkpoint. Multiprocess mode writes each value to a memory-mapped
file; the baseline is the same calls with prometheus_client's in-memory values, measured in
the same run. The scrape sums the files of N per-shard processes, next to rendering an
in-memory registry of the same series.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench.common import line

BATCHES = 20_000
CONTACTS_PER_BATCH = 10
SHARDS = 64

_BATCHES_SCRIPT = textwrap.dedent(
    f"""
    import time
    from processor.platform import metrics
    m = metrics.ShardMetrics("qm-ctr", "shardId-000000000000")
    join = metrics.JoinMetrics()
    started = time.perf_counter()
    for _ in range({BATCHES}):
        m.heartbeat(millis_behind=0)
        m.batch_read({CONTACTS_PER_BATCH})
        for _ in range({CONTACTS_PER_BATCH}):
            join.emitted("joined")
        m.checkpointed()
    print(time.perf_counter() - started)
    """
)

_SHARD_SCRIPT = textwrap.dedent(
    """
    import sys
    from processor.platform import metrics
    m = metrics.ShardMetrics("qm-ctr", sys.argv[1])
    m.heartbeat(millis_behind=5); m.batch_read(100); m.checkpointed()
    print("ready", flush=True)
    sys.stdin.read()
    """
)


def _batches(env: dict[str, str]) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _BATCHES_SCRIPT], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def run() -> None:
    base_env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with tempfile.TemporaryDirectory() as directory:
        in_memory = _batches(base_env)
        on_files = _batches({**base_env, "PROMETHEUS_MULTIPROC_DIR": directory})
    per_batch = lambda seconds: seconds / BATCHES * 1e6  # noqa: E731 - a unit conversion
    print(
        line(
            f"metrics per batch ({CONTACTS_PER_BATCH} contacts), multiprocess",
            per_batch(on_files),
            "µs",
            "same calls, in-memory values",
            per_batch(in_memory),
            lower_is_better=True,
        )
    )

    from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

    from processor.app.health_endpoint import ServiceCollector, render_metrics

    with tempfile.TemporaryDirectory() as directory:
        env = {**base_env, "PROMETHEUS_MULTIPROC_DIR": directory}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _SHARD_SCRIPT, f"shardId-{i:012d}"],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(SHARDS)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
            collector = ServiceCollector(Path(directory))
            started = time.perf_counter()
            for _ in range(20):
                render_metrics(collector)
            scrape = (time.perf_counter() - started) / 20
        finally:
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait()
    registry = CollectorRegistry()
    gauges = [Gauge(f"g{i}", "x", ["stream", "shard"], registry=registry) for i in range(5)]
    counter = Counter("c", "x", ["stream"], registry=registry)
    for shard in range(SHARDS):
        for gauge in gauges:
            gauge.labels("qm-ctr", f"shardId-{shard:012d}").set(1)
    counter.labels("qm-ctr").inc()
    started = time.perf_counter()
    for _ in range(20):
        generate_latest(registry)
    baseline = (time.perf_counter() - started) / 20
    print(
        line(
            f"/metrics scrape, {SHARDS} shard processes' files",
            scrape * 1e3,
            "ms",
            "in-memory registry, same series",
            baseline * 1e3,
            lower_is_better=True,
        )
    )
