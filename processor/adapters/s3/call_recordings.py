"""Call recordings in S3: existence (HEAD), duration from the WAV header and the recorded
parties from the opening of the call (ranged GETs: one, two when the opening leaves a
channel silent; never the file)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from processor.adapters.aws import is_transient
from processor.core.join import duration_from_size
from processor.core.recorded_parties import OPENING_BYTES, PartiesReport, RecordedParties, import_parties
from processor.core.wav import FIRST_READ, WavHeaderError, WavInfo, read_wav_info
from processor.platform.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


#: Answers that mean "the object is not there (yet)": the recording is awaited until its
#: window closes. S3 answers 404 for a missing key only to a caller allowed s3:ListBucket;
#: without it a missing key answers 403 (``doctor`` checks which one the service gets).
ABSENT = frozenset({"404", "NoSuchKey", "NotFound"})

#: Answers that mean "this bucket cannot be read": a permission missing, a bucket deleted.
#: In a bucket of ours (the configured recordings bucket) that is the service's surroundings,
#: not the recording's absence: the error is raised, the batch fails and is read again once
#: the cause is gone (``/readyz``, ``qm_batch_failing_since_timestamp_seconds``), instead of
#: every contact turning ``recording_missing`` when its window closes. In any other bucket it
#: is the record that points somewhere unreadable: treated as absent.
UNREADABLE = frozenset({"403", "AccessDenied", "NoSuchBucket", "AllAccessDisabled", "InvalidBucketName"})

#: The probe's one ranged GET: the header and the opening of the call (the recorded parties).
PROBE_READ = OPENING_BYTES

log = get_logger("processor.media")


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str | None


@dataclass(frozen=True)
class Duration:
    seconds: float
    source: str  # "header": from the WAV header; "size": header unreadable, from the object size
    bytes_read: int
    #: Which parties the recording carries (``probe`` only; None from ``duration``).
    parties: PartiesReport | None = None


def split_location(location: str) -> tuple[str, str]:
    bucket, _, key = location.partition("/")
    return bucket, key


class S3Media:
    def __init__(self, s3: S3Client, own_buckets: Iterable[str] = ()) -> None:
        self._s3 = s3
        self._own = frozenset(own_buckets)
        self.bytes_read = 0  # running total, for metrics and the benchmark

    def _absent(self, bucket: str, exc: ClientError) -> bool:
        code = exc.response["Error"]["Code"]
        return code in ABSENT or (code in UNREADABLE and bucket not in self._own)

    def head(self, location: str) -> ObjectInfo | None:
        bucket, key = split_location(location)
        try:
            response = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if self._absent(bucket, exc):
                return None
            raise
        return ObjectInfo(
            size=int(response["ContentLength"]), etag=response.get("ETag", "").strip('"') or None
        )

    def probe(self, location: str) -> tuple[ObjectInfo, Duration] | None:
        """Existence, size, duration and recorded parties in one ranged GET of the first
        :data:`PROBE_READ` bytes (its Content-Range gives the size), and one more of the middle
        of the call only when that opening leaves a channel silent; None when the object is
        not there."""
        bucket, key = split_location(location)
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{PROBE_READ - 1}")
        except ClientError as exc:
            if self._absent(bucket, exc):
                return None
            raise
        first = response["Body"].read()
        total = response.get("ContentRange", "").rpartition("/")[2]
        size = int(total) if total.isdigit() else int(response.get("ContentLength", len(first)))
        info = ObjectInfo(size=size, etag=response.get("ETag", "").strip('"') or None)
        return info, self._duration(location, size, first)

    def duration(self, location: str, size: int) -> Duration:
        return self._duration(location, size, None)

    def _duration(self, location: str, size: int, first: bytes | None) -> Duration:
        """Duration from the header (``first``: the probe's first read; otherwise a ranged GET
        of the first 4 KiB, more only if the header is longer); never the whole file. Falls
        back to the size when unreadable. With ``first``, the recorded parties too."""
        bucket, key = split_location(location)

        def read_range(offset: int, end: int) -> bytes:
            return self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{end}")["Body"].read()

        result = measure(location, size, first, read_range)
        self.bytes_read += result.bytes_read
        return result


def measure(
    location: str, size: int, first: bytes | None, read_range: Callable[[int, int], bytes]
) -> Duration:
    """What :class:`S3Media` reads of a recording of ``size`` bytes (``first``: its opening,
    already read), with ``read_range(first byte, last byte)`` for ranged reads."""
    read_bytes = len(first) if first is not None else 0

    def read(offset: int, length: int) -> bytes:
        nonlocal read_bytes
        if offset >= size:
            return b""
        body = read_range(offset, min(offset + length, size) - 1)
        read_bytes += len(body)
        return body[:length]

    try:
        info = read_wav_info(read, size, first)
    except WavHeaderError as exc:
        parties = (
            PartiesReport(RecordedParties.UNKNOWN, None, None, 0, 0, f"unreadable header: {exc}")
            if first is not None
            else None
        )
        return Duration(duration_from_size(size), "size", read_bytes, parties)
    found = _parties(location, read, info, first) if first is not None else None
    return Duration(info.duration_seconds, "size" if info.size_from_object else "header", read_bytes, found)


def _parties(location: str, read: Callable[[int, int], bytes], info: WavInfo, first: bytes) -> PartiesReport:
    """The recorded parties; a recording that cannot say (odd format, a read refused or
    gone) is ``unknown`` and never fails the contact. Transient errors are raised (the
    probe is retried as a whole)."""
    try:
        return import_parties(read, info, first)
    except ClientError as exc:
        if is_transient(exc):
            raise
        code = exc.response["Error"]["Code"]
        log.warning("recorded parties unknown: confirming read refused", location=location, error=code)
        return PartiesReport(RecordedParties.UNKNOWN, None, None, 0, 0, f"confirming read: {code}")


__all__ = ["FIRST_READ", "PROBE_READ", "Duration", "ObjectInfo", "S3Media", "measure", "split_location"]
