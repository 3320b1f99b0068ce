"""Every bad CTR gets a clear, stable reason (the quarantine's metric label)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from processor.core.ctr import check_instance, parse_ctr
from processor.platform.exceptions import InvalidInput


@pytest.fixture
def good(samples_dir: Path) -> dict:
    return orjson.loads((samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes())


def reason(payload: bytes, **kw: object) -> str:
    with pytest.raises(InvalidInput) as err:
        parse_ctr(payload, **kw)  # type: ignore[arg-type]
    assert err.value.payload == payload  # the quarantine keeps the payload
    return err.value.reason


def test_reasons(good: dict) -> None:
    assert reason(b"{not json") == "bad_json"
    assert reason(b"\xff\xfe") == "bad_json"
    assert reason(b"[1,2]") == "not_an_object"
    assert reason(b'"text"') == "not_an_object"
    missing = dict(good)
    del missing["ContactId"]
    assert reason(orjson.dumps(missing)) == "schema"
    wrong_type = dict(good, ContactId=123)
    assert reason(orjson.dumps(wrong_type)) == "schema"
    agent_wrong = dict(good, Agent={"Username": ["x"]})
    assert reason(orjson.dumps(agent_wrong)) == "schema"
    bad_ts = dict(good, LastUpdateTimestamp="2019-13-45T00:00:00Z")
    assert reason(orjson.dumps(bad_ts)) == "bad_timestamp"
    absurd = dict(good, LastUpdateTimestamp="9999-12-31T23:59:59Z")
    assert reason(orjson.dumps(absurd)) == "absurd_timestamp"
    epoch = dict(good, LastUpdateTimestamp="1970-01-01T00:00:00Z")
    assert reason(orjson.dumps(epoch)) == "absurd_timestamp"
    assert reason(orjson.dumps(good), max_bytes=100) == "oversized"
    deep = b"[" * 5000 + b"]" * 5000
    assert reason(deep) in ("bad_json", "not_an_object")


def test_schema_message_names_the_field(good: dict) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_ctr(orjson.dumps(dict(good, Agent={"Username": 5})))
    assert "Agent" in err.value.detail and "Username" in err.value.detail


def test_unknown_fields_and_enum_values_are_accepted(good: dict) -> None:
    record = parse_ctr(orjson.dumps(dict(good, Channel="HOLOGRAM", Brand_New_Field={"x": 1})))
    assert record.channel == "HOLOGRAM"


def test_foreign_instance(good: dict) -> None:
    record = parse_ctr(orjson.dumps(good))
    check_instance(record, good["InstanceARN"])
    check_instance(record, None)
    with pytest.raises(InvalidInput) as err:
        check_instance(record, "arn:aws:connect:us-east-1:111111111111:instance/other")
    assert err.value.reason == "foreign_instance"


def test_url_encoded_instance_arn_is_the_same_instance(good: dict) -> None:
    encoded = dict(good, InstanceARN=good["InstanceARN"].replace("instance/", "instance%2F"))
    check_instance(parse_ctr(orjson.dumps(encoded)), good["InstanceARN"])
