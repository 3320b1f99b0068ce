"""Playback of uploaded screen recordings: download, authenticate, decrypt.

The plaintext MP4 is written to a temporary file next to the destination and renamed
only after the last chunk authenticated: a tampered or truncated upload never produces
a playable file.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from processor.adapters.screen_keys import ServerKey
from processor.core.envelope import decrypt_recording

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def split_location(location: str) -> tuple[str, str]:
    """``bucket/key`` -> (bucket, key)."""
    location = location.removeprefix("s3://")
    bucket, _, key = location.partition("/")
    if not bucket or not key:
        raise ValueError(f"not a bucket/key location: {location!r}")
    return bucket, key


def decrypt_to_file(source: BinaryIO, key: ServerKey, destination: Path) -> int:
    """Decrypt ``source`` into ``destination`` atomically; returns the plaintext size."""
    assert key.private_key is not None
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".qm-screen-", dir=destination.parent)
    written = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in decrypt_recording(source, key.private_key, expected_key_id=key.key_id):
                out.write(chunk)
                written += len(chunk)
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return written


def download_recording(s3: S3Client, location: str, key: ServerKey, destination: Path) -> int:
    """Fetch ``bucket/key`` to a temporary file (encrypted) and decrypt it to ``destination``."""
    bucket, object_key = split_location(location)
    with tempfile.TemporaryFile() as encrypted:
        s3.download_fileobj(bucket, object_key, encrypted)
        encrypted.seek(0)
        return decrypt_to_file(encrypted, key, destination)
