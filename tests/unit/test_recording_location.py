"""The pure check of recording locations: the configured buckets and Connect's key layout."""

from __future__ import annotations

import orjson
import pytest
from pydantic import ValidationError

from processor.core.ctr import ctr_from_object
from processor.core.mapping import map_contact
from processor.core.recording_location import (
    FLAG_LOCATION_REJECTED,
    FOREIGN_BUCKET,
    NOT_CONNECT_LAYOUT,
    OTHER_CONTACT,
    RecordingLocations,
    flagged,
)
from processor.platform.settings import Settings

CID = "3aec0dc9-2817-4b95-8b72-492c8f972493"
KEY = f"connect/my-connect-instance/CallRecordings/2019/01/02/{CID}_20190102T00:07_UTC.wav"
LOCATIONS = RecordingLocations.of(["awsconnect-bucket", "qm-recordings"])


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        (f"awsconnect-bucket/{KEY}", None),
        (f"qm-recordings/{KEY}", None),
        (f"qm-recordings/{KEY.replace('T00:07_UTC', 'T00:07:15_UTC')}", None),
        (f"qm-ctr-archive/{KEY}", FOREIGN_BUCKET),
        (f"qm-ingest-quarantine/{KEY}", FOREIGN_BUCKET),
        (f"awsconnect-bucket.evil/{KEY}", FOREIGN_BUCKET),
        (f"s3://awsconnect-bucket/{KEY}", FOREIGN_BUCKET),
        ("awsconnect-bucket", FOREIGN_BUCKET),
        (KEY, FOREIGN_BUCKET),
        ("awsconnect-bucket/exports/all-calls.wav", NOT_CONNECT_LAYOUT),
        (f"awsconnect-bucket/connect/x/Analysis/2019/01/02/{CID}_20190102T00:07_UTC.wav", NOT_CONNECT_LAYOUT),
        (
            f"awsconnect-bucket/connect/../CallRecordings/2019/01/02/{CID}_20190102T00:07_UTC.wav",
            NOT_CONNECT_LAYOUT,
        ),
        (
            f"awsconnect-bucket/connect/x/y/CallRecordings/2019/01/02/{CID}_20190102T00:07_UTC.wav",
            NOT_CONNECT_LAYOUT,
        ),
        (
            f"awsconnect-bucket/connect/x/CallRecordings/2019/13/02/{CID}_20190102T00:07_UTC.wav",
            NOT_CONNECT_LAYOUT,
        ),
        (
            f"awsconnect-bucket/connect/x/CallRecordings/2019/01/02/{CID}_20190102T00:07_UTC.mp4",
            NOT_CONNECT_LAYOUT,
        ),
        (f"awsconnect-bucket/connect/x/CallRecordings/2019/01/02/{CID}.wav", NOT_CONNECT_LAYOUT),
        (f"awsconnect-bucket/{KEY}/", NOT_CONNECT_LAYOUT),
        (f"awsconnect-bucket/{KEY.replace(CID, 'another-contact')}", OTHER_CONTACT),
    ],
)
def test_a_location_is_the_configured_bucket_and_connect_s_layout_for_this_contact(
    location: str, reason: str | None
) -> None:
    rejection = LOCATIONS.check(location, CID)
    assert (rejection.reason if rejection else None) == reason


def test_an_object_seen_without_its_ctr_is_checked_for_the_layout_alone() -> None:
    assert LOCATIONS.check(f"qm-recordings/{KEY.replace(CID, 'anyone')}", None) is None
    assert LOCATIONS.bucket_allowed(f"qm-recordings/{KEY}")
    assert not LOCATIONS.bucket_allowed(f"qm-ctr-archive/{KEY}")
    assert not LOCATIONS.bucket_allowed("qm-recordings/")


def test_the_samples_recording_keys_follow_the_layout(samples_dir) -> None:  # type: ignore[no-untyped-def]
    """The product's own samples (Connect CTRs found in public repositories) pass as they are
    once their bucket is the configured one."""
    seen = 0
    for path in sorted((samples_dir / "ctr").glob("*.json")):
        doc = orjson.loads(path.read_bytes())
        for obj in doc if isinstance(doc, list) else [doc]:
            if not isinstance(obj, dict) or "ContactId" not in obj:
                continue
            record = ctr_from_object(obj)
            for ref in record.recordings:
                if (ref.storage_type or "S3") != "S3" or not ref.location:
                    continue
                bucket = ref.location.partition("/")[0]
                assert RecordingLocations.of([bucket]).check(ref.location, record.contact_id) is None
                assert (
                    RecordingLocations.of(["qm-recordings"]).check(ref.location, record.contact_id)
                    is not None
                )
                seen += 1
    assert seen >= 2


def test_screen_takes_the_rejected_recordings_out_and_the_contact_is_flagged() -> None:
    good = f"qm-recordings/{KEY}"
    obj = {
        "ContactId": CID,
        "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
        "InitiationMethod": "INBOUND",
        "LastUpdateTimestamp": "2019-01-02T00:10:00Z",
        "Recording": {"Location": f"qm-ctr-archive/{KEY}", "Type": "AUDIO"},
        "Recordings": [
            {"Location": good, "StorageType": "S3", "ParticipantType": "AGENT"},
            {"Location": "arn:aws:kinesisvideo:us-east-1:1:stream/x", "StorageType": "KINESIS_VIDEO_STREAM"},
        ],
    }
    record = ctr_from_object(obj)
    kept, rejected = LOCATIONS.screen(record)
    assert [r.reason for r in rejected] == [FOREIGN_BUCKET]
    assert [r.location for r in kept.recordings] == [good, "arn:aws:kinesisvideo:us-east-1:1:stream/x"]
    contact = flagged(map_contact(kept), rejected)
    assert contact.recordings == (good,) and contact.recording_location == good
    assert FLAG_LOCATION_REJECTED in contact.flags
    assert flagged(map_contact(record), ()) == map_contact(record)
    # Nothing to reject: the very same record.
    assert LOCATIONS.screen(kept) == (kept, ())


def test_a_custom_prefix_is_connect_s_storage_prefix() -> None:
    custom = RecordingLocations.of(["b"], "/recordings/voice/")
    assert custom.check(f"b/recordings/voice/2019/01/02/{CID}_20190102T00:07_UTC.wav", CID) is None
    assert custom.check(f"b/{KEY}", CID) is not None


def test_the_settings_name_the_buckets_and_the_prefix() -> None:
    settings = Settings(recordings_bucket="main", recordings_extra_buckets=" old , ,older")
    assert settings.recording_locations.buckets == frozenset({"main", "old", "older"})
    assert Settings().recording_locations.prefix == ("connect", "*", "CallRecordings")
    for bad in ("connect//CallRecordings", "connect/../x", "  "):
        with pytest.raises(ValidationError):
            Settings(recordings_key_prefix=bad)
