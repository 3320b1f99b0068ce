"""The seed's mapping table, on every real CTR sample, with the expected values written out."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from processor.core.ctr import ctr_from_object, parse_ctr
from processor.core.ctr_files import iter_ctr_inputs
from processor.core.mapping import DIRECTIONS, direction_of, map_contact
from processor.core.user_directory import QmUser


def contacts_of(path: Path, users: dict[str, QmUser] | None = None) -> list[dict]:
    out = []
    for item in iter_ctr_inputs([path.read_bytes()]):
        assert item.error is None, item.error
        record = ctr_from_object(item.value)
        user = (users or {}).get(record.agent.username) if record.agent and record.agent.username else None
        out.append(map_contact(record, user).to_dict())
    return out


def test_voicebase_inbound_with_agent_and_s3_recording(samples_dir: Path) -> None:
    users = {"agent007": QmUser("agent007", "James", "Bond")}
    [c] = contacts_of(samples_dir / "ctr/voicebase-quickstart-1.json", users)
    assert c["contact_id"] == "3aec0dc9-2817-4b95-8b72-492c8f972493"
    assert c["acd_id"] == "agent007"
    assert c["called_number"] == "+5553772250"
    assert c["calling_number"] == "+5556373496"
    assert c["direction"] == "inbound"
    assert (c["first_name"], c["last_name"]) == ("James", "Bond")
    assert c["call_duration_seconds"] is None  # comes from the media file (join)
    assert c["date"] == "2019-01-02"
    assert c["time"] == "00:07:42"
    assert c["connected_at"] == "2019-01-02T00:07:42.000Z"
    assert c["recording_type"] == "Amazon Connect"
    assert c["last_update"] == "2019-01-02T01:00:06.000Z"
    assert (
        c["instance_arn"]
        == "arn:aws:connect:us-east-1:999080565678:instance/38f09398-0db8-4368-a844-6cedc0c18362"
    )
    assert c["recording_location"] == (
        "awsconnect-bucket/connect/my-connect-instance/CallRecordings/2019/01/02/"
        "3aec0dc9-2817-4b95-8b72-492c8f972493_20190102T00:07_UTC.wav"
    )
    assert c["recordings"] == [c["recording_location"]]
    assert c["acw_end_at"] == "2019-01-02T00:59:00.000Z"
    assert c["queue"] == "default_queue"
    assert c["flags"] == []


def test_unknown_user_gives_null_names_and_a_flag(samples_dir: Path) -> None:
    [c] = contacts_of(samples_dir / "ctr/voicebase-quickstart-1.json")
    assert (c["first_name"], c["last_name"]) == (None, None)
    assert c["flags"] == ["user_unknown"]


def test_kyopark_redeliveries_keep_identity_and_order_by_last_update(samples_dir: Path) -> None:
    versions = [
        contacts_of(samples_dir / f"ctr/kyopark-call-center-analytics-{i}.json")[0] for i in (1, 2, 3)
    ]
    assert {v["contact_id"] for v in versions} == {"6fe40d2a-1a89-4d73-bfcf-5d9c33894f47"}
    assert [v["last_update"] for v in versions] == [
        "2022-01-05T17:48:35.000Z",
        "2022-01-11T03:41:32.000Z",
        "2022-01-11T04:09:47.000Z",
    ]
    first = versions[0]
    assert first["acd_id"] == "Steve.Lusk"
    assert first["called_number"] == "+18003335555"
    assert first["calling_number"] == "+190011112222"
    assert (first["date"], first["time"]) == ("2022-01-05", "17:20:32")
    assert first["direction"] == "inbound"


def test_duplicates_array_maps_every_element_in_order(samples_dir: Path) -> None:
    contacts = contacts_of(samples_dir / "ctr/kyopark-call-center-analytics-duplicates-array.json")
    assert len(contacts) == 6
    assert len({c["contact_id"] for c in contacts}) == 1
    assert sorted({c["last_update"] for c in contacts}) == [
        "2022-01-05T17:48:35.000Z",
        "2022-01-11T03:41:32.000Z",
        "2022-01-11T04:09:47.000Z",
    ]


def test_no_agent_kvs_only_contact(samples_dir: Path) -> None:
    [c] = contacts_of(samples_dir / "ctr/freewine-callrecording-1.json")
    assert c["contact_id"] == "90805ff9-e908-4513-91e6-d102da31dce3"
    assert c["acd_id"] is None
    assert (c["date"], c["time"], c["connected_at"]) == (None, None, None)
    assert (c["first_name"], c["last_name"]) == (None, None)
    assert c["called_number"] == "+13343774004"
    assert c["calling_number"] == "+13467668061"
    assert c["recording_location"] is None
    assert c["recordings"] == []
    assert set(c["flags"]) == {"no_agent", "recording_kvs_only"}


def test_lambda_wrapper_with_inline_data_is_unwrapped(samples_dir: Path) -> None:
    wrapped = contacts_of(samples_dir / "ctr/freewine-callrecording-2-kinesis-wrapper.json")
    plain = contacts_of(samples_dir / "ctr/freewine-callrecording-2.json")
    assert wrapped == plain
    [c] = plain
    assert c["contact_id"] == "5ca32fbd-8f92-46af-92a5-6b0f970f0efe"
    assert set(c["flags"]) == {"no_agent", "recording_kvs_only"}


def test_dirty_numbers_and_backslashed_instance_arn(samples_dir: Path) -> None:
    [c] = contacts_of(samples_dir / "ctr/smg-agenttrack-quickstart-1.json")
    # " 19182690528": a "+" lost to URL decoding.
    assert c["calling_number"] == "+19182690528"
    assert c["called_number"] == "+19293885349"
    assert c["customer_endpoint_raw"] == {"address": " 19182690528", "type": "TELEPHONE_NUMBER"}
    assert (
        c["instance_arn"]
        == "arn:aws:connect:us-east-1:847765041971:instance/2fee1c1f-9d48-42f9-99ee-d129e70dd33f"
    )
    assert set(c["flags"]) == {"no_agent", "no_recording"}


@pytest.mark.parametrize(
    ("method", "direction"),
    [
        ("INBOUND", "inbound"),
        ("TRANSFER", "inbound"),
        ("QUEUE_TRANSFER", "inbound"),
        ("OUTBOUND", "outbound"),
        ("CALLBACK", "outbound"),
        ("API", "outbound"),
        ("EXTERNAL_OUTBOUND", "outbound"),
        ("MONITOR", "inbound"),
        ("DISCONNECT", "inbound"),
        ("WEBRTC_API", "inbound"),
        ("AGENT_REPLY", "outbound"),
        ("FLOW", "outbound"),
    ],
)
def test_every_documented_initiation_method(method: str, direction: str) -> None:
    assert direction_of(method) == (direction, True)


def test_unknown_initiation_method_never_fails(samples_dir: Path) -> None:
    obj = orjson.loads((samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes())
    obj["InitiationMethod"] = "TELEPATHY"
    c = map_contact(ctr_from_object(obj)).to_dict()
    assert c["direction"] == "inbound"
    assert "initiation_method_unknown" in c["flags"]
    assert set(DIRECTIONS.values()) == {"inbound", "outbound"}


def test_outbound_keeps_the_table_columns(samples_dir: Path) -> None:
    obj = orjson.loads((samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes())
    obj["InitiationMethod"] = "OUTBOUND"
    c = map_contact(ctr_from_object(obj)).to_dict()
    # The seed's table maps SystemEndpoint -> called and CustomerEndpoint -> calling for
    # every direction; the raw endpoints stay with the contact for consumers who need more.
    assert c["direction"] == "outbound"
    assert c["called_number"] == "+5553772250"
    assert c["calling_number"] == "+5556373496"
    assert c["system_endpoint_raw"]["address"] == "+5553772250"


def test_agent_that_never_connected_has_no_date(samples_dir: Path) -> None:
    obj = orjson.loads((samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes())
    obj["Agent"]["ConnectedToAgentTimestamp"] = None
    c = map_contact(ctr_from_object(obj)).to_dict()
    assert (c["date"], c["time"], c["connected_at"]) == (None, None, None)
    assert c["acd_id"] == "agent007"
    assert "no_agent" in c["flags"]


def test_two_s3_recordings_and_a_deleted_one() -> None:
    obj = orjson.loads(Path(__file__).with_name("data").joinpath("two_recordings.json").read_bytes())
    c = map_contact(ctr_from_object(obj)).to_dict()
    assert c["recordings"] == [
        "bkt/connect/x/CallRecordings/ivr.wav",
        "bkt/connect/x/CallRecordings/agent.wav",
    ]
    assert c["recording_location"] == "bkt/connect/x/CallRecordings/agent.wav"  # ParticipantType AGENT
    assert "recording_media_unsupported" in c["flags"]  # the KVS entry is ignored and flagged


def test_date_and_time_are_utc_of_the_same_instant() -> None:
    obj = orjson.loads(Path(__file__).with_name("data").joinpath("two_recordings.json").read_bytes())
    obj["Agent"]["ConnectedToAgentTimestamp"] = "2024-03-31T23:59:59.900-02:00"
    c = map_contact(ctr_from_object(obj)).to_dict()
    assert (c["date"], c["time"]) == ("2024-04-01", "01:59:59")
    assert c["connected_at"] == "2024-04-01T01:59:59.900Z"


def test_parse_ctr_bytes_equals_object_path(samples_dir: Path) -> None:
    raw = (samples_dir / "ctr/voicebase-quickstart-1.json").read_bytes()
    assert map_contact(parse_ctr(raw)) == map_contact(ctr_from_object(orjson.loads(raw)))
