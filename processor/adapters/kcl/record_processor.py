"""The KCL v3 record-processor protocol, translated into calls on a batch handler.

Thin on purpose: the KCL-facing class only converts KCL records, calls the handler (which
returns once the batch's effects are durable), then checkpoints. Checkpoint errors are
handled explicitly: throttling is retried, a lost lease or shutdown stops checkpointing
(the next owner re-reads from the last checkpoint; emission is idempotent), anything
else is logged and left for the next batch's checkpoint.
"""

from __future__ import annotations

import base64
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from processor.exceptions import SourcePosition
from processor.faults import fault_point
from processor.logs import bind_process_context, get_logger
from processor.pipeline import StreamRecord

if TYPE_CHECKING:
    from processor.metrics import ShardMetrics

log = get_logger("processor.kcl")

CHECKPOINT_RETRIES = 10
#: Exit status of a record processor whose batch failed (the KCL daemon then restarts).
EXIT_BATCH_FAILED = 70


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
    ) -> None:
        self._stream = stream
        self._factory = handler_factory
        self._progress = progress
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
        from processor.metrics import ShardMetrics

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
            # amazon_kclpy would log this and report the batch done: the next batch's checkpoint
            # would then pass over it, and its records would be lost. Exit instead: the daemon
            # restarts and the KCL replays the batch from the last checkpoint (idempotently).
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
        result = self._handler.process(records)
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
