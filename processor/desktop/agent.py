"""qm-desktop's main loop: commands in, screen segments on disk, recordings and results out.

Guarantees:

* Each command id is acted upon at most once (the journal records it before the queue
  message is deleted); a repeated ``extract_screen`` re-sends the stored result and
  uploads nothing.
* An extraction is finished (uploaded, result stored) or still pending in the journal;
  pending extractions are resumed after a crash, and results not yet reported are sent.
* On start: crashed segments are recovered up to their last whole fragment, the queue is
  drained, then a ``sync_request`` asks the server to republish extractions with no
  result, so contacts handled while the PC was off or disconnected get their recording.
* A segment is deleted only when released and not needed by a pending extraction, or
  under disk-quota pressure (loudly, and its interval is remembered as missing).
"""

from __future__ import annotations

import io
import platform
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from processor.adapters.aws import is_transient
from processor.core.agent_queue import agent_queue_name
from processor.core.desktop_protocol import (
    CommandType,
    DesktopCommand,
    ResultType,
    build_result,
    format_instant,
    parse_command,
)
from processor.core.desktop_trust import CommandTrust
from processor.core.envelope import encrypt_for_server
from processor.core.screen_timeline import (
    Gap,
    GapReason,
    Interval,
    PurgeReason,
    classify_gaps,
    coverage,
    plan_purge,
    uncovered,
)
from processor.desktop.capture import FrameSource
from processor.desktop.clock import Clock
from processor.desktop.journal import CommandRow, CommandState, Journal, SegmentRow, SegmentState, instant
from processor.desktop.recorder import Recorder
from processor.desktop.recovery_faults import fault_point
from processor.desktop.segments import DesktopKey, EncoderSettings, SegmentStore
from processor.desktop.splice import SegmentMedia, splice
from processor.desktop.transport import CommandQueue, QueuedCommand, ResultSink, Uploader
from processor.platform.exceptions import (
    ConfigurationError,
    EnvelopeError,
    InvalidInput,
    KeyMismatch,
    SegmentUnavailable,
    TransientError,
)
from processor.platform.logs import get_logger

log = get_logger("processor.desktop")

#: A failing extraction is retried this many times before it is reported as failed.
MAX_EXTRACT_ATTEMPTS = 5
#: How far before its last reported command the desktop asks the server to look again.
SYNC_MARGIN = timedelta(minutes=5)


def default_base_dir() -> Path:
    """Where Smart Desktop keeps segments on each platform (the seed names Windows')."""
    system = platform.system()
    if system == "Windows":
        return Path(r"C:\Program Files (x86)\Common Files\Calabrio ONE\Desktop")
    if system == "Darwin":
        return Path.home() / "Library" / "Application Support" / "qm-desktop"
    import os

    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "qm-desktop"


def user_folder(base: Path, agent: str) -> Path:
    """One folder per user, named safely and uniquely (same scheme as the agent queues)."""
    return base / agent_queue_name(agent, prefix="user").removesuffix(".fifo")


@dataclass(frozen=True)
class DesktopConfig:
    agent: str
    folder: Path
    encoder: EncoderSettings
    segment_seconds: float = 600
    quota_bytes: int = 4096 * 1024 * 1024
    warn_fraction: float = 0.8
    poll_seconds: int = 5
    desktop_id: str = ""
    #: What an extraction command may ask (pinned server key, upload target, interval);
    #: None refuses every extraction.
    trust: CommandTrust | None = None

    @property
    def gap_tolerance(self) -> timedelta:
        return timedelta(seconds=2.0 / self.encoder.fps)


class DesktopAgent:
    def __init__(
        self,
        config: DesktopConfig,
        *,
        queue: CommandQueue,
        results: ResultSink,
        uploader: Uploader,
        source: FrameSource,
        clock: Clock,
    ) -> None:
        self.config = config
        self.queue = queue
        self.results = results
        self.uploader = uploader
        self.clock = clock
        config.folder.mkdir(parents=True, exist_ok=True)
        self.journal = Journal(config.folder / "journal.sqlite")
        # A folder, its journal and its segments belong to one agent: never serve another's.
        owner = self.journal.get_meta("agent")
        if owner is None:
            self.journal.set_meta("agent", config.agent)
        elif owner != config.agent:
            self.journal.close()
            raise ConfigurationError(
                f"the desktop folder {config.folder} holds another agent's recordings; "
                "give each agent her own folder (the default QM_DESKTOP_DIR/<user> does)"
            )
        self.key = DesktopKey(config.folder / "desktop-key.pem")
        self.store = SegmentStore(config.folder / "segments", self.journal, self.key)
        self.recorder = Recorder(
            self.store,
            source,
            clock,
            encoder=config.encoder,
            segment_seconds=config.segment_seconds,
            on_segment_closed=lambda _segment_id: self.purge(),
        )
        self._source = source
        self._purge_lock = threading.Lock()
        self._warned_quota = False
        self._retry_at: dict[str, datetime] = {}  # failed extractions wait before the next try
        self.run_id = 0

    # --- life cycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Recovery, then catch up with the server (see the module docstring)."""
        now = self.clock.now()
        self.run_id = self.journal.begin_run(now)
        log.info("desktop started", agent_folder=str(self.config.folder), run_id=self.run_id)
        left_at = self.journal.get_meta("left_pc_at")
        if left_at:
            # She was away from this PC (another user's session, or nobody's): for her
            # recordings here that time is logged out, not the PC being off.
            self.journal.add_lost(
                Interval(instant(left_at), max(instant(left_at), now)), GapReason.LOGGED_OUT
            )
            self.journal.set_meta("left_pc_at", "")
        self.recover_segments()
        if self.journal.get_meta("recording_wanted") == "1":
            self._start_recording(resumed=True)
        self.report_unreported()
        self.complete_pending()
        self.drain()
        self.send_sync_request()
        self.purge()

    def shutdown(self) -> None:
        if self.recorder.recording:
            self.recorder.stop()
            self.journal.recording_ended(self.clock.now(), "shutdown")
        self.journal.end_run(self.run_id, self.clock.now())
        self._source.close()
        self.journal.close()
        log.info("desktop stopped")

    def leave(self) -> None:
        """The agent's OS session at this PC ended (another user holds it, or nobody): stop
        recording her, and do not resume it here before her next ``start_recording``."""
        now = self.clock.now()
        self.journal.set_meta("recording_wanted", "0")
        self.journal.set_meta("left_pc_at", format_instant(now))
        if self.recorder.recording:
            self.recorder.stop()
            self.journal.recording_ended(now, "session_ended")
            self.journal.stopped_by_server(now)
            log.info("recording stopped: the agent left this PC")
        self.shutdown()

    def run(self, stop: threading.Event) -> None:
        self.start()
        try:
            while not stop.is_set():
                self.poll(self.config.poll_seconds)
        finally:
            self.shutdown()

    def poll(self, wait_seconds: int) -> int:
        """One round: heartbeat, keep recording alive, retry what is pending, read commands."""
        self.journal.alive(self.run_id, self.clock.now())
        if self.recorder.error is not None:
            log.error("screen recorder stopped on an error; restarting", error=str(self.recorder.error))
            self.recorder.stop()
            self.journal.recording_ended(self.clock.now(), "capture_error")
            self.journal.count("capture_errors")
        if self.journal.get_meta("recording_wanted") == "1" and not self.recorder.recording:
            self._start_recording(resumed=True)
        self.report_unreported()
        self.complete_pending()
        try:
            messages = self.queue.receive(wait_seconds)
        except Exception as exc:
            if not (is_transient(exc) or isinstance(exc, TransientError)):
                raise
            log.warning("command queue unavailable", error=str(exc))
            self.clock.sleep(min(5.0, max(1.0, wait_seconds)))
            return 0
        for message in messages:
            self.handle(message)
        return len(messages)

    def drain(self) -> int:
        """Handle every command waiting in the queue (after a disconnect or power-off)."""
        total = 0
        while True:
            try:
                messages = self.queue.receive(0)
            except TransientError as exc:
                log.warning("command queue unavailable while draining", error=str(exc))
                return total
            if not messages:
                return total
            for message in messages:
                self.handle(message)
            total += len(messages)

    # --- recovery ---------------------------------------------------------------------------
    def recover_segments(self) -> None:
        """Segments left open by a crash: keep their whole fragments and close them."""
        now = self.clock.now()
        for row in self.journal.segments(SegmentState.OPEN):
            try:
                recovered = self.store.recover(row)
            except (EnvelopeError, SegmentUnavailable) as exc:
                self._mark_corrupt(row, str(exc))
                continue
            # The frames captured after the last whole fragment died with the process: the
            # time up to the crashed run's last sign of life is reported as the PC being off.
            crashed_at = self.journal.crash_end(row.start)
            kept_until = recovered.end or row.start
            if crashed_at is not None and crashed_at > kept_until:
                self.journal.add_lost(Interval(kept_until, crashed_at), GapReason.PC_OFF)
            if recovered.end is None:
                self.store.delete(row, now, "empty_after_crash")
                log.warning("segment had no whole fragment after a crash; deleted", segment_id=row.segment_id)
                continue
            self.journal.segment_closed(
                row.segment_id, recovered.end, recovered.size, recovered.frames, SegmentState.COMPLETE
            )
            self.journal.count("segments_recovered")
            log.info(
                "segment recovered after a crash",
                segment_id=row.segment_id,
                start=row.start.isoformat(),
                end=recovered.end.isoformat(),
                frames=recovered.frames,
            )

    def send_sync_request(self) -> None:
        since = self.journal.last_reported_issue() or self.journal.first_run_start() or self.clock.now()
        doc = build_result(
            ResultType.SYNC_REQUEST,
            agent=self.config.agent,
            sent_at=self.clock.now(),
            desktop_id=self.config.desktop_id or None,
            since=since - SYNC_MARGIN,
        )
        try:
            self.results.send(doc)
            log.info("sync requested", since=doc["since"])
        except Exception as exc:
            log.warning("sync request not sent", error=str(exc))

    # --- commands ---------------------------------------------------------------------------
    def handle(self, message: QueuedCommand) -> None:
        """Act on one queue message; it is deleted once the journal holds its effect."""
        try:
            command = parse_command(message.body)
        except InvalidInput as exc:
            self.journal.count("commands_invalid")
            log.error(
                "invalid command dropped", reason=exc.reason, detail=exc.detail, message_id=message.message_id
            )
            self.queue.delete(message.receipt)
            return
        if command.agent != self.config.agent:
            self.journal.count("commands_other_agent")
            log.error("command for another agent dropped", command_id=command.command_id)
            self.queue.delete(message.receipt)
            return
        self.execute(command, on_accepted=lambda: self.queue.delete(message.receipt))

    def execute(self, command: DesktopCommand, on_accepted: Callable[[], None] | None = None) -> None:
        """Act on a command once. ``on_accepted`` runs as soon as the journal holds it (the
        queue message is deleted then: an extraction may take long, and is resumed from
        the journal after a crash)."""
        now = self.clock.now()
        accepted = self.journal.accept_command(
            command.command_id,
            str(command.type),
            command.issued_at,
            message_body(command),
            now,
            contact_id=command.contact_id,
            start=command.start,
            end=command.end,
        )
        if on_accepted is not None:
            on_accepted()
        if not accepted:
            self._repeat(command)
            return
        log.info("command", type=str(command.type), command_id=command.command_id)
        self._apply(command)

    def _apply(self, command: DesktopCommand) -> None:
        if command.type is CommandType.START_RECORDING:
            self.journal.set_meta("recording_wanted", "1")
            self._start_recording(resumed=False)
            self.journal.finish_command(command.command_id, None)
        elif command.type is CommandType.STOP_RECORDING:
            self.journal.set_meta("recording_wanted", "0")
            if self.recorder.recording:
                self.recorder.stop()
            stopped = self.clock.now()
            self.journal.recording_ended(stopped, "stop_recording")
            self.journal.stopped_by_server(stopped)
            self.journal.finish_command(command.command_id, None)
            log.info("recording stopped")
        elif command.type is CommandType.RELEASE_SEGMENTS_BEFORE:
            assert command.before is not None
            horizon = self.journal.release_before(command.before)
            self.journal.finish_command(command.command_id, None)
            log.info("segments released", before=horizon.isoformat())
            self.purge()
        elif command.type is CommandType.EXTRACT_SCREEN:
            row = self.journal.command(command.command_id)
            assert row is not None
            self.extract(row)

    def _repeat(self, command: DesktopCommand) -> None:
        row = self.journal.command(command.command_id)
        self.journal.count("commands_repeated")
        if row is None:
            return
        if row.state == CommandState.DONE and row.result is not None:
            log.info("repeated command: result sent again", command_id=row.command_id)
            self._report(row.command_id, row.result)
        elif row.state == CommandState.PENDING:
            self._apply(command)

    def _start_recording(self, *, resumed: bool) -> None:
        if self.recorder.recording:
            return
        self.journal.recording_started(self.clock.now())
        self.recorder.start()
        log.info("recording", resumed=resumed)

    # --- extraction ---------------------------------------------------------------------------
    def complete_pending(self) -> None:
        now = self.clock.now()
        for row in self.journal.pending_commands():
            if row.type != str(CommandType.EXTRACT_SCREEN):
                self._apply(parse_command(row.body))  # accepted just before a crash
            elif self._retry_at.get(row.command_id, now) <= now:
                self.extract(row)

    def extract(self, row: CommandRow) -> None:
        """Crop, splice, encrypt for the server, upload, store and send the result."""
        command = parse_command(row.body)
        refusal = (
            self.config.trust.refusal(command, self.clock.now())
            if self.config.trust is not None
            else "no command trust is configured"
        )
        if refusal is not None:
            log.warning("extraction refused", command_id=row.command_id, reason=refusal)
            result = self._result(ResultType.SCREEN_FAILED, command, reason=f"refused: {refusal}"[:1000])
            self.journal.finish_command(row.command_id, result)
            self.journal.count("extract_refused")
            self._report(row.command_id, result)
            return
        assert command.start is not None and command.end is not None and command.upload is not None
        attempt = self.journal.attempt(row.command_id)
        try:
            result = self._extract(command, Interval(command.start, command.end))
        except Exception as exc:
            transient = is_transient(exc) or isinstance(exc, TransientError)
            log.warning(
                "extraction failed",
                command_id=row.command_id,
                attempt=attempt,
                transient=transient,
                error=str(exc),
                error_type=type(exc).__name__,
            )
            permanent = isinstance(exc, KeyMismatch | InvalidInput)
            limit = MAX_EXTRACT_ATTEMPTS * 4 if transient else MAX_EXTRACT_ATTEMPTS
            if not permanent and attempt < limit:
                backoff = min(300.0, 2.0**attempt)
                self._retry_at[row.command_id] = self.clock.now() + timedelta(seconds=backoff)
                return
            result = self._result(
                ResultType.SCREEN_FAILED, command, reason=f"{type(exc).__name__}: {exc}"[:1000]
            )
        self.journal.finish_command(row.command_id, result)
        self.journal.count(f"extract_{result['type']}")
        self._report(row.command_id, result)
        self.purge()

    def _result(self, type_: ResultType, command: DesktopCommand, **fields: Any) -> dict[str, Any]:
        return build_result(
            type_,
            agent=self.config.agent,
            sent_at=self.clock.now(),
            desktop_id=self.config.desktop_id or None,
            command_id=command.command_id,
            contact_id=command.contact_id,
            **fields,
        )

    def _wait_for_flush(self, until: datetime) -> None:
        """An open segment may not have sealed the contact's last second yet: wait for it.

        The wait gives up only when the recorder stops sealing: each fragment it seals starts
        the patience again, so an encoder that is slow (a loaded PC) is waited for, and one that
        is stuck costs a few keyframe intervals."""
        patience = timedelta(seconds=3 + 2 * self.config.encoder.keyframe_seconds)
        deadline = self.clock.now() + patience
        last: datetime | None = None
        while self.recorder.recording and until <= self.clock.now() < deadline:
            flushed = self.recorder.current_flushed_until()
            if flushed is None or flushed >= until:
                return
            if flushed != last:
                last, deadline = flushed, self.clock.now() + patience
            self.clock.sleep(0.2)

    def _extract(self, command: DesktopCommand, interval: Interval) -> dict[str, Any]:
        assert command.upload is not None
        self._wait_for_flush(interval.end)
        now = self.clock.now()
        media: list[SegmentMedia] = []
        for row in self.journal.segments():
            if row.state == SegmentState.CORRUPT or not row.span(now).interval.overlaps(interval):
                continue
            try:
                media.append(SegmentMedia(row.segment_id, row.start, self.store.plaintext(row)))
            except (EnvelopeError, SegmentUnavailable) as exc:
                self._mark_corrupt(row, str(exc))
        activity = self.journal.activity(self.clock.now())
        spliced = splice(media, interval) if media else None
        covered = spliced.covered if spliced is not None and spliced.frames else []
        tolerance = self.config.gap_tolerance
        gaps = classify_gaps(uncovered(covered, interval, tolerance), activity, tolerance)
        if spliced is None or not spliced.frames:
            return self._result(
                ResultType.SCREEN_UNAVAILABLE, command, reason=unavailable_reason(gaps, interval)
            )
        encrypted = io.BytesIO()
        encrypt_for_server(
            spliced.mp4,
            encrypted,
            server_key_id=command.server_key_id or "",
            server_public_key_pem=command.server_public_key_pem or "",
            metadata={
                "contact_id": command.contact_id,
                "agent": self.config.agent,
                "command_id": command.command_id,
                "start": format_instant(interval.start),
                "end": format_instant(interval.end),
                "content_type": "video/mp4",
            },
        )
        fault_point("extract:before_upload")
        self.uploader.put(command.upload, encrypted.getvalue())
        fault_point("extract:after_upload")
        log.info(
            "screen recording uploaded",
            command_id=command.command_id,
            contact_id=command.contact_id,
            location=command.upload.location,
            duration_seconds=round(spliced.duration_seconds, 3),
            segments=len(media),
            bytes=encrypted.tell(),
        )
        return self._result(
            ResultType.SCREEN_UPLOADED,
            command,
            location={"bucket": command.upload.bucket, "key": command.upload.key},
            duration_seconds=round(spliced.duration_seconds, 3),
            coverage=round(coverage(interval, gaps), 4),
            gaps=[gap_doc(g) for g in gaps],
            server_key_id=command.server_key_id,
        )

    def _mark_corrupt(self, row: SegmentRow, detail: str) -> None:
        now = self.clock.now()
        span = row.span(now)
        self.journal.segment_closed(row.segment_id, span.end, row.size, row.frames, SegmentState.CORRUPT)
        self.journal.add_lost(span.interval, GapReason.SEGMENT_CORRUPT)
        self.journal.count("segments_corrupt")
        log.error(
            "segment failed verification; it will not be played", segment_id=row.segment_id, detail=detail
        )

    # --- results -----------------------------------------------------------------------------
    def _report(self, command_id: str, result: dict[str, Any]) -> None:
        try:
            self.results.send(result)
        except Exception as exc:
            log.warning("result not sent; will retry", command_id=command_id, error=str(exc))
            return
        self.journal.result_reported(command_id, self.clock.now())

    def report_unreported(self) -> None:
        for row in self.journal.unreported_results():
            assert row.result is not None
            self._report(row.command_id, row.result)

    # --- purge ---------------------------------------------------------------------------------
    def purge(self) -> None:
        """Delete what is released and not pending; enforce the disk quota (see plan_purge)."""
        with self._purge_lock:
            now = self.clock.now()
            rows = {r.segment_id: r for r in self.journal.segments()}
            pending = [
                Interval(c.start, c.end)
                for c in self.journal.pending_extractions()
                if c.start is not None and c.end is not None
            ]
            released = self.journal.released_before()
            plan = plan_purge(
                [r.span(now) for r in rows.values()],
                released_before=released,
                pending=pending,
                quota_bytes=self.config.quota_bytes,
                warn_fraction=self.config.warn_fraction,
            )
            for span, reason in plan.delete:
                row = rows[span.segment_id]
                self.store.delete(row, now, str(reason))
                self.journal.count(f"segments_deleted_{reason}")
                self.journal.count("bytes_deleted", row.size)
                if reason is PurgeReason.QUOTA_UNRELEASED:
                    self.journal.add_lost(span.interval, GapReason.SEGMENT_MISSING)
                    log.error(
                        "disk quota reached: deleted a segment the server has not released",
                        segment_id=row.segment_id,
                        start=span.start.isoformat(),
                        end=span.end.isoformat(),
                        bytes=row.size,
                        quota_bytes=self.config.quota_bytes,
                    )
                else:
                    log.info(
                        "segment deleted",
                        reason=str(reason),
                        why="ends before the released horizon and no pending extraction overlaps it",
                        segment_id=row.segment_id,
                        start=span.start.isoformat(),
                        end=span.end.isoformat(),
                        released_before=released.isoformat() if released else None,
                        bytes=row.size,
                    )
            if plan.over_quota:
                log.error(
                    "disk quota exceeded and nothing more may be deleted",
                    usage_bytes=plan.remaining_bytes,
                    quota_bytes=self.config.quota_bytes,
                )
            if plan.warn and not self._warned_quota:
                log.warning(
                    "segment storage is near its disk quota",
                    usage_bytes=plan.usage_bytes,
                    quota_bytes=self.config.quota_bytes,
                    warn_percent=round(self.config.warn_fraction * 100),
                )
            self._warned_quota = plan.warn


def message_body(command: DesktopCommand) -> bytes:
    import orjson

    return orjson.dumps(command.raw)


def gap_doc(gap: Gap) -> dict[str, str]:
    return {"start": format_instant(gap.start), "end": format_instant(gap.end), "reason": str(gap.reason)}


def unavailable_reason(gaps: list[Gap], interval: Interval) -> str:
    """Why there is no recording, for people: the reasons and how long each lasted."""
    if not gaps:
        return "no screen segment covers the contact"
    parts: dict[str, float] = {}
    for gap in gaps:
        parts[str(gap.reason)] = parts.get(str(gap.reason), 0.0) + gap.seconds
    detail = ", ".join(f"{reason} {seconds:.0f}s" for reason, seconds in parts.items())
    return f"no screen segment covers the contact ({detail} of {interval.seconds:.0f}s)"
