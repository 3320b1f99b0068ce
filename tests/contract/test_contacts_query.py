"""Paging contacts through the contacts table's indexes: complete, ordered, no duplicates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from processor.adapters.dynamodb.contacts_query import ContactQuery
from processor.console.samples import contact_doc, put_contacts
from processor.core.contact_query import parse_filter

FLAGS = frozenset({"recording_missing", "user_unknown"})
AGENTS = ["ana", "ben", "cy"]


@pytest.fixture
def seeded(bootstrapped, aws):  # type: ignore[no-untyped-def]
    docs = []
    start = datetime(2024, 6, 26, 8, 0, tzinfo=UTC)
    for i in range(130):
        at = start + timedelta(minutes=41 * i)  # about 3.7 days
        docs.append(
            contact_doc(
                f"c{i:04d}",
                agent=AGENTS[i % 3],
                first_name="F",
                last_name="L",
                connected_at=at,
                duration_seconds=60,
                direction="outbound" if i % 4 == 0 else "inbound",
                recording_location=None if i % 10 == 0 else f"b/k{i}.wav",
                flags=["recording_missing"] if i % 10 == 0 else [],
            )
        )
    put_contacts(aws.dynamodb, bootstrapped.contacts_table, docs)
    return ContactQuery(aws.dynamodb, bootstrapped.contacts_table), docs


def _all_pages(query: ContactQuery, params: dict[str, str], limit: int) -> tuple[list[str], int]:
    flt = parse_filter(params, date(2024, 6, 30), FLAGS)
    ids: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = query.page(flt, cursor, limit)
        pages += 1
        assert len(page.docs) <= limit
        ids += [d["contact_id"] for d in page.docs]
        if page.next_cursor is None:
            return ids, pages
        assert len(page.docs) == limit
        cursor = page.next_cursor


def _expected(docs: list[dict], keep) -> list[str]:  # type: ignore[no-untyped-def]
    chosen = [d for d in docs if keep(d)]
    return [d["contact_id"] for d in sorted(chosen, key=lambda d: d["connected_at"], reverse=True)]


def test_by_date_pages_newest_first_across_days(seeded) -> None:  # type: ignore[no-untyped-def]
    query, docs = seeded
    params = {"from": "2024-06-26", "to": "2024-06-30"}
    ids, pages = _all_pages(query, params, 50)
    assert ids == _expected(docs, lambda d: True)
    assert pages == 3
    one_day, _ = _all_pages(query, {"from": "2024-06-27", "to": "2024-06-27"}, 7)
    assert one_day == _expected(docs, lambda d: d["date"] == "2024-06-27")


def test_by_agent_and_filters(seeded) -> None:  # type: ignore[no-untyped-def]
    query, docs = seeded
    ids, _ = _all_pages(query, {"from": "2024-06-27", "to": "2024-06-28", "agent": "ben"}, 10)
    assert ids == _expected(
        docs, lambda d: d["acd_id"] == "ben" and "2024-06-27" <= d["date"] <= "2024-06-28"
    )
    outbound, _ = _all_pages(query, {"from": "2024-06-26", "to": "2024-06-30", "direction": "outbound"}, 9)
    assert outbound == _expected(docs, lambda d: d["direction"] == "outbound")
    missing, _ = _all_pages(
        query, {"from": "2024-06-26", "to": "2024-06-30", "agent": "ana", "flag": "recording_missing"}, 3
    )
    assert missing == _expected(docs, lambda d: d["acd_id"] == "ana" and "recording_missing" in d["flags"])
    assert missing  # the filter found something to page through


def test_a_page_reads_only_its_page(seeded) -> None:  # type: ignore[no-untyped-def]
    query, _ = seeded
    flt = parse_filter({"from": "2024-06-26", "to": "2024-06-30"}, date(2024, 6, 30), FLAGS)
    page = query.page(flt, None, 20)
    # Newest day first (2024-06-30 has a few contacts), then 2024-06-29 fills the page.
    assert len(page.docs) == 20 and page.queries <= 3


NEW_YORK = "America/New_York"


def _local_day(doc: dict, zone_name: str) -> str:  # type: ignore[type-arg]
    from zoneinfo import ZoneInfo

    at = datetime.fromisoformat(doc["connected_at"].replace("Z", "+00:00"))
    return at.astimezone(ZoneInfo(zone_name)).date().isoformat()


@pytest.mark.parametrize("agent", [None, "ben"])
def test_dates_are_the_contact_centre_s_local_days(seeded, agent: str | None) -> None:  # type: ignore[no-untyped-def]
    # In New York a contact connected at 02:30 UTC belongs to the day before: its UTC day
    # partition holds contacts of two local days, and one local day spans two partitions.
    from zoneinfo import ZoneInfo

    query, docs = seeded
    params = {"from": "2024-06-27", "to": "2024-06-27", **({"agent": agent} if agent else {})}
    flt = parse_filter(params, date(2024, 6, 30), FLAGS, ZoneInfo(NEW_YORK))
    ids: list[str] = []
    cursor = None
    while True:
        page = query.page(flt, cursor, 7)
        ids += [d["contact_id"] for d in page.docs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    expected = _expected(
        docs, lambda d: _local_day(d, NEW_YORK) == "2024-06-27" and (agent is None or d["acd_id"] == agent)
    )
    assert ids == expected
    assert any(d["date"] == "2024-06-28" for d in docs if d["contact_id"] in ids)  # UTC's next day
