"""Pure decisions of the screen recorder: which segments serve a contact, what is missing
and why, and which segments may be deleted. No clock, no files: callers pass the state.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class GapReason(StrEnum):
    NOT_RECORDING = "not_recording"  # desktop running, recording never started (or not yet)
    PC_OFF = "pc_off"  # the desktop was not running (PC off, crashed, not started)
    LOGGED_OUT = "logged_out"  # the server had stopped recording (agent logged out)
    SEGMENT_MISSING = "segment_missing"  # recording was on but the segment is gone
    SEGMENT_CORRUPT = "segment_corrupt"  # the segment failed authentication or cannot be read


class PurgeReason(StrEnum):
    RELEASED = "released"  # covered by release_segments_before, no pending extraction
    QUOTA_UNRELEASED = "quota_unreleased"  # over the disk quota with nothing released left


@dataclass(frozen=True, order=True)
class Interval:
    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("interval bounds must be timezone-aware")

    @property
    def seconds(self) -> float:
        return max(0.0, (self.end - self.start).total_seconds())

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


@dataclass(frozen=True)
class SegmentSpan:
    """What the pure logic needs to know about one stored segment."""

    segment_id: str
    start: datetime
    end: datetime
    size: int = 0
    open: bool = False  # still being written
    corrupt: bool = False

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)


@dataclass(frozen=True)
class Gap:
    start: datetime
    end: datetime
    reason: GapReason

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class Activity:
    """The desktop's own history, as recorded in its journal.

    ``runs``: when the desktop process was alive. ``recording``: when recording was on
    (start_recording .. stop_recording, or the crash). ``stops``: instants at which the
    server stopped recording (logout). ``lost``: intervals whose segments were deleted or
    found corrupt, with the reason to report.
    """

    runs: tuple[Interval, ...] = ()
    recording: tuple[Interval, ...] = ()
    stops: tuple[datetime, ...] = ()
    lost: tuple[tuple[Interval, GapReason], ...] = ()


def segments_for(segments: Iterable[SegmentSpan], interval: Interval) -> list[SegmentSpan]:
    """Readable segments overlapping ``interval``, oldest first."""
    return sorted(
        (s for s in segments if not s.corrupt and s.interval.overlaps(interval)), key=lambda s: s.start
    )


def uncovered(covered: Iterable[Interval], interval: Interval, tolerance: timedelta) -> list[Interval]:
    """Parts of ``interval`` no covered interval reaches; holes up to ``tolerance`` (capture
    jitter, the frame between two segments) are not gaps."""
    cursor = interval.start
    holes: list[Interval] = []
    for part in sorted(covered):
        if part.end <= cursor or part.start >= interval.end:
            continue
        if part.start > cursor:
            holes.append(Interval(cursor, min(part.start, interval.end)))
        cursor = max(cursor, part.end)
        if cursor >= interval.end:
            break
    if cursor < interval.end:
        holes.append(Interval(cursor, interval.end))
    return [h for h in holes if h.end - h.start > tolerance]


def _reason_at(instant: datetime, activity: Activity) -> GapReason:
    for lost, reason in activity.lost:
        if lost.contains(instant):
            return reason
    if not any(run.contains(instant) for run in activity.runs):
        return GapReason.PC_OFF
    if any(rec.contains(instant) for rec in activity.recording):
        return GapReason.SEGMENT_MISSING
    if any(stop <= instant for stop in activity.stops) and _last_event_is_stop(instant, activity):
        return GapReason.LOGGED_OUT
    return GapReason.NOT_RECORDING


def _last_event_is_stop(instant: datetime, activity: Activity) -> bool:
    last_stop = max((s for s in activity.stops if s <= instant), default=None)
    last_start = max((r.start for r in activity.recording if r.start <= instant), default=None)
    return last_stop is not None and (last_start is None or last_stop >= last_start)


def classify_gaps(
    holes: Sequence[Interval], activity: Activity, tolerance: timedelta = timedelta(0)
) -> list[Gap]:
    """Split each hole where the desktop's state changed and name each piece's reason.

    Pieces up to ``tolerance`` (the milliseconds between a stop command and the last
    frame) take the reason of the piece next to them instead of standing alone."""
    edges: set[datetime] = set()
    for run in activity.runs:
        edges.update((run.start, run.end))
    for rec in activity.recording:
        edges.update((rec.start, rec.end))
    edges.update(activity.stops)
    for lost, _ in activity.lost:
        edges.update((lost.start, lost.end))
    gaps: list[Gap] = []
    for hole in holes:
        cuts = sorted({hole.start, hole.end, *(e for e in edges if hole.start < e < hole.end)})
        pieces = [
            Gap(start, end, _reason_at(start + (end - start) / 2, activity))
            for start, end in itertools.pairwise(cuts)
        ]
        longest = max(pieces, key=lambda g: g.end - g.start)
        merged: list[Gap] = []
        for i, piece in enumerate(pieces):
            reason = piece.reason
            if piece.end - piece.start <= tolerance and piece is not longest:
                neighbour = merged[-1] if merged else pieces[i + 1]
                reason = neighbour.reason
            if merged and merged[-1].reason == reason:
                merged[-1] = Gap(merged[-1].start, piece.end, reason)
            else:
                merged.append(Gap(piece.start, piece.end, reason))
        gaps.extend(merged)
    return gaps


def coverage(interval: Interval, gaps: Sequence[Gap]) -> float:
    """Share of ``interval`` that the recording covers (0..1)."""
    if interval.seconds <= 0:
        return 0.0
    missing = sum(g.seconds for g in gaps)
    return max(0.0, min(1.0, 1.0 - missing / interval.seconds))


@dataclass(frozen=True)
class PurgePlan:
    delete: tuple[tuple[SegmentSpan, PurgeReason], ...]
    usage_bytes: int  # before deleting
    remaining_bytes: int  # after deleting
    warn: bool  # usage at or above the warning threshold
    over_quota: bool  # still above the quota after the plan (nothing more may be deleted)


def _pending_overlap(segment: SegmentSpan, pending: Sequence[Interval]) -> bool:
    return any(segment.interval.overlaps(p) for p in pending)


def plan_purge(
    segments: Sequence[SegmentSpan],
    *,
    released_before: datetime | None,
    pending: Sequence[Interval],
    quota_bytes: int,
    warn_fraction: float,
) -> PurgePlan:
    """Which segments to delete, and why.

    * A segment is *released* when it ends at or before ``released_before`` (the server
      confirmed every contact of the agent up to then is imported) and no pending
      extraction overlaps it. Released segments are deleted.
    * Over ``quota_bytes`` after that, the oldest unreleased segments are deleted too,
      reported loudly (``QUOTA_UNRELEASED``), but never one a pending extraction needs and
      never the segment being written.
    """
    usage = sum(s.size for s in segments)
    delete: list[tuple[SegmentSpan, PurgeReason]] = []
    kept: list[SegmentSpan] = []
    for segment in sorted(segments, key=lambda s: s.start):
        released = (
            not segment.open
            and released_before is not None
            and segment.end <= released_before
            and not _pending_overlap(segment, pending)
        )
        (delete.append((segment, PurgeReason.RELEASED)) if released else kept.append(segment))
    remaining = usage - sum(s.size for s, _ in delete)
    for segment in kept:
        if remaining <= quota_bytes:
            break
        if segment.open or _pending_overlap(segment, pending):
            continue
        delete.append((segment, PurgeReason.QUOTA_UNRELEASED))
        remaining -= segment.size
    return PurgePlan(
        delete=tuple(delete),
        usage_bytes=usage,
        remaining_bytes=remaining,
        warn=usage >= warn_fraction * quota_bytes,
        over_quota=remaining > quota_bytes,
    )
