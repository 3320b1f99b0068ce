"""No phone number reaches a log line in clear."""

from __future__ import annotations

import io

import orjson

from processor.platform.logs import configure_logging, get_logger, mask_phone


def test_mask_phone() -> None:
    assert mask_phone("+19182690528") == "+*********28"
    assert mask_phone(" 19182690528") == "*********28"


def test_log_lines_are_json_and_masked() -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    log = get_logger("t")
    log.info(
        "call from +1 (918) 269-0528 to 19293885349",
        calling_number="+13125550123",
        endpoint={"Address": " 19182690528"},
        shard_id="shardId-000000000001",
        sequence_number="49590338271490256608559692538361571095921575989136588898",
    )
    line = out.getvalue().strip()
    doc = orjson.loads(line)
    for number in ("9182690528", "19293885349", "3125550123", "19182690528"):
        assert number not in line
    assert doc["shard_id"] == "shardId-000000000001"
    assert doc["sequence_number"] == "49590338271490256608559692538361571095921575989136588898"
    assert doc["timestamp"].startswith("20")  # timestamps are not mistaken for numbers
    configure_logging("INFO", "json")


def test_the_log_scan_of_the_e2e_suite_finds_a_leak() -> None:
    from tests.helpers import leaked_numbers

    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)
    get_logger("t").info("callback to +61 2 9123 4567", address=" 19182690528")
    masked = out.getvalue()
    configure_logging("INFO", "json")
    numbers = {"+61291234567", " 19182690528", "+442079460321"}
    assert leaked_numbers(masked, numbers) == []
    assert leaked_numbers('{"event":"callback to +61 2 9123 4567"}', numbers) == ["+61291234567"]
    assert leaked_numbers('{"n":"19182690528"}', numbers) == [" 19182690528"]
    assert leaked_numbers('{"n":"tel 02079460321"}', numbers) == ["+442079460321"]


def test_national_phone_formats_are_masked_in_free_text() -> None:
    from processor.platform.logs import _mask_text

    for text in ("call (918) 269-0528 back", "918-269-0528", "918.269.0528", "(0918) 2690 528"):
        masked = _mask_text(text)
        assert "269" not in masked and "0528" not in masked, masked
    for kept in ("at 2026-12-06T10:00:00Z", "v1.2.3", "127.0.0.1:4566", "order 123-456-7890-abc"):
        assert _mask_text(kept) == kept
