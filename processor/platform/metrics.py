"""Prometheus metrics of ``qm-ingest run``, written by every process of the service.

Each process (the service, every per-shard record processor) writes its own values;
``/metrics`` (:mod:`processor.app.health_endpoint`) sums them (see
:mod:`processor.platform.metrics_files`). In a process without ``PROMETHEUS_MULTIPROC_DIR``
(a CLI command, a unit test) the values simply stay in memory.

Producers call the objects below directly, e.g. ``metrics.commands_published.labels(
type="extract_screen").inc()``; the wrappers count what goes through an adapter, so every
path that emits contacts or quarantines input is counted in one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from processor.adapters.dynamodb.quarantine import Quarantine, QuarantineEntry
from processor.platform.exceptions import InvalidInput
from processor.platform.retry import on_retry_hooks

#: Desktop command types (schemas/desktop-command.schema.json); exported at 0 from the start.
COMMAND_TYPES = ("start_recording", "stop_recording", "extract_screen")

records_read = Counter(
    "qm_records_read",
    "Records read from a Kinesis stream by the record processors",
    ["stream"],
)
contacts_emitted = Counter(
    "qm_contacts_emitted",
    "QM contact versions emitted (contacts table + output stream), by join state",
    ["join_state"],
)
recording_bytes_read = Counter(
    "qm_recording_header_bytes_read",
    "Bytes of call recordings read to learn their duration (WAV headers, ranged GETs)",
)
contacts_unchanged = Counter(
    "qm_contacts_unchanged",
    "Contact writes that changed nothing: duplicates, replays, versions older than the stored one",
)
joins_pending = Gauge(
    "qm_joins_pending",
    "CTRs and recordings waiting in the join table for their other half",
    multiprocess_mode="mostrecent",
)
orphaned_recordings = Counter(
    "qm_orphaned_recordings",
    "Call recordings whose CTR did not arrive within the join window",
)
quarantined = Counter(
    "qm_quarantined",
    "Input quarantined (kept with its reason, never retried)",
    ["reason", "source"],
)
retries = Counter(
    "qm_retries",
    "Transient AWS failures retried with backoff (throttling, 5xx, network)",
    ["operation", "error"],
)
commands_published = Counter(
    "qm_commands_published",
    "Commands published to agents' desktop queues",
    ["type"],
)
millis_behind_latest = Gauge(
    "qm_millis_behind_latest",
    "MillisBehindLatest of the shard's last GetRecords: how far the processor trails the stream tip",
    ["stream", "shard"],
    multiprocess_mode="livemostrecent",
)
last_checkpoint = Gauge(
    "qm_last_checkpoint_timestamp_seconds",
    "Unix time of the shard's last successful checkpoint",
    ["stream", "shard"],
    multiprocess_mode="livemostrecent",
)
uncheckpointed_since = Gauge(
    "qm_uncheckpointed_since_timestamp_seconds",
    "Unix time the oldest record read but not yet checkpointed was read; 0 when all is checkpointed",
    ["stream", "shard"],
    multiprocess_mode="livemostrecent",
)
processor_heartbeat = Gauge(
    "qm_processor_heartbeat_timestamp_seconds",
    "Unix time a shard's record processor last reported: every GetRecords (empty or not) and "
    "every retry of a failed batch",
    ["stream", "shard"],
    multiprocess_mode="livemostrecent",
)
batch_failing_since = Gauge(
    "qm_batch_failing_since_timestamp_seconds",
    "Unix time the shard's current batch first failed (no record's fault: it is retried in place "
    "and the shard waits); 0 when it is not failing. ``error`` is the last failure's code",
    ["stream", "shard", "error"],
    multiprocess_mode="livemostrecent",
)
batch_retries = Counter(
    "qm_batch_retries",
    "Failed batches tried again in place (access denied, a missing table, ...), by error code",
    ["stream", "error"],
)
batch_duration = Histogram(
    "qm_batch_duration_seconds",
    "Time from a batch's delivery to its checkpoint",
    ["stream"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
kcl_daemon_starts = Counter(
    "qm_kcl_daemon_starts",
    "Starts of a KCL MultiLangDaemon (the first, and every restart after a crash)",
    ["application"],
)


def count_retry(operation: str, error: str) -> None:
    retries.labels(operation=operation, error=error or "unknown").inc()


if count_retry not in on_retry_hooks:
    on_retry_hooks.append(count_retry)


def init_service_metrics() -> None:
    """Export the labelled series users alert on at 0 before the first event."""
    for kind in COMMAND_TYPES:
        commands_published.labels(type=kind)
    for state in ("joined", "no_recording_expected", "recording_deleted", "recording_missing"):
        contacts_emitted.labels(join_state=state)
    # A "mostrecent" gauge is only exported once set; the join sweeper keeps it current.
    joins_pending.set(0)


def count_quarantined(error: InvalidInput) -> None:
    source = error.position.source if error.position else "unknown"
    quarantined.labels(reason=error.reason, source=source).inc()


class JoinMetrics:
    """The join's observer (:class:`processor.app.joiner.JoinObserver`): emissions, orphans, bytes."""

    def emitted(self, state: str) -> None:
        contacts_emitted.labels(join_state=state).inc()

    def orphaned(self) -> None:
        orphaned_recordings.inc()

    def media_bytes(self, count: int) -> None:
        recording_bytes_read.inc(count)


class CountingQuarantine:
    """A :class:`Quarantine` that counts every quarantined input by reason and source."""

    def __init__(self, inner: Quarantine) -> None:
        self._inner = inner

    def put(self, error: InvalidInput, at: str) -> str:
        entry = self._inner.put(error, at)
        count_quarantined(error)
        return entry

    def list(self) -> Iterator[QuarantineEntry]:
        return self._inner.list()

    def mark_retried(self, entry_id: str) -> None:
        self._inner.mark_retried(entry_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class ShardMetrics:
    """What one record processor reports about its shard."""

    def batch_result(self, result: Any) -> None:
        """Duplicates, replays and stale versions of a handled batch (emissions are counted
        by the join itself, where they happen)."""
        unchanged = getattr(result, "unchanged", 0)
        if unchanged:
            contacts_unchanged.inc(unchanged)

    def __init__(self, stream: str, shard: str, clock: Callable[[], float] = time.time) -> None:
        self._labels = {"stream": stream, "shard": shard}
        self._stream = stream
        self._clock = clock
        self._pending_since = 0.0
        self._batch_started = 0.0
        self._failing_since = 0.0
        self._failing_error = ""

    def batch_failing(self, error: str) -> None:
        """The batch failed (no record's fault) and will be tried again: the shard is stuck
        until it succeeds. Counts as a heartbeat: the processor is alive, retrying."""
        now = self._clock()
        error = error or "unknown"
        self.heartbeat()
        batch_retries.labels(stream=self._stream, error=error).inc()
        if not self._failing_since:
            self._failing_since = now
        if self._failing_error and self._failing_error != error:
            batch_failing_since.labels(**self._labels, error=self._failing_error).set(0)
        self._failing_error = error
        batch_failing_since.labels(**self._labels, error=error).set(self._failing_since)

    def batch_recovered(self) -> None:
        """The failed batch went through on a retry."""
        if self._failing_error:
            batch_failing_since.labels(**self._labels, error=self._failing_error).set(0)
        self._failing_since = 0.0
        self._failing_error = ""

    def heartbeat(self, millis_behind: int | None = None) -> None:
        processor_heartbeat.labels(**self._labels).set(self._clock())
        if millis_behind is not None:
            millis_behind_latest.labels(**self._labels).set(millis_behind)

    def batch_read(self, records: int) -> None:
        now = self._clock()
        self._batch_started = now
        records_read.labels(stream=self._stream).inc(records)
        if not self._pending_since:
            self._pending_since = now
            uncheckpointed_since.labels(**self._labels).set(now)

    def checkpointed(self) -> None:
        now = self._clock()
        last_checkpoint.labels(**self._labels).set(now)
        self._pending_since = 0.0
        uncheckpointed_since.labels(**self._labels).set(0)
        if self._batch_started:
            batch_duration.labels(stream=self._stream).observe(now - self._batch_started)
            self._batch_started = 0.0
