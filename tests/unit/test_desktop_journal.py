"""The desktop journal's account of a crash: the torn tail of the last segment (frames
captured after the last whole fragment) is reported as the PC being off, not as a
segment that went missing while recording."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from processor.core.screen_timeline import GapReason, Interval, classify_gaps, uncovered
from processor.desktop.journal import Journal

T0 = datetime(2026, 6, 2, 9, 0, tzinfo=UTC)


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def test_crash_end_is_the_crashed_runs_last_sign_of_life(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.crash_end(seconds(1)) is None
    journal.begin_run(seconds(0))
    journal.recording_started(seconds(0))
    journal.alive(1, seconds(13))
    # kill -9: no end_run. The next start closes the run at its last heartbeat.
    journal.begin_run(seconds(20))
    assert journal.crash_end(seconds(5)) == seconds(13)
    assert journal.crash_end(seconds(21)) == seconds(13)  # the latest crash before the instant
    journal.close()


def test_torn_tail_after_a_crash_is_pc_off(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.sqlite")
    journal.begin_run(seconds(0))
    journal.recording_started(seconds(0))
    journal.alive(1, seconds(13))
    run_2 = journal.begin_run(seconds(20))
    journal.recording_started(seconds(20))
    contact = Interval(seconds(9), seconds(24))
    recovered_until = seconds(11.4)  # the last whole fragment of the torn segment
    holes = uncovered(
        [Interval(seconds(5), recovered_until), Interval(seconds(20), seconds(30))], contact, timedelta(0)
    )
    # Without the record of what the crash took, the torn tail reads as a missing segment.
    before = classify_gaps(holes, journal.activity(seconds(30)))
    assert [g.reason for g in before] == [GapReason.SEGMENT_MISSING, GapReason.PC_OFF]
    crashed_at = journal.crash_end(seconds(5))
    assert crashed_at is not None
    journal.add_lost(Interval(recovered_until, crashed_at), GapReason.PC_OFF)
    after = classify_gaps(holes, journal.activity(seconds(30)))
    assert [(g.reason, g.start, g.end) for g in after] == [(GapReason.PC_OFF, recovered_until, seconds(20))]
    assert run_2 == 2
    journal.close()


def test_the_journal_is_private_and_a_deleted_key_leaves_no_copy(tmp_path: Path) -> None:
    import os
    import stat

    path = tmp_path / "journal.sqlite"
    journal = Journal(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    key = os.urandom(48)
    journal.add_segment("seg-1", "seg-1.qmseg", seconds(0), key)
    journal.segment_deleted("seg-1", seconds(600), "released")
    wal = path.with_name(path.name + "-wal")
    for file in (path, wal):
        if file.exists():
            assert key not in file.read_bytes(), file.name
    assert not wal.exists() or wal.stat().st_size == 0
    journal.close()
