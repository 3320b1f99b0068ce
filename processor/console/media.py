"""Media the console streams: call recordings (S3, ranged reads) and screen recordings.

Screen recordings sit behind :class:`ScreenSource`, a small interface returning the
decrypted MP4 of a contact as a random-access :class:`Media`. :class:`S3ScreenSource`
serves an unencrypted MP4 straight from S3; :class:`DecryptingScreenSource` takes the
server-side decrypt function of the encrypted upload format and keeps recently decrypted
videos in a bounded memory cache, so that seeking (many range requests) decrypts once.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from processor.core.recorded_parties import PartiesReport, recorded_parties
from processor.core.wav import WavHeaderError, read_wav_info

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

STREAM_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Media:
    size: int
    content_type: str
    #: Bytes ``start..end`` (inclusive) as chunks.
    stream: Callable[[int, int], Iterator[bytes]]


class ScreenSource(Protocol):
    def open(self, contact: Mapping[str, Any]) -> Media | None:
        """The contact's screen recording as a playable MP4, or None when it has none."""
        ...


def split_location(location: str) -> tuple[str, str]:
    """``bucket/key`` (the CTR's ``Recording.Location`` form, optionally ``s3://``)."""
    bucket, _, key = location.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ValueError(f"not a bucket/key location: {location!r}")
    return bucket, key


class S3Objects:
    """Ranged reads of S3 objects, never a whole-object download for a range."""

    def __init__(self, s3: S3Client) -> None:
        self._s3 = s3

    def head(self, bucket: str, key: str) -> tuple[int, str] | None:
        try:
            response = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound", "403"):
                return None
            raise
        return int(response["ContentLength"]), str(response.get("ETag", ""))

    def read(self, bucket: str, key: str, offset: int, length: int) -> bytes:
        if length <= 0:
            return b""
        response = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={offset}-{offset + length - 1}")
        return response["Body"].read()

    def stream(self, bucket: str, key: str, start: int, end: int) -> Iterator[bytes]:
        response = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}")
        body = response["Body"]
        try:
            yield from body.iter_chunks(STREAM_CHUNK)
        finally:
            body.close()

    def media(self, location: str, content_type: str) -> Media | None:
        bucket, key = split_location(location)
        found = self.head(bucket, key)
        if found is None:
            return None
        return Media(found[0], content_type, lambda start, end: self.stream(bucket, key, start, end))


class RecordingInspector:
    """Recorded parties of a contact's call recording (a dozen 4 KiB reads), cached by ETag."""

    def __init__(self, objects: S3Objects, max_entries: int = 4096) -> None:
        self._objects = objects
        self._cache: OrderedDict[tuple[str, str], PartiesReport] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()
        #: Bytes read from S3 by the last inspection (observability and tests).
        self.last_bytes_read = 0

    def parties(self, location: str) -> PartiesReport | None:
        bucket, key = split_location(location)
        found = self.head(bucket, key)
        if found is None:
            return None
        size, etag = found
        with self._lock:
            cached = self._cache.get((location, etag))
        if cached is not None:
            return cached
        counted = 0

        def read(offset: int, length: int) -> bytes:
            nonlocal counted
            data = self._objects.read(bucket, key, offset, length)
            counted += len(data)
            return data

        try:
            info = read_wav_info(read, size)
        except WavHeaderError:
            return None
        report = recorded_parties(read, info)
        self.last_bytes_read = counted
        with self._lock:
            self._cache[(location, etag)] = report
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return report

    def head(self, bucket: str, key: str) -> tuple[int, str] | None:
        return self._objects.head(bucket, key)


class S3ScreenSource:
    """Screen recordings stored as plain MP4 at the contact's ``screen_recording_location``."""

    def __init__(self, objects: S3Objects) -> None:
        self._objects = objects

    def open(self, contact: Mapping[str, Any]) -> Media | None:
        location = contact.get("screen_recording_location")
        if not isinstance(location, str) or not location:
            return None
        return self._objects.media(location, "video/mp4")


class DecryptingScreenSource:
    """Screen recordings uploaded encrypted: ``decrypt(encrypted bytes) -> MP4 bytes``."""

    def __init__(
        self,
        objects: S3Objects,
        s3: S3Client,
        decrypt: Callable[[bytes], bytes],
        cache_bytes: int = 512 << 20,
    ) -> None:
        self._objects = objects
        self._s3 = s3
        self._decrypt = decrypt
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()

    def _plain(self, location: str) -> bytes | None:
        bucket, key = split_location(location)
        found = self._objects.head(bucket, key)
        if found is None:
            return None
        cache_key = (location, found[1])
        with self._lock:
            if cache_key in self._cache:
                self._cache.move_to_end(cache_key)
                return self._cache[cache_key]
        encrypted = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        plain = self._decrypt(encrypted)
        with self._lock:
            self._cache[cache_key] = plain
            while sum(len(v) for v in self._cache.values()) > self._cache_bytes and len(self._cache) > 1:
                self._cache.popitem(last=False)
        return plain

    def open(self, contact: Mapping[str, Any]) -> Media | None:
        location = contact.get("screen_recording_location")
        if not isinstance(location, str) or not location:
            return None
        plain = self._plain(location)
        if plain is None:
            return None

        def stream(start: int, end: int) -> Iterator[bytes]:
            for offset in range(start, end + 1, STREAM_CHUNK):
                yield plain[offset : min(offset + STREAM_CHUNK, end + 1)]

        return Media(len(plain), "video/mp4", stream)
