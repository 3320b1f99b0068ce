"""Segment selection, gaps and their reasons, and the purge decision (property-tested)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from processor.core.screen_timeline import (
    Activity,
    GapReason,
    Interval,
    PurgeReason,
    SegmentSpan,
    classify_gaps,
    coverage,
    plan_purge,
    segments_for,
    uncovered,
)

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def iv(a: float, b: float) -> Interval:
    return Interval(at(a), at(b))


def seg(name: str, a: float, b: float, size: int = 100, **kw: bool) -> SegmentSpan:
    return SegmentSpan(name, at(a), at(b), size=size, **kw)


def test_segments_for_picks_overlapping_in_order() -> None:
    segments = [
        seg("c", 1200, 1800),
        seg("a", 0, 600),
        seg("b", 600, 1200),
        seg("x", 1800, 2400, corrupt=True),
    ]
    assert [s.segment_id for s in segments_for(segments, iv(590, 1210))] == ["a", "b", "c"]
    assert [s.segment_id for s in segments_for(segments, iv(600, 1200))] == [
        "b"
    ]  # touching is not overlapping
    assert segments_for(segments, iv(1900, 2000)) == []  # corrupt segments are never used


def test_uncovered_ignores_jitter_but_not_real_holes() -> None:
    covered = [iv(0, 600), iv(600.3, 1200), iv(1500, 1800)]
    holes = uncovered(covered, iv(-10, 2000), tolerance=timedelta(seconds=0.4))
    assert holes == [iv(-10, 0), iv(1200, 1500), iv(1800, 2000)]
    assert uncovered([iv(0, 100)], iv(10, 20), timedelta(0)) == []


def test_gap_reasons_follow_the_desktop_history() -> None:
    activity = Activity(
        runs=(iv(0, 1000), iv(2000, 5000)),  # PC off 1000..2000
        recording=(iv(100, 1000), iv(2000, 3000), iv(3500, 5000)),
        stops=(at(3000),),  # logged out 3000..3500
        lost=((iv(4000, 4200), GapReason.SEGMENT_CORRUPT),),
    )
    gaps = classify_gaps([iv(0, 5000)], activity)
    assert [
        (round((g.start - T0).total_seconds()), round((g.end - T0).total_seconds()), g.reason) for g in gaps
    ] == [
        (0, 100, GapReason.NOT_RECORDING),
        (100, 1000, GapReason.SEGMENT_MISSING),
        (1000, 2000, GapReason.PC_OFF),
        (2000, 3000, GapReason.SEGMENT_MISSING),
        (3000, 3500, GapReason.LOGGED_OUT),
        (3500, 4000, GapReason.SEGMENT_MISSING),
        (4000, 4200, GapReason.SEGMENT_CORRUPT),
        (4200, 5000, GapReason.SEGMENT_MISSING),
    ]
    assert coverage(iv(0, 100), []) == 1.0
    assert coverage(iv(0, 100), classify_gaps([iv(0, 25)], activity)) == 0.75


# --- purge ------------------------------------------------------------------------------------
segment_lists = st.lists(
    st.tuples(st.integers(0, 5000), st.integers(1, 900), st.integers(1, 1000), st.booleans()),
    min_size=0,
    max_size=12,
)


@settings(max_examples=400, deadline=None)
@given(
    raw=segment_lists,
    released=st.one_of(st.none(), st.integers(0, 6000)),
    pending=st.lists(st.tuples(st.integers(0, 6000), st.integers(1, 1200)), max_size=4),
    quota=st.integers(1, 8000),
)
def test_purge_never_deletes_what_an_unreleased_interval_needs(raw, released, pending, quota) -> None:
    segments = [
        seg(f"s{i}", a, a + length, size, open=is_open and i == len(raw) - 1)
        for i, (a, length, size, is_open) in enumerate(raw)
    ]
    pending_intervals = [iv(a, a + length) for a, length in pending]
    horizon = at(released) if released is not None else None
    plan = plan_purge(
        segments, released_before=horizon, pending=pending_intervals, quota_bytes=quota, warn_fraction=0.8
    )
    deleted = {s.segment_id: reason for s, reason in plan.delete}
    for segment, reason in plan.delete:
        # Never the segment being written, never one a pending extraction needs.
        assert not segment.open
        assert not any(segment.interval.overlaps(p) for p in pending_intervals)
        if reason is PurgeReason.RELEASED:
            assert horizon is not None and segment.end <= horizon
    # Every released, unneeded segment goes; unreleased ones only under quota pressure.
    for segment in segments:
        releasable = (
            horizon is not None
            and not segment.open
            and segment.end <= horizon
            and not any(segment.interval.overlaps(p) for p in pending_intervals)
        )
        assert (deleted.get(segment.segment_id) is PurgeReason.RELEASED) == releasable
    unreleased_deleted = [s for s, r in plan.delete if r is PurgeReason.QUOTA_UNRELEASED]
    if unreleased_deleted:
        released_bytes = sum(s.size for s, r in plan.delete if r is PurgeReason.RELEASED)
        assert plan.usage_bytes - released_bytes > quota  # released ones alone were not enough
        # oldest first: nothing deletable and unreleased is older than a deleted one
        newest = max(s.start for s in unreleased_deleted)
        for segment in segments:
            if segment.segment_id not in deleted and segment.start < newest:
                assert segment.open or any(segment.interval.overlaps(p) for p in pending_intervals)
    assert plan.remaining_bytes == plan.usage_bytes - sum(s.size for s, _ in plan.delete)
    assert plan.over_quota == (plan.remaining_bytes > quota)


def test_quota_warns_before_it_is_reached() -> None:
    segments = [seg("a", 0, 600, 850), seg("b", 600, 1200, 100, open=True)]
    plan = plan_purge(segments, released_before=None, pending=[], quota_bytes=1000, warn_fraction=0.8)
    assert plan.warn and not plan.over_quota and plan.delete == ()
    plan = plan_purge(segments, released_before=None, pending=[], quota_bytes=900, warn_fraction=0.8)
    assert [(s.segment_id, r) for s, r in plan.delete] == [("a", PurgeReason.QUOTA_UNRELEASED)]
    plan = plan_purge(
        segments, released_before=None, pending=[iv(10, 20)], quota_bytes=900, warn_fraction=0.8
    )
    assert plan.delete == () and plan.over_quota  # a pending contact's segment is never sacrificed


def test_slivers_between_a_stop_and_the_last_frame_join_their_neighbour() -> None:
    activity = Activity(runs=(iv(0, 100),), recording=(iv(0, 50.02), iv(60, 100)), stops=(at(50.02),))
    gaps = classify_gaps([iv(50.0, 60.01)], activity, tolerance=timedelta(seconds=0.4))
    assert [(g.reason, g.start, g.end) for g in gaps] == [(GapReason.LOGGED_OUT, at(50.0), at(60.01))]
    assert [g.reason for g in classify_gaps([iv(50.0, 60.01)], activity)] == [
        GapReason.SEGMENT_MISSING,
        GapReason.LOGGED_OUT,
        GapReason.SEGMENT_MISSING,
    ]
