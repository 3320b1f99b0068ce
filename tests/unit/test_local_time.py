"""The seed's Date and Time as QM shows them: the contact centre's local time; storage stays UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from processor.core.contact_query import parse_filter
from processor.core.local_time import shown_date_time, utc_bounds, zone
from processor.ops.report import contacts_table

NEW_YORK = ZoneInfo("America/New_York")
EVENING_CALL = {
    "contact_id": "c1",
    "connected_at": "2026-03-05T02:30:00.000Z",
    "date": "2026-03-05",
    "time": "02:30:00",
}


def test_an_evening_call_in_new_york_shows_on_its_own_day() -> None:
    assert shown_date_time(EVENING_CALL, NEW_YORK) == ("2026-03-04", "21:30:00")
    assert shown_date_time(EVENING_CALL, UTC) == ("2026-03-05", "02:30:00")
    summer = {**EVENING_CALL, "connected_at": "2026-07-05T02:30:00.000Z"}
    assert shown_date_time(summer, NEW_YORK) == ("2026-07-04", "22:30:00")  # daylight saving
    assert shown_date_time({"date": None, "time": None}, NEW_YORK) == (None, None)


def test_contacts_list_shows_local_date_and_time() -> None:
    from rich.console import Console

    console = Console(width=300, record=True)
    console.print(contacts_table([EVENING_CALL], tz=NEW_YORK))
    text = console.export_text()
    assert "2026-03-04" in text and "21:30:00" in text
    assert "2026-03-05" not in text


def test_a_local_day_in_utc() -> None:
    lo, hi = utc_bounds(date(2026, 3, 4), date(2026, 3, 4), NEW_YORK)
    assert lo == datetime(2026, 3, 4, 5, 0, tzinfo=UTC)
    assert hi == datetime(2026, 3, 5, 4, 59, 59, 999000, tzinfo=UTC)
    flt = parse_filter({"from": "2026-03-04", "to": "2026-03-04"}, date(2026, 3, 6), frozenset(), NEW_YORK)
    assert list(flt.days_descending()) == [date(2026, 3, 5), date(2026, 3, 4)]
    assert flt.holds("2026-03-05T02:30:00.000Z") and not flt.holds("2026-03-05T05:00:00.000Z")


def test_time_zone_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from processor.platform.exceptions import ConfigurationError
    from processor.platform.settings import Settings, get_settings

    assert str(Settings(time_zone="America/New_York").zone) == "America/New_York"
    assert zone("UTC") is UTC
    monkeypatch.setenv("QM_TIME_ZONE", "Mars/Olympus_Mons")
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError, match="QM_TIME_ZONE"):
        get_settings()
    get_settings.cache_clear()
