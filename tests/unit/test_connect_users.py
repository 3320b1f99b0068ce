"""Parsing Amazon Connect's ListUsers/DescribeUser responses into QM users."""

from __future__ import annotations

import pytest

from processor.core.connect_users import gone_users, parse_described_user, parse_user_summaries
from processor.platform.exceptions import InvalidInput
from tests.connect_fixtures import load


def test_list_users_pages() -> None:
    first = parse_user_summaries(load("list-users-page1"))
    assert [u.username for u in first] == ["ana.silva", "chloé@example.com"]
    assert first[0].user_id == "0a6f2c1e-7d3b-4e1a-9c2f-5b8d7e6a1f01"
    assert first[0].arn is not None and first[0].arn.endswith("/agent/0a6f2c1e-7d3b-4e1a-9c2f-5b8d7e6a1f01")
    assert [u.username for u in parse_user_summaries(load("list-users-page2"))] == ["dmitri"]
    assert parse_user_summaries({}) == []


def test_describe_user_names() -> None:
    ana = parse_described_user(load("describe-user-ana"))
    assert (ana.username, ana.first_name, ana.last_name) == ("ana.silva", "Ana", "Silva")
    chloe = parse_described_user(load("describe-user-chloe"))
    assert (chloe.first_name, chloe.last_name) == ("Chloé", "O'Neil")
    # An empty last name in Connect is no last name in QM.
    assert parse_described_user(load("describe-user-dmitri")).last_name is None


def test_incomplete_entries_are_skipped_or_refused() -> None:
    page = {"UserSummaryList": [{"Id": "x"}, {"Username": "nobody"}, "junk", {"Id": "y", "Username": " bo "}]}
    assert [(u.user_id, u.username) for u in parse_user_summaries(page)] == [("y", "bo")]
    with pytest.raises(InvalidInput):
        parse_described_user({"User": {"Id": "x"}})
    with pytest.raises(InvalidInput):
        parse_described_user({})
    with pytest.raises(InvalidInput):
        parse_user_summaries({"UserSummaryList": "nope"})


def test_gone_users() -> None:
    assert gone_users(["a", "b", "c"], ["b", "d"]) == ["a", "c"]
