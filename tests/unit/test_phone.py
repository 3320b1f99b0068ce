from __future__ import annotations

import pytest

from processor.core.phone import to_e164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+19182690528", "+19182690528"),
        (" 19182690528", "+19182690528"),  # "+" lost to URL decoding
        ("+1 (918) 269-0528", "+19182690528"),
        ("+44 20 7555 0102", "+442075550102"),
        ("0044 20 7555 0102", "+442075550102"),
        ("sip:+13125550123@carrier.example", "+13125550123"),
        ("tel:+13125550123", "+13125550123"),
        ("+190011112222", "+190011112222"),
        ("9182690528", None),  # national number: no country to assume
        ("anonymous", None),
        ("", None),
        ("+123", None),  # too short
        ("+1234567890123456", None),  # too long for E.164 (max 15 digits)
        ("+0123456789", None),  # country codes never start with 0
        (None, None),
    ],
)
def test_to_e164(raw: str | None, e164: str | None) -> None:
    assert to_e164(raw) == e164
