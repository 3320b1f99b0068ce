"""Connect's storage configuration judged against a deployment (doctor's Connect check).

The emulator serves no Connect API: the responses below have the shape of
``ListInstanceStorageConfigs`` in the Amazon Connect API reference."""

from __future__ import annotations

from processor.core.connect_storage import AGENT_EVENTS, CALL_RECORDINGS, CTRS, Expected, judge

EXPECTED = Expected(
    ctr_stream="qm-ctr",
    agent_event_stream="qm-agent-events",
    recordings_buckets=frozenset({"acme-connect-recordings"}),
    recordings_key_prefix="connect/*/CallRecordings",
)


def stream(name: str) -> dict:
    return {
        "AssociationId": "0f5a3c1e-1111-4d7e-9a2b-5b1c3d4e5f60",
        "StorageType": "KINESIS_STREAM",
        "KinesisStreamConfig": {"StreamArn": f"arn:aws:kinesis:us-east-1:123456789012:stream/{name}"},
    }


def recordings(bucket: str, prefix: str) -> dict:
    return {
        "AssociationId": "9a8b7c6d-2222-4e5f-8a9b-0c1d2e3f4a5b",
        "StorageType": "S3",
        "S3Config": {
            "BucketName": bucket,
            "BucketPrefix": prefix,
            "EncryptionConfig": {
                "EncryptionType": "KMS",
                "KeyId": "arn:aws:kms:us-east-1:123456789012:key/x",
            },
        },
    }


def test_an_instance_pointed_at_the_deployment_passes() -> None:
    configs = {
        CTRS: [stream("qm-ctr")],
        AGENT_EVENTS: [stream("qm-agent-events")],
        CALL_RECORDINGS: [recordings("acme-connect-recordings", "connect/acme-centre/CallRecordings")],
    }
    verdicts = judge(configs, EXPECTED, "inst-1")
    assert [(v.resource_type, v.ok) for v in verdicts] == [
        (CTRS, True),
        (AGENT_EVENTS, True),
        (CALL_RECORDINGS, True),
    ]


def test_each_wrong_or_missing_association_says_what_to_run() -> None:
    configs = {
        CTRS: [stream("someone-elses-ctr")],
        CALL_RECORDINGS: [recordings("acme-connect-recordings", "recordings/acme")],
    }
    verdicts = {v.resource_type: v for v in judge(configs, EXPECTED, "inst-1")}
    assert not any(v.ok for v in verdicts.values())
    assert "someone-elses-ctr" in verdicts[CTRS].detail and "qm-ctr" in verdicts[CTRS].detail
    assert "nothing" in verdicts[AGENT_EVENTS].detail
    assert "--instance-id inst-1 --resource-type AGENT_EVENTS" in verdicts[AGENT_EVENTS].fix
    assert "recordings/acme" in verdicts[CALL_RECORDINGS].detail
    assert verdicts[CALL_RECORDINGS].fix.startswith("aws connect associate-instance-storage-config")


def test_recordings_in_another_bucket_or_a_deeper_prefix_are_not_read() -> None:
    for bucket, prefix in (
        ("other-bucket", "connect/acme/CallRecordings"),
        ("acme-connect-recordings", "connect/a/b/CallRecordings"),
    ):
        configs = {CALL_RECORDINGS: [recordings(bucket, prefix)]}
        (verdict,) = [v for v in judge(configs, EXPECTED, "i") if v.resource_type == CALL_RECORDINGS]
        assert not verdict.ok, (bucket, prefix)


def test_follow_mode_wants_ctrs_through_firehose() -> None:
    firehose = {
        "AssociationId": "a",
        "StorageType": "KINESIS_FIREHOSE",
        "KinesisFirehoseConfig": {
            "FirehoseArn": "arn:aws:firehose:us-east-1:123456789012:deliverystream/ctr"
        },
    }
    expected = Expected(**{**EXPECTED.__dict__, "ctrs_through_firehose": True})
    (ok,) = [v for v in judge({CTRS: [firehose]}, expected, "i") if v.resource_type == CTRS]
    (missing,) = [v for v in judge({CTRS: [stream("qm-ctr")]}, expected, "i") if v.resource_type == CTRS]
    assert ok.ok and not missing.ok
