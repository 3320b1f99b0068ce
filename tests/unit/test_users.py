from __future__ import annotations

import pytest

from processor.core.user_directory import QmUser, parse_users
from processor.platform.exceptions import InvalidInput


def test_json_and_csv_agree() -> None:
    as_json = (
        b'[{"username": "ana.silva", "first_name": "Ana", "last_name": "Silva", "screen_recording": true},'
        b' {"username": "ben", "first_name": null, "last_name": "O\'Neil"}]'
    )
    as_csv = b"username,first_name,last_name,screen_recording\nana.silva,Ana,Silva,yes\nben,,O'Neil,no\n"
    expected = [QmUser("ana.silva", "Ana", "Silva", True), QmUser("ben", None, "O'Neil", False)]
    assert parse_users(as_json) == expected
    assert parse_users(as_csv) == expected
    assert parse_users(b"\xef\xbb\xbf" + as_csv) == expected  # Excel's UTF-8 BOM


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'[{"first_name": "x"}]', "username"),
        (b'[{"username": ""}]', "username"),
        (b'[{"username": "a", "screen_recording": "maybe"}]', "screen_recording"),
        (b'[{"username": "a"}, {"username": "a"}]', "twice"),
        (b"first,last\nx,y\n", "username"),
        (b"[1, 2", "JSON"),
    ],
)
def test_rejections_say_why(data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_users(data)
    assert message in err.value.detail
