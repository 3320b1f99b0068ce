"""The HTTP endpoint of ``qm-ingest run``: ``/healthz``, ``/readyz`` and ``/metrics``.

* ``/healthz`` — the process is alive (its HTTP thread answers). Use it for liveness
  and the container's HEALTHCHECK.
* ``/readyz`` — 200 only when AWS is reachable, every KCL daemon runs, this worker holds
  at least ``QM_READY_MIN_LEASES`` shard leases, and the record processor of every held
  lease has reported within ``QM_READY_HEARTBEAT_MAX_AGE_S``, and no shard is stuck retrying
  a failed batch (access denied, a missing table: the record processor retries it in place
  and the shard waits, see :mod:`processor.adapters.kcl.record_processor`). Otherwise 503;
  the JSON body says which check failed. Checks run in a background thread every few seconds, so a
  probe never waits on AWS.
* ``/metrics`` — Prometheus text format, summed over every process of the service (the
  per-shard record processors included), plus ``qm_checkpoint_age_seconds`` derived at
  scrape time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

import orjson
from botocore.exceptions import BotoCoreError, ClientError

from processor.adapters.aws import AwsClients, error_code
from processor.platform.logs import get_logger
from processor.platform.settings import CtrSource, Settings

log = get_logger("processor.app.health_endpoint")

REFRESH_SECONDS = 3.0
#: Connect and read timeout of each AWS call of the readiness probe.
PROBE_TIMEOUT_S = 3.0
#: A readiness result older than this is no result: the probe itself is stuck.
STALE_AFTER_S = 20.0
# The classic text format every Prometheus (and compatible scraper) reads.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class KclApp(Protocol):
    application_name: str
    stream_name: str
    worker_id: str


class Daemon(Protocol):
    """What readiness needs of a running KCL daemon (``supervisor.KclDaemon``)."""

    app: Any

    def poll(self) -> int | None: ...


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Readiness:
    checks: tuple[Check, ...]
    at: float

    @property
    def ready(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "checked_at": round(self.at, 3),
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
        }


NOT_CHECKED = Readiness((Check("started", False, "readiness not checked yet"),), 0.0)


# --- metrics --------------------------------------------------------------------------------------
class ServiceCollector:
    """Every process's metric files, summed, plus values that depend on the scrape time."""

    def __init__(self, path: Path, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self._clock = clock

    def families(self) -> list[Any]:
        from prometheus_client.multiprocess import MultiProcessCollector

        from processor.platform import metrics_files

        metrics_files.reap_dead(self.path)
        collector = MultiProcessCollector(None, path=str(self.path))  # type: ignore[no-untyped-call]
        return list(collector.collect())  # type: ignore[no-untyped-call]

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        families = self.families()
        yield from families
        age = GaugeMetricFamily(
            "qm_checkpoint_age_seconds",
            "Seconds the oldest record read but not yet checkpointed has waited (0: all checkpointed)",
            labels=["stream", "shard"],
        )
        now = self._clock()
        for sample in _samples(families, "qm_uncheckpointed_since_timestamp_seconds"):
            since = sample.value
            age.add_metric(
                [sample.labels["stream"], sample.labels["shard"]], max(0.0, now - since) if since else 0.0
            )
        yield age

    def heartbeats(self) -> dict[tuple[str, str], float]:
        return {
            (s.labels["stream"], s.labels["shard"]): s.value
            for s in _samples(self.families(), "qm_processor_heartbeat_timestamp_seconds")
        }

    def failing_batches(self) -> dict[tuple[str, str], FailingBatch]:
        """(stream, shard) -> the batch its live record processor is retrying."""
        failing: dict[tuple[str, str], FailingBatch] = {}
        for s in _samples(self.families(), "qm_batch_failing_since_timestamp_seconds"):
            if s.value <= 0:
                continue
            key = (s.labels["stream"], s.labels["shard"])
            seen = failing.get(key)
            if seen is None or s.value < seen.since:
                failing[key] = FailingBatch(s.value, s.labels.get("error", ""))
        return failing


@dataclass(frozen=True)
class FailingBatch:
    """A shard's batch that failed for no record's fault, retried in place since ``since``."""

    since: float
    error: str


def no_failing_batches() -> dict[tuple[str, str], FailingBatch]:
    return {}


def _samples(families: Iterable[Any], name: str) -> Iterator[Any]:
    for family in families:
        if family.name == name:
            yield from family.samples


def render_metrics(collector: ServiceCollector) -> bytes:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return generate_latest(registry)


# --- readiness ------------------------------------------------------------------------------------
def held_leases(aws: AwsClients, application: str, worker_id: str) -> list[str]:
    """Shard leases of the KCL lease table ``<application>`` owned by ``worker_id``."""
    keys: list[str] = []
    kwargs: dict[str, Any] = {
        "TableName": application,
        "FilterExpression": "leaseOwner = :w",
        "ExpressionAttributeValues": {":w": {"S": worker_id}},
        "ProjectionExpression": "leaseKey, checkpoint",
        "ConsistentRead": True,
    }
    while True:
        page = aws.dynamodb.scan(**kwargs)
        for item in page.get("Items", []):
            # A finished shard keeps its lease until cleanup; it needs no processor.
            if item.get("checkpoint", {}).get("S") != "SHARD_END":
                keys.append(item["leaseKey"]["S"])
        if "LastEvaluatedKey" not in page:
            return keys
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@dataclass
class ReadinessProbe:
    """Computes :class:`Readiness` from AWS, the daemons and the processors' heartbeats."""

    settings: Settings
    aws: AwsClients
    daemons: Callable[[], Sequence[Daemon]]
    heartbeats: Callable[[], dict[tuple[str, str], float]]
    clock: Callable[[], float] = time.time
    failing_batches: Callable[[], dict[tuple[str, str], FailingBatch]] = no_failing_batches

    def check(self) -> Readiness:
        checks: list[Check] = []
        daemons = list(self.daemons())
        try:
            self.aws.kinesis.list_streams(Limit=1)
            checks.append(Check("aws", True, self.settings.aws_endpoint_url or "AWS"))
        except (BotoCoreError, ClientError) as exc:
            checks.append(Check("aws", False, f"unreachable: {error_code(exc)}: {exc}"))
            return Readiness(tuple(checks), self.clock())
        # Firehose -> S3 deployments read CTRs from the archive queue: no CTR stream lease needed.
        archive = self.settings.ctr_source is CtrSource.FIREHOSE_S3
        if archive:
            checks.append(Check("ctr_source", True, f"firehose-s3: following {self.settings.archive_queue}"))
        elif not daemons:
            checks.append(Check("kcl", False, "no KCL daemon started yet"))
        for daemon in daemons:
            code = daemon.poll()
            name = daemon.app.application_name
            checks.append(
                Check(f"kcl:{name}", code is None, "running" if code is None else f"exited with {code}")
            )
        held: list[tuple[str, str]] = []
        for daemon in daemons:
            app = daemon.app
            try:
                shards = held_leases(self.aws, app.application_name, app.worker_id)
            except ClientError as exc:
                failure = error_code(exc)
                detail = "lease table not created yet" if failure == "ResourceNotFoundException" else failure
                checks.append(Check(f"leases:{app.application_name}", False, detail))
                continue
            except BotoCoreError as exc:
                checks.append(Check(f"leases:{app.application_name}", False, str(exc)))
                continue
            held += [(app.stream_name, shard) for shard in shards]
        minimum = 0 if archive and not daemons else self.settings.ready_min_leases
        checks.append(
            Check("leases", len(held) >= minimum, f"{len(held)} held by this worker (need {minimum})")
        )
        beats = self.heartbeats()
        now = self.clock()
        limit = self.settings.ready_heartbeat_max_age_s
        silent = [
            f"{stream}/{shard}" for stream, shard in held if now - beats.get((stream, shard), 0.0) > limit
        ]
        checks.append(
            Check(
                "processors",
                not silent,
                f"{len(held) - len(silent)}/{len(held)} reporting"
                + (f"; silent for more than {limit}s: {', '.join(sorted(silent))}" if silent else ""),
            )
        )
        checks.append(self._batches(now))
        return Readiness(tuple(checks), now)

    def _batches(self, now: float) -> Check:
        """Not ready while a shard is stuck on a failed batch (every shard of this worker's
        record processors, held or just lost: the processor is stuck either way)."""
        failing = self.failing_batches()
        if not failing:
            return Check("batches", True, "no shard retrying a failed batch")
        stuck = [
            f"{stream}/{shard} for {max(0.0, now - batch.since):.0f}s ({batch.error})"
            for (stream, shard), batch in sorted(failing.items())
        ]
        return Check(
            "batches",
            False,
            "retrying a failed batch in place (the shard waits until it succeeds): " + ", ".join(stuck),
        )


@dataclass
class ReadinessMonitor:
    """Runs the probe in the background; ``/readyz`` answers from the latest result."""

    probe: Callable[[], Readiness]
    interval: float = REFRESH_SECONDS
    latest: Readiness = NOT_CHECKED
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> ReadinessMonitor:
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        was_ready: bool | None = None
        while not self._stop.is_set():
            try:
                self.latest = self.probe()
            except Exception as exc:  # a probe must never kill the monitor
                self.latest = Readiness((Check("probe", False, f"{type(exc).__name__}: {exc}"),), time.time())
            if self.latest.ready != was_ready:
                failed = [f"{c.name}: {c.detail}" for c in self.latest.checks if not c.ok]
                log.info("readiness changed", ready=self.latest.ready, failed=failed)
                was_ready = self.latest.ready
            self._stop.wait(self.interval)

    def current(self, now: float | None = None) -> Readiness:
        """The latest result, unless the probe has not finished one for too long."""
        now = time.time() if now is None else now
        latest = self.latest
        if latest is NOT_CHECKED or now - latest.at <= STALE_AFTER_S:
            return latest
        return Readiness(
            (Check("probe", False, f"no readiness result for {now - latest.at:.0f}s (AWS calls hanging?)"),),
            now,
        )

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


# --- HTTP -----------------------------------------------------------------------------------------
class HealthServer:
    """The HTTP endpoint, on its own thread."""

    def __init__(
        self, host: str, port: int, *, readiness: ReadinessMonitor, collector: ServiceCollector
    ) -> None:
        self.readiness = readiness
        self.collector = collector
        server = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "qm-ingest"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/healthz":
                    self._send(200, b'{"status":"alive"}\n', "application/json")
                elif path == "/readyz":
                    latest = server.readiness.current()
                    body = orjson.dumps(latest.to_dict()) + b"\n"
                    self._send(200 if latest.ready else 503, body, "application/json")
                elif path == "/metrics":
                    self._send(200, render_metrics(server.collector), METRICS_CONTENT_TYPE)
                else:
                    self._send(404, b'{"error":"not found"}\n', "application/json")

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # probes every few seconds would drown the service's own log lines

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            from processor.platform.exceptions import ConfigurationError

            raise ConfigurationError(
                f"cannot listen on {host}:{port} for /healthz, /readyz and /metrics: {exc.strerror}. "
                "Set QM_HEALTH_PORT to a free port (0 turns the endpoint off)."
            ) from None
        self._httpd.daemon_threads = True
        self.port = int(self._httpd.server_address[1])
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="health-http", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        log.info(
            "health endpoint listening",
            url=f"http://{self._host()}:{self.port}",
            paths="/healthz /readyz /metrics",
        )
        return self

    def _host(self) -> str:
        return str(self._httpd.server_address[0])

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@dataclass
class Operations:
    """The health endpoint and its readiness monitor, as ``Service.run`` starts them."""

    server: HealthServer | None
    monitor: ReadinessMonitor

    def stop(self) -> None:
        self.monitor.stop()
        if self.server is not None:
            self.server.stop()


def probe_clients(settings: Settings) -> AwsClients:
    """Readiness must answer quickly: one attempt per call (no retry storm while AWS is away)
    and short timeouts, so that an unreachable endpoint (calls hang, nothing refuses them)
    turns /readyz to 503 in seconds rather than after the 30 s read timeout."""
    return AwsClients(
        settings.model_copy(update={"aws_max_attempts": 1}),
        connect_timeout=PROBE_TIMEOUT_S,
        read_timeout=PROBE_TIMEOUT_S,
    )


def start(settings: Settings, aws: AwsClients, daemons: Callable[[], Sequence[Daemon]]) -> Operations:
    """Start the readiness monitor and (unless ``QM_HEALTH_PORT=0``) the HTTP endpoint.

    Call after :func:`processor.platform.metrics_files.prepare`; ``daemons`` returns the KCL daemons
    currently run by the service (readiness covers every one of them).
    """
    from processor.platform import metrics, metrics_files

    path = metrics_files.current()
    if path is None:
        path = metrics_files.prepare(Path(settings.state_dir))
    metrics.init_service_metrics()
    collector = ServiceCollector(path)
    probe = ReadinessProbe(
        settings,
        probe_clients(settings),
        daemons,
        collector.heartbeats,
        failing_batches=collector.failing_batches,
    )
    monitor = ReadinessMonitor(probe.check).start()
    server = None
    if settings.health_port:
        server = HealthServer(
            settings.health_host, settings.health_port, readiness=monitor, collector=collector
        ).start()
    return Operations(server, monitor)
