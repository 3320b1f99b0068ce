"""Amazon Connect's data streaming and call recordings, as qm-ingest needs them (doctor).

An instance sends its CTRs and agent events to Kinesis and stores its call recordings in S3
(``aws connect associate-instance-storage-config``, docs/deploy.md). This reads what
``ListInstanceStorageConfigs`` answers for each resource type and says, per type, whether it
points at the resources qm-ingest reads. The emulator serves no Connect API, so this is
tested against the response shapes of the API reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CTRS = "CONTACT_TRACE_RECORDS"
AGENT_EVENTS = "AGENT_EVENTS"
CALL_RECORDINGS = "CALL_RECORDINGS"
RESOURCE_TYPES = (CTRS, AGENT_EVENTS, CALL_RECORDINGS)


@dataclass(frozen=True)
class Expected:
    ctr_stream: str
    agent_event_stream: str
    recordings_buckets: frozenset[str]
    #: Connect's key prefix with ``*`` for one path segment (the instance alias).
    recordings_key_prefix: str
    #: CTRs through Firehose to the archive (follow mode) rather than the stream.
    ctrs_through_firehose: bool = False


@dataclass(frozen=True)
class Verdict:
    resource_type: str
    ok: bool
    detail: str
    fix: str = ""


def _stream_name(arn: str) -> str:
    return arn.rsplit(":stream/", 1)[-1] if ":stream/" in arn else ""


def _prefix_pattern(prefix: str) -> re.Pattern[str]:
    parts = [("[^/]+" if part == "*" else re.escape(part)) for part in prefix.strip("/").split("/")]
    return re.compile("/".join(parts))


def _streams(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [
        _stream_name(str((c.get("KinesisStreamConfig") or {}).get("StreamArn", "")))
        for c in configs
        if c.get("StorageType") == "KINESIS_STREAM"
    ]


def judge(
    configs: Mapping[str, Sequence[Mapping[str, Any]]], expected: Expected, instance: str
) -> list[Verdict]:
    """One verdict per resource type from ``{resource type: StorageConfigs}``."""
    verdicts: list[Verdict] = []
    associate = f"aws connect associate-instance-storage-config --instance-id {instance} --resource-type"
    for resource_type, stream in ((CTRS, expected.ctr_stream), (AGENT_EVENTS, expected.agent_event_stream)):
        found = configs.get(resource_type, ())
        if resource_type == CTRS and expected.ctrs_through_firehose:
            firehoses = [c for c in found if c.get("StorageType") == "KINESIS_FIREHOSE"]
            verdicts.append(
                Verdict(resource_type, True, "streamed to Firehose (follow mode reads its archive)")
                if firehoses
                else Verdict(
                    resource_type,
                    False,
                    "not streamed to a Firehose delivery stream (QM_CTR_SOURCE=firehose-s3)",
                    f"{associate} {resource_type} --storage-config StorageType=KINESIS_FIREHOSE,...",
                )
            )
            continue
        names = _streams(found)
        if stream in names:
            verdicts.append(Verdict(resource_type, True, f"streamed to {stream}"))
        else:
            now = ", ".join(n or "?" for n in names) or "nothing"
            verdicts.append(
                Verdict(
                    resource_type,
                    False,
                    f"streamed to {now}, not to {stream}",
                    f"{associate} {resource_type} --storage-config "
                    f"'StorageType=KINESIS_STREAM,KinesisStreamConfig={{StreamArn=<arn of {stream}>}}'",
                )
            )
    pattern = _prefix_pattern(expected.recordings_key_prefix)
    stored = [
        c.get("S3Config") or {} for c in configs.get(CALL_RECORDINGS, ()) if c.get("StorageType") == "S3"
    ]
    good = [
        s
        for s in stored
        if s.get("BucketName") in expected.recordings_buckets
        and pattern.fullmatch(str(s.get("BucketPrefix", "")).strip("/"))
    ]
    if good:
        verdicts.append(
            Verdict(
                CALL_RECORDINGS, True, f"stored in {good[0]['BucketName']}/{good[0].get('BucketPrefix', '')}"
            )
        )
    else:
        now = ", ".join(f"{s.get('BucketName')}/{s.get('BucketPrefix', '')}" for s in stored) or "nowhere"
        verdicts.append(
            Verdict(
                CALL_RECORDINGS,
                False,
                f"stored in {now}, not in {'|'.join(sorted(expected.recordings_buckets))} "
                f"under {expected.recordings_key_prefix}",
                f"{associate} {CALL_RECORDINGS} --storage-config "
                "'StorageType=S3,S3Config={BucketName=<QM_RECORDINGS_BUCKET>,BucketPrefix=connect/<alias>/CallRecordings}'",
            )
        )
    return verdicts
