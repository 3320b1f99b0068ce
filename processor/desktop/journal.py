"""The desktop's durable memory: one SQLite file in the agent's folder.

It holds the segment index and the segments' data keys, the commands handled (each
command id at most once), the extraction results and whether they were reported, the
desktop's runs and recording periods (to explain gaps), and counters. Every write is
committed before the call returns (WAL, synchronous=FULL), so a crash or a power-off
loses nothing the desktop has acted upon.

Segment data keys live in their own table with ``secure_delete`` on: deleting a segment
overwrites its key's bytes in the database file, which is what makes the deleted
segment unreadable even if its file's blocks survive on disk.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from processor.core.screen_timeline import Activity, GapReason, Interval, SegmentSpan

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (
    command_id TEXT PRIMARY KEY, type TEXT NOT NULL, received_at TEXT NOT NULL,
    issued_at TEXT NOT NULL, body BLOB NOT NULL, state TEXT NOT NULL,
    contact_id TEXT, start TEXT, end TEXT, result BLOB, reported_at TEXT, attempts INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS commands_state ON commands (state);
CREATE TABLE IF NOT EXISTS segments (
    segment_id TEXT PRIMARY KEY, file TEXT NOT NULL, start TEXT NOT NULL, end TEXT,
    flushed_until TEXT, state TEXT NOT NULL, size INTEGER DEFAULT 0, frames INTEGER DEFAULT 0,
    deleted_at TEXT, delete_reason TEXT
);
CREATE INDEX IF NOT EXISTS segments_state ON segments (state, start);
CREATE TABLE IF NOT EXISTS segment_keys (segment_id TEXT PRIMARY KEY, wrapped_key BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, alive_at TEXT NOT NULL,
    ended_at TEXT, end_reason TEXT
);
CREATE TABLE IF NOT EXISTS recording (
    id INTEGER PRIMARY KEY AUTOINCREMENT, started_at TEXT NOT NULL, ended_at TEXT, end_reason TEXT
);
CREATE TABLE IF NOT EXISTS stops (at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lost (start TEXT NOT NULL, end TEXT NOT NULL, reason TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


def iso(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("naive datetime")
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


class SegmentState:
    OPEN = "open"
    COMPLETE = "complete"
    CORRUPT = "corrupt"
    DELETED = "deleted"


class CommandState:
    PENDING = "pending"  # accepted, not finished (extract_screen)
    DONE = "done"  # finished; ``result`` holds the result to report, if any


@dataclass(frozen=True)
class SegmentRow:
    segment_id: str
    file: str
    start: datetime
    end: datetime | None
    flushed_until: datetime | None
    state: str
    size: int
    frames: int

    def span(self, now: datetime) -> SegmentSpan:
        end = self.end or self.flushed_until or now
        return SegmentSpan(
            self.segment_id,
            self.start,
            max(end, self.start),
            size=self.size,
            open=self.state == SegmentState.OPEN,
            corrupt=self.state == SegmentState.CORRUPT,
        )


@dataclass(frozen=True)
class CommandRow:
    command_id: str
    type: str
    issued_at: datetime
    body: bytes
    state: str
    contact_id: str | None
    start: datetime | None
    end: datetime | None
    result: dict[str, Any] | None
    reported_at: datetime | None
    attempts: int


_COMMAND_COLUMNS = (
    "SELECT command_id, type, issued_at, body, state, contact_id, start, end, result, reported_at, attempts "
)


class Journal:
    """Thread-safe (one connection, one lock); the recorder and the agent loop share it."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        # The journal holds the segments' wrapped keys: readable by the agent's account only,
        # from the first byte (the WAL and shared-memory files sqlite creates beside it take
        # the database file's mode).
        path.touch(mode=0o600, exist_ok=True)
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return list(self._db.execute(sql, args).fetchall())

    # --- meta and counters -------------------------------------------------------------
    def get_meta(self, name: str) -> str | None:
        rows = self._rows("SELECT value FROM meta WHERE name = ?", name)
        return str(rows[0][0]) if rows else None

    def set_meta(self, name: str, value: str) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, value))

    def count(self, name: str, by: int = 1) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO counters (name, value) VALUES (?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, by),
            )

    def counters(self) -> dict[str, int]:
        return {str(n): int(v) for n, v in self._rows("SELECT name, value FROM counters ORDER BY name")}

    # --- released horizon --------------------------------------------------------------
    def released_before(self) -> datetime | None:
        value = self.get_meta("released_before")
        return instant(value) if value else None

    def release_before(self, before: datetime) -> datetime:
        """Move the released horizon forward (never back); returns the horizon."""
        with self._tx() as db:
            row = db.execute("SELECT value FROM meta WHERE name = 'released_before'").fetchone()
            current = instant(row[0]) if row else None
            if current is None or before > current:
                db.execute(
                    "INSERT OR REPLACE INTO meta (name, value) VALUES ('released_before', ?)", (iso(before),)
                )
                return before
            return current

    # --- runs and recording periods ------------------------------------------------------
    def begin_run(self, now: datetime) -> int:
        """Close a run that never ended (crash, power-off) at its last sign of life, and
        any recording period left open with it; start a new run."""
        with self._tx() as db:
            for run_id, alive_at in db.execute(
                "SELECT run_id, alive_at FROM runs WHERE ended_at IS NULL"
            ).fetchall():
                db.execute(
                    "UPDATE runs SET ended_at = ?, end_reason = 'crash' WHERE run_id = ?", (alive_at, run_id)
                )
            last_alive = db.execute("SELECT max(alive_at) FROM runs").fetchone()[0]
            db.execute(
                "UPDATE recording SET ended_at = coalesce(?, started_at), end_reason = 'crash' "
                "WHERE ended_at IS NULL",
                (last_alive,),
            )
            cursor = db.execute("INSERT INTO runs (started_at, alive_at) VALUES (?, ?)", (iso(now), iso(now)))
            return int(cursor.lastrowid or 0)

    def crash_end(self, at: datetime) -> datetime | None:
        """When the crashed run that was alive at ``at`` ended (its last sign of life)."""
        rows = self._rows(
            "SELECT ended_at FROM runs WHERE end_reason = 'crash' AND started_at <= ? "
            "ORDER BY started_at DESC LIMIT 1",
            iso(at),
        )
        return instant(rows[0][0]) if rows and rows[0][0] else None

    def alive(self, run_id: int, now: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET alive_at = ? WHERE run_id = ? AND alive_at < ?", (iso(now), run_id, iso(now))
            )

    def end_run(self, run_id: int, now: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET alive_at = ?, ended_at = ?, end_reason = 'stopped' WHERE run_id = ?",
                (iso(now), iso(now), run_id),
            )

    def recording_started(self, now: datetime) -> None:
        with self._tx() as db:
            if db.execute("SELECT 1 FROM recording WHERE ended_at IS NULL").fetchone() is None:
                db.execute("INSERT INTO recording (started_at) VALUES (?)", (iso(now),))

    def recording_ended(self, now: datetime, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE recording SET ended_at = ?, end_reason = ? WHERE ended_at IS NULL", (iso(now), reason)
            )

    def stopped_by_server(self, at: datetime) -> None:
        with self._tx() as db:
            db.execute("INSERT INTO stops (at) VALUES (?)", (iso(at),))

    def add_lost(self, interval: Interval, reason: GapReason) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO lost (start, end, reason) VALUES (?, ?, ?)",
                (iso(interval.start), iso(interval.end), str(reason)),
            )

    def activity(self, now: datetime) -> Activity:
        runs = tuple(
            Interval(instant(s), max(instant(s), instant(e) if e else now))
            for s, e in self._rows("SELECT started_at, coalesce(ended_at, ?) FROM runs", iso(now))
        )
        recording = tuple(
            Interval(instant(s), max(instant(s), instant(e)))
            for s, e in self._rows("SELECT started_at, coalesce(ended_at, ?) FROM recording", iso(now))
        )
        stops = tuple(instant(a) for (a,) in self._rows("SELECT at FROM stops"))
        lost = tuple(
            (Interval(instant(s), instant(e)), GapReason(r))
            for s, e, r in self._rows("SELECT start, end, reason FROM lost")
        )
        return Activity(runs=runs, recording=recording, stops=stops, lost=lost)

    # --- segments ------------------------------------------------------------------------
    def add_segment(self, segment_id: str, file: str, start: datetime, wrapped_key: bytes) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO segments (segment_id, file, start, state) VALUES (?, ?, ?, ?)",
                (segment_id, file, iso(start), SegmentState.OPEN),
            )
            db.execute(
                "INSERT INTO segment_keys (segment_id, wrapped_key) VALUES (?, ?)", (segment_id, wrapped_key)
            )

    def segment_flushed(self, segment_id: str, until: datetime, size: int, frames: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE segments SET flushed_until = ?, size = ?, frames = ? WHERE segment_id = ?",
                (iso(until), size, frames, segment_id),
            )

    def segment_closed(self, segment_id: str, end: datetime, size: int, frames: int, state: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE segments SET end = ?, flushed_until = ?, size = ?, frames = ?, state = ? "
                "WHERE segment_id = ?",
                (iso(end), iso(end), size, frames, state, segment_id),
            )

    def segment_key(self, segment_id: str) -> bytes | None:
        rows = self._rows("SELECT wrapped_key FROM segment_keys WHERE segment_id = ?", segment_id)
        return bytes(rows[0][0]) if rows else None

    def segment_deleted(self, segment_id: str, now: datetime, reason: str) -> None:
        """Forget the segment's data key (overwritten in the file) and mark it deleted."""
        with self._tx() as db:
            db.execute("DELETE FROM segment_keys WHERE segment_id = ?", (segment_id,))
            db.execute(
                "UPDATE segments SET state = ?, deleted_at = ?, delete_reason = ? WHERE segment_id = ?",
                (SegmentState.DELETED, iso(now), reason, segment_id),
            )
        # The deleted key's page is overwritten in the WAL, but the WAL keeps older frames of
        # it until a checkpoint: move everything into the database file and empty the WAL.
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def segments(self, *states: str) -> list[SegmentRow]:
        wanted = states or (SegmentState.OPEN, SegmentState.COMPLETE, SegmentState.CORRUPT)
        marks = ",".join("?" for _ in wanted)
        rows = self._rows(
            "SELECT segment_id, file, start, end, flushed_until, state, size, frames FROM segments "  # noqa: S608
            f"WHERE state IN ({marks}) ORDER BY start",  # only "?" placeholders are formatted in
            *wanted,
        )
        return [
            SegmentRow(
                sid,
                file,
                instant(start),
                instant(end) if end else None,
                instant(flushed) if flushed else None,
                state,
                int(size),
                int(frames),
            )
            for sid, file, start, end, flushed, state, size, frames in rows
        ]

    def segment(self, segment_id: str) -> SegmentRow | None:
        states = (SegmentState.OPEN, SegmentState.COMPLETE, SegmentState.CORRUPT, SegmentState.DELETED)
        found = [s for s in self.segments(*states) if s.segment_id == segment_id]
        return found[0] if found else None

    # --- commands ---------------------------------------------------------------------------
    def command(self, command_id: str) -> CommandRow | None:
        rows = self._rows(
            _COMMAND_COLUMNS + "FROM commands WHERE command_id = ?",
            command_id,
        )
        return _command_row(rows[0]) if rows else None

    def accept_command(
        self,
        command_id: str,
        type_: str,
        issued_at: datetime,
        body: bytes,
        now: datetime,
        *,
        contact_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> bool:
        """Record a command once; False when this command id was seen before."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO commands (command_id, type, received_at, issued_at, body, state, "
                "contact_id, start, end) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    command_id,
                    type_,
                    iso(now),
                    iso(issued_at),
                    body,
                    CommandState.PENDING,
                    contact_id,
                    iso(start) if start else None,
                    iso(end) if end else None,
                ),
            )
            return cursor.rowcount == 1

    def attempt(self, command_id: str) -> int:
        with self._tx() as db:
            db.execute("UPDATE commands SET attempts = attempts + 1 WHERE command_id = ?", (command_id,))
            row = db.execute("SELECT attempts FROM commands WHERE command_id = ?", (command_id,)).fetchone()
            return int(row[0]) if row else 0

    def finish_command(self, command_id: str, result: dict[str, Any] | None) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE commands SET state = ?, result = ? WHERE command_id = ?",
                (CommandState.DONE, orjson.dumps(result) if result is not None else None, command_id),
            )

    def result_reported(self, command_id: str, now: datetime) -> None:
        with self._tx() as db:
            db.execute("UPDATE commands SET reported_at = ? WHERE command_id = ?", (iso(now), command_id))

    def pending_extractions(self) -> list[CommandRow]:
        rows = self._rows(
            _COMMAND_COLUMNS + "FROM commands WHERE state = ? AND type = 'extract_screen' ORDER BY issued_at",
            CommandState.PENDING,
        )
        return [_command_row(r) for r in rows]

    def pending_commands(self) -> list[CommandRow]:
        rows = self._rows(
            _COMMAND_COLUMNS + "FROM commands WHERE state = ? ORDER BY received_at, issued_at",
            CommandState.PENDING,
        )
        return [_command_row(r) for r in rows]

    def unreported_results(self) -> list[CommandRow]:
        rows = self._rows(
            _COMMAND_COLUMNS + "FROM commands WHERE state = ? AND result IS NOT NULL AND reported_at IS NULL "
            "ORDER BY issued_at",
            CommandState.DONE,
        )
        return [_command_row(r) for r in rows]

    def last_reported_issue(self) -> datetime | None:
        rows = self._rows("SELECT max(issued_at) FROM commands WHERE reported_at IS NOT NULL")
        return instant(rows[0][0]) if rows and rows[0][0] else None

    def first_run_start(self) -> datetime | None:
        rows = self._rows("SELECT min(started_at) FROM runs")
        return instant(rows[0][0]) if rows and rows[0][0] else None


def _command_row(row: tuple[Any, ...]) -> CommandRow:
    cid, type_, issued, body, state, contact, start, end, result, reported, attempts = row
    return CommandRow(
        cid,
        type_,
        instant(issued),
        bytes(body),
        state,
        contact,
        instant(start) if start else None,
        instant(end) if end else None,
        orjson.loads(result) if result else None,
        instant(reported) if reported else None,
        int(attempts or 0),
    )
