from __future__ import annotations

import pytest

from processor.core.http_range import ByteRange, RangeNotSatisfiable, parse_range


def test_ranges() -> None:
    assert parse_range(None, 100) is None
    assert parse_range("bytes=0-", 100) == ByteRange(0, 99)
    assert parse_range("bytes=10-19", 100) == ByteRange(10, 19)
    assert parse_range("bytes=90-500", 100) == ByteRange(90, 99)
    assert parse_range("bytes=-10", 100) == ByteRange(90, 99)
    assert parse_range("bytes=-1000", 100) == ByteRange(0, 99)
    assert parse_range("bytes=0-", 10**9, max_bytes=1000) == ByteRange(0, 999)
    assert ByteRange(10, 19).content_range(100) == "bytes 10-19/100"


def test_ignored_headers_mean_the_whole_body() -> None:
    for header in ("items=0-1", "bytes=0-1,5-6", "bytes=abc-", "bytes=5-2", "bytes"):
        assert parse_range(header, 100) is None


def test_unsatisfiable() -> None:
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=100-", 100)
    with pytest.raises(RangeNotSatisfiable):
        parse_range("bytes=-0", 100)
