"""Media the console streams: call recordings (S3, ranged reads) and screen recordings.

Screen recordings sit behind :class:`ScreenSource`, a small interface returning the
decrypted MP4 of a contact as a random-access :class:`Media`. :class:`S3ScreenSource`
serves an unencrypted MP4 straight from S3; :class:`DecryptingScreenSource` decrypts an
encrypted upload once, as a stream, into a bounded file cache that seeking reads from.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from botocore.exceptions import ClientError

from processor.core.envelope import read_header
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


class RecordingTooLarge(Exception):
    """A screen recording larger than the console plays (``QM_CONSOLE_SCREEN_MAX_MB``)."""


class RecordingMismatch(Exception):
    """The upload a contact points at is another contact's (or another agent's) recording."""


class DecryptingScreenSource:
    """Screen recordings uploaded encrypted, played decrypted, with bounded memory.

    The upload is copied to a file as it downloads (refused beyond ``max_bytes``: a desktop can
    upload up to 5 GB to its pre-signed URL), decrypted chunk by chunk into a cache file
    (``decrypt_file(encrypted, destination)``, authenticated: a tampered chunk fails before it
    is written), and ranges are read from that file. Requests for the same recording that
    arrive together wait for one decryption; the cache directory is trimmed to
    ``cache_bytes``, oldest first.
    """

    def __init__(
        self,
        objects: S3Objects,
        s3: S3Client,
        decrypt_file: Callable[[BinaryIO, Path], int],
        cache_dir: Path,
        *,
        max_bytes: int = 256 << 20,
        cache_bytes: int = 2 << 30,
    ) -> None:
        self._objects = objects
        self._s3 = s3
        self._decrypt_file = decrypt_file
        self._dir = cache_dir
        self._max = max_bytes
        self._cache_bytes = cache_bytes
        self._lock = threading.Lock()
        self._busy: dict[str, threading.Lock] = {}
        self.decryptions = 0  # how many times an upload was decrypted (tests, metrics)

    def _plain(self, location: str, contact_id: str, agent: str | None) -> Path | None:
        bucket, key = split_location(location)
        found = self._objects.head(bucket, key)
        if found is None:
            return None
        size, etag = found
        if size > self._max:
            raise RecordingTooLarge(f"{size} bytes, more than the {self._max} the console plays")
        # Per contact: each contact's playback checks that the upload is that contact's.
        name = hashlib.sha256(f"{location}\n{etag}\n{contact_id}\n{agent}".encode()).hexdigest()[:32] + ".mp4"
        path = self._dir / name
        with self._lock:
            one = self._busy.setdefault(name, threading.Lock())
        with one:  # requests that arrive together share one decryption
            if path.exists():
                os.utime(path)  # recently used
                return path
            self._dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._dir) as encrypted:
                body = self._s3.get_object(Bucket=bucket, Key=key)["Body"]
                copied = 0
                for chunk in iter(lambda: body.read(STREAM_CHUNK), b""):
                    copied += len(chunk)
                    if copied > self._max:
                        raise RecordingTooLarge(f"more than the {self._max} bytes the console plays")
                    encrypted.write(chunk)
                encrypted.seek(0)
                metadata = read_header(encrypted).metadata  # authenticated with the content
                if metadata.get("contact_id") != contact_id or (agent and metadata.get("agent") != agent):
                    shown = str(metadata.get("contact_id"))[:64]
                    raise RecordingMismatch(f"the upload at {location} is a recording of contact {shown}")
                encrypted.seek(0)
                self._decrypt_file(encrypted, path)
                self.decryptions += 1
        with self._lock:
            self._busy.pop(name, None)
        self._trim(keep=path)
        return path

    def _trim(self, keep: Path) -> None:
        files = sorted(self._dir.glob("*.mp4"), key=lambda f: f.stat().st_mtime)
        total = sum(f.stat().st_size for f in files)
        for old in files:
            if total <= self._cache_bytes:
                break
            if old != keep:
                total -= old.stat().st_size
                old.unlink(missing_ok=True)

    def open(self, contact: Mapping[str, Any]) -> Media | None:
        location = contact.get("screen_recording_location")
        if not isinstance(location, str) or not location:
            return None
        agent = contact.get("acd_id")
        path = self._plain(
            location, str(contact.get("contact_id")), agent if isinstance(agent, str) else None
        )
        if path is None:
            return None

        def stream(start: int, end: int) -> Iterator[bytes]:
            with open(path, "rb") as plain:
                plain.seek(start)
                left = end + 1 - start
                while left > 0:
                    chunk = plain.read(min(STREAM_CHUNK, left))
                    if not chunk:
                        return
                    left -= len(chunk)
                    yield chunk

        return Media(path.stat().st_size, "video/mp4", stream)
