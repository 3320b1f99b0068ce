"""The KCL v3 record-processor protocol, translated into calls on a batch handler.

Thin on purpose: the KCL-facing class only converts KCL records, calls the handler (which
returns once the batch's effects are durable), then checkpoints. Checkpoint errors are
handled explicitly: throttling is retried, a lost lease or shutdown stops checkpointing
(the next owner re-reads from the last checkpoint; emission is idempotent), anything
else is logged and left for the next batch's checkpoint.

A batch whose handler raises is retried in place. The handler quarantines what is a
record's own fault and raises only for what is not (access denied, a missing table, bad
credentials: :func:`processor.adapters.aws.fails_the_batch`; or a bug), so the same call is
made again, with capped exponential back-off, until it succeeds: the shard waits (nothing
is skipped, nothing is checkpointed past the batch) while the daemon's other shards go on,
and ``/readyz`` names the shard (``qm_batch_failing_since_timestamp_seconds``). Why not
exit and let the KCL replay the batch: the MultiLangDaemon ``System.exit()``s when a record
processor fails (``MultiLangShardRecordProcessor.stopProcessing``), so an exit takes every
shard of the worker down with it, and the other record processors, cut off mid-protocol,
fail too. Why this may wait as long as it needs to:

* The protocol has no heartbeat and no deadline: the daemon blocks on the status line of
  ``processRecords`` for as long as it takes, as long as ``timeoutInSeconds`` stays unset
  in the daemon's properties (:mod:`processor.adapters.kcl.daemon`; set, the daemon would
  ``halt()`` the JVM when a retried batch outlasted it). The KCL renews its leases on its
  own threads, so a waiting shard keeps its lease.
* What could end the wait arrives on the same channel, only after ``process_records``
  returns: ``shutdownRequested``, ``leaseLost``. So the retry itself watches for the one
  thing that makes it pointless, its daemon being gone (a stop of the service ends the
  daemon after its shutdown grace, then its process group): it exits then, as a processor
  whose daemon is gone always does (:mod:`processor.adapters.kcl.parent_death`). A lease
  taken over meanwhile needs nothing: the new owner reads the batch again from the last
  checkpoint, both writes are idempotent, and this processor's eventual checkpoint is
  refused (``LeaseLostException``) before the KCL tells it that the lease is gone.

The processor still exits where retrying cannot help: its handler could not be built, or
the protocol itself failed (records that cannot be converted, a checkpoint call that
raised something other than a ``CheckpointError``).
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from processor.adapters.aws import error_code
from processor.adapters.kcl.parent_death import EXIT_PARENT_GONE
from processor.core.batch import StreamRecord
from processor.platform.exceptions import SourcePosition
from processor.platform.fault_points import fault_point
from processor.platform.logs import bind_process_context, get_logger

if TYPE_CHECKING:
    from processor.platform.metrics import ShardMetrics

log = get_logger("processor.kcl")

CHECKPOINT_RETRIES = 10
#: Exit status of a record processor that cannot go on (the KCL daemon exits with it).
EXIT_BATCH_FAILED = 70
#: A failed batch is tried again after 1, 2, 4, ... seconds, at most this long apart.
BATCH_RETRY_FIRST_S = 1.0
BATCH_RETRY_MAX_S = 30.0
#: While it waits to retry, the processor checks this often whether its daemon is still there.
PARENT_CHECK_S = 1.0


def exit_now(code: int) -> None:
    """Leave at once: no interpreter shutdown, which would wait for the batch's worker threads
    (some may be retrying an AWS call forever)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


class BatchHandler(Protocol):
    def process(self, records: Sequence[StreamRecord]) -> Any:
        """Handle a batch; return only when its effects are durable."""
        ...

    def close(self) -> None: ...


class ShardProgressSink(Protocol):
    """Where a shard's consumption progress goes (segment release reads it)."""

    def note(self, shard_id: str, millis_behind_latest: int | None, now: datetime) -> None: ...

    def forget(self, shard_id: str) -> None: ...


class KclRecordProcessor:
    """amazon_kclpy v3 ``RecordProcessorBase`` implementation (duck-typed)."""

    version = 3

    def __init__(
        self,
        stream: str,
        handler_factory: Callable[[str], BatchHandler],
        progress: ShardProgressSink | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        parent_alive: Callable[[], bool] | None = None,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._stream = stream
        self._factory = handler_factory
        self._progress = progress
        self._sleep = sleep
        self._parent_alive = parent_alive or _parent_watch()
        self._jitter = jitter
        self._handler: BatchHandler | None = None
        self._shard_id = "unknown"
        self._metrics: ShardMetrics | None = None

    # --- protocol -----------------------------------------------------------------------
    def initialize(self, initialize_input: Any) -> None:
        try:
            self._initialize(initialize_input)
        except Exception as exc:
            # Without a handler every later batch would fail; start again instead.
            log.error("record processor could not start", error=type(exc).__name__, detail=str(exc)[:500])
            exit_now(EXIT_BATCH_FAILED)

    def _initialize(self, initialize_input: Any) -> None:
        from processor.platform.metrics import ShardMetrics

        self._shard_id = initialize_input.shard_id
        # One process per shard: every log line of this process names its stream and shard.
        bind_process_context(stream=self._stream, shard_id=self._shard_id)
        self._metrics = ShardMetrics(self._stream, self._shard_id)
        self._metrics.heartbeat()
        self._handler = self._factory(self._shard_id)
        log.info(
            "record processor initialised",
            shard_id=self._shard_id,
            sequence_number=initialize_input.sequence_number,
        )

    def process_records(self, process_records_input: Any) -> None:
        try:
            self._process_records(process_records_input)
        except Exception as exc:
            # Not the handler (that is retried in place): the protocol or the records' conversion.
            # amazon_kclpy would log this and report the batch done: the next batch's checkpoint
            # would then pass over it, and its records would be lost. Exit instead (the daemon
            # exits with us and is restarted; the KCL replays the batch from the last checkpoint).
            records = process_records_input.records
            log.error(
                "batch failed; exiting so that it is replayed from the last checkpoint",
                shard_id=self._shard_id,
                records=len(records),
                first_sequence_number=records[0].sequence_number if records else None,
                error=type(exc).__name__,
                detail=str(exc)[:500],
            )
            exit_now(EXIT_BATCH_FAILED)

    def _process_records(self, process_records_input: Any) -> None:
        assert self._handler is not None and self._metrics is not None
        # Called for empty GetRecords too (callProcessRecordsEvenForEmptyRecordList): the heartbeat.
        self._metrics.heartbeat(process_records_input.millis_behind_latest)
        records = [self._convert(r) for r in process_records_input.records]
        if not records:
            # Everything delivered so far is checkpointed: the shard is consumed up to its lag.
            self._note_progress(process_records_input.millis_behind_latest)
            return
        self._metrics.batch_read(len(records))
        started = time.monotonic()
        fault_point("before_write", self._stream)
        result = self._process_until_done(records, process_records_input.records[0].sequence_number)
        self._metrics.batch_result(result)
        fault_point("after_write", self._stream)
        last = process_records_input.records[-1]
        if self._checkpoint(
            process_records_input.checkpointer, last.sequence_number, last.sub_sequence_number
        ):
            self._metrics.checkpointed()
        fault_point("after_checkpoint", self._stream)
        self._note_progress(process_records_input.millis_behind_latest)
        log.info(
            "batch processed",
            shard_id=self._shard_id,
            records=len(records),
            millis_behind_latest=process_records_input.millis_behind_latest,
            seconds=round(time.monotonic() - started, 3),
            sequence_number=last.sequence_number,
            **_summary(result),
        )

    def _process_until_done(self, records: Sequence[StreamRecord], first_sequence_number: str) -> Any:
        """The handler's result for the batch, however many attempts it takes (see the module's
        docstring): the same call again after a capped exponential back-off."""
        assert self._handler is not None and self._metrics is not None
        failures = 0
        failing_since = time.monotonic()
        while True:
            try:
                result = self._handler.process(records)
            except Exception as exc:
                failures += 1
                delay = self._backoff(failures)
                self._metrics.batch_failing(error_code(exc))
                log.error(
                    "batch failed; retrying it in place (the shard waits, nothing is skipped)",
                    shard_id=self._shard_id,
                    records=len(records),
                    first_sequence_number=first_sequence_number,
                    attempt=failures,
                    retry_in_s=round(delay, 1),
                    error=type(exc).__name__,
                    code=error_code(exc),
                    detail=str(exc)[:500],
                )
                self._wait(delay)
                continue
            if failures:
                self._metrics.batch_recovered()
                log.info(
                    "failed batch succeeded on a retry",
                    shard_id=self._shard_id,
                    records=len(records),
                    first_sequence_number=first_sequence_number,
                    attempts=failures + 1,
                    seconds=round(time.monotonic() - failing_since, 1),
                )
            return result

    def _backoff(self, failures: int) -> float:
        """1, 2, 4, ... seconds, capped, each shortened by up to a quarter at random (shards
        failing together do not retry in step)."""
        delay: float = min(BATCH_RETRY_MAX_S, BATCH_RETRY_FIRST_S * 2.0 ** min(failures - 1, 16))
        return delay * (1 - 0.25 * self._jitter())

    def _wait(self, seconds: float) -> None:
        """Sleep ``seconds``, in slices; exit as soon as the daemon is gone (nobody would take
        this batch's checkpoint, and the next owner replays it anyway)."""
        remaining = seconds
        while True:
            if not self._parent_alive():
                log.warning(
                    "KCL daemon gone while a failed batch waited for its retry; exiting",
                    shard_id=self._shard_id,
                )
                exit_now(EXIT_PARENT_GONE)
                return  # only reached when exit_now is replaced (tests)
            if remaining <= 0:
                return
            step = min(PARENT_CHECK_S, remaining)
            self._sleep(step)
            remaining -= step

    def lease_lost(self, lease_lost_input: Any) -> None:
        log.warning("lease lost; another worker takes over from the last checkpoint", shard_id=self._shard_id)
        self._close()

    def _note_progress(self, millis_behind: int | None) -> None:
        if self._progress is None:
            return
        progress = self._progress
        try:
            progress.note(self._shard_id, millis_behind, datetime.now(UTC))
        except Exception as exc:
            log.warning("could not note shard progress", shard_id=self._shard_id, error=type(exc).__name__)

    def shard_ended(self, shard_ended_input: Any) -> None:
        # Checkpointing at SHARD_END lets the KCL start the child shards.
        if self._checkpoint(shard_ended_input.checkpointer, None, None):
            log.info("shard ended; checkpointed at shard end", shard_id=self._shard_id)
        else:
            log.error(
                "shard ended; the shard-end checkpoint failed (the shard is read again)",
                shard_id=self._shard_id,
            )
        if self._progress is not None:
            self._progress.forget(self._shard_id)
        self._close()

    def shutdown_requested(self, shutdown_requested_input: Any) -> None:
        # Everything delivered so far was handled durably before process_records returned.
        self._checkpoint(shutdown_requested_input.checkpointer, None, None)
        log.info("shutdown requested; checkpointed", shard_id=self._shard_id)
        self._close()

    # --- helpers ------------------------------------------------------------------------
    def _convert(self, record: Any) -> StreamRecord:
        raw = record.get("data")
        data = base64.b64decode(raw) if raw else b""
        return StreamRecord(
            data=data,
            position=SourcePosition(
                source="kinesis",
                stream_or_queue=self._stream,
                shard_id=self._shard_id,
                sequence_number=record.sequence_number,
            ),
        )

    def _checkpoint(self, checkpointer: Any, sequence_number: str | None, sub_sequence: int | None) -> bool:
        """True when the checkpoint was written."""
        from amazon_kclpy.checkpoint_error import CheckpointError

        for attempt in range(1, CHECKPOINT_RETRIES + 1):
            try:
                checkpointer.checkpoint(sequence_number, sub_sequence)
                return True
            except CheckpointError as exc:
                code = str(exc.value)
                if code == "ThrottlingException" and attempt < CHECKPOINT_RETRIES:
                    time.sleep(min(0.2 * 2**attempt, 5))
                    continue
                if code in ("ShutdownException", "LeaseLostException"):
                    log.warning(
                        "checkpoint refused: lease no longer held", shard_id=self._shard_id, error=code
                    )
                    return False
                log.error("checkpoint failed", shard_id=self._shard_id, error=code, attempt=attempt)
                return False
        return False

    def _close(self) -> None:
        if self._handler is not None:
            self._handler.close()
            self._handler = None


def _parent_watch() -> Callable[[], bool]:
    """True while the process that started this one (the KCL daemon) is its parent."""
    parent = os.getppid()
    return lambda: os.getppid() == parent


def _summary(result: Any) -> dict[str, Any]:
    if result is None:
        return {}
    fields = ("created", "updated", "unchanged", "quarantined")
    return {name: getattr(result, name) for name in fields if hasattr(result, name)}


def run_kcl_process(processor: KclRecordProcessor) -> None:
    """Speak the MultiLangDaemon protocol on the real stdout; everything else -> stderr."""
    from amazon_kclpy import kcl

    from processor.adapters.kcl.parent_death import exit_with_parent

    exit_with_parent()  # a processor whose daemon is gone has no lease to work for
    protocol_out = sys.stdout
    sys.stdout = sys.stderr  # a stray print() must never corrupt the protocol channel
    kcl.KCLProcess(processor, input_file=sys.stdin, output_file=protocol_out, error_file=sys.stderr).run()
