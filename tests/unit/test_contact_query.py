from __future__ import annotations

from datetime import date

import pytest

from processor.core.contact_query import (
    ContactFilter,
    Cursor,
    decode_cursor,
    duration_check,
    encode_cursor,
    parse_filter,
)
from processor.platform.exceptions import InvalidInput

FLAGS = frozenset({"recording_missing", "user_unknown"})
TODAY = date(2024, 6, 30)


def test_defaults_to_the_last_week() -> None:
    flt = parse_filter({}, TODAY, FLAGS)
    assert (flt.date_from, flt.date_to) == (date(2024, 6, 24), TODAY)
    assert flt.index == "by_date"
    assert list(flt.days_descending())[:2] == [date(2024, 6, 30), date(2024, 6, 29)]
    assert len(list(flt.days_descending())) == 7


def test_filters() -> None:
    params = {"from": "2024-06-01", "to": "2024-06-02", "agent": " ana ", "direction": "Outbound"}
    flt = parse_filter({**params, "flag": "recording_missing"}, TODAY, FLAGS)
    assert flt == ContactFilter(date(2024, 6, 1), date(2024, 6, 2), "ana", "outbound", "recording_missing")
    assert flt.index == "by_agent"
    assert flt.as_query()["agent"] == "ana"
    for bad in (
        {"from": "2024-06-03", "to": "2024-06-02"},
        {"from": "yesterday"},
        {"direction": "sideways"},
        {"flag": "made_up"},
        {"from": "2020-01-01", "to": "2024-01-01"},
    ):
        with pytest.raises(InvalidInput):
            parse_filter(bad, TODAY, FLAGS)


def test_cursor_round_trip_and_tampering() -> None:
    flt = parse_filter({}, TODAY, FLAGS)
    key = {"contact_id": "c1", "contact_date": "2024-06-29", "connected_at": "2024-06-29T10:00:00.000Z"}
    text = encode_cursor(Cursor(date(2024, 6, 29), key))
    assert decode_cursor(text, flt) == Cursor(date(2024, 6, 29), key)
    agent = parse_filter({"agent": "ana"}, TODAY, FLAGS)
    with pytest.raises(InvalidInput):
        decode_cursor(text, agent)  # a by_date cursor on a by_agent listing
    other = encode_cursor(Cursor(None, {"contact_id": "c", "acd_id": "bob", "connected_at": "x"}))
    with pytest.raises(InvalidInput):
        decode_cursor(other, agent)
    for junk in ("!!!", "e30", "x" * 5000):
        with pytest.raises(InvalidInput):
            decode_cursor(junk, flt)
    assert decode_cursor(None, flt) is None


def test_duration_cross_check() -> None:
    base = {"connected_at": "2024-06-29T10:00:00.000Z", "disconnect_at": "2024-06-29T10:05:00.000Z"}
    assert duration_check({**base, "call_duration_seconds": 298.0}).verdict == "consistent"
    short = duration_check({**base, "call_duration_seconds": 100.0})
    assert (short.verdict, short.difference_seconds) == ("recording shorter", -200.0)
    assert duration_check({**base, "call_duration_seconds": 400}).verdict == "recording longer"
    assert duration_check({**base, "call_duration_seconds": None}).verdict == "not comparable"
    assert duration_check({"call_duration_seconds": 10}).verdict == "not comparable"


def test_duration_against_the_joins_expectation() -> None:
    doc = {"call_duration_seconds": 280.0, "connected_at": "2024-06-29T10:00:00.000Z"}
    check = duration_check(doc, 290.0, tolerance_seconds=5.0, tolerance_ratio=0.05)
    assert (check.basis, check.verdict, check.difference_seconds) == ("talk + hold", "consistent", -10.0)
    assert (
        duration_check(doc, 400.0, tolerance_seconds=5.0, tolerance_ratio=0.05).verdict == "recording shorter"
    )
