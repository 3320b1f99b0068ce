"""QM's own copy of each call recording: a server-side S3 copy from Connect's bucket into the
recording copies bucket, under the same key (nothing is downloaded).

Below :data:`MULTIPART_BYTES` one ``CopyObject``; above it (CopyObject stops at 5 GB) boto3's
managed copy, which copies the object in parts with ``UploadPartCopy``. A copy is idempotent
(the same source overwrites the same key with the same bytes), so a copy repeated after a
crash or a redelivery changes nothing.

What a later attempt can fix is raised: throttling, 5xx, the network, and a copies bucket
that is missing or refuses the service (a deployment's mistake, not the recording's; as for
the recordings bucket itself, the batch fails, ``/readyz`` says so, the notification stays in
the queue, and the copy is made once the cause is gone, instead of every contact losing its
copy while a permission is missing). What no attempt can fix, the recording's own refusal
(deleted since it was read, archived to a storage class that cannot be copied, too large),
is the outcome's ``error``: the contact is imported all the same and flagged
``recording_copy_failed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError

from processor.adapters.aws import is_transient
from processor.adapters.s3.call_recordings import split_location
from processor.platform.logs import get_logger

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

#: Objects up to this size are copied with one CopyObject (whose limit is 5 GB).
MULTIPART_BYTES = 1024 * 1024 * 1024
#: Part size of a multipart copy (S3: 5 MiB to 5 GiB, at most 10,000 parts).
PART_BYTES = 256 * 1024 * 1024

#: Refusals that come from the source recording itself: no later attempt will copy it.
RECORDING_REFUSALS = frozenset({"NoSuchKey", "404", "NotFound", "InvalidObjectState", "EntityTooLarge"})

log = get_logger("processor.recording_copy")


@dataclass(frozen=True)
class CopyOutcome:
    location: str | None  # "bucket/key" of the copy; None when it could not be made
    error: str | None = None  # the S3 error code that refused it


class RecordingCopier:
    def __init__(
        self,
        s3: S3Client,
        bucket: str,
        *,
        multipart_bytes: int = MULTIPART_BYTES,
        part_bytes: int = PART_BYTES,
    ) -> None:
        self._s3 = s3
        self.bucket = bucket
        self._multipart = multipart_bytes
        self._transfer = TransferConfig(
            multipart_threshold=multipart_bytes, multipart_chunksize=part_bytes, max_concurrency=4
        )

    def target(self, location: str) -> str:
        """Where QM keeps its copy of the recording at ``location``."""
        return f"{self.bucket}/{split_location(location)[1]}"

    def copy(self, location: str, size: int) -> CopyOutcome:
        bucket, key = split_location(location)
        source = {"Bucket": bucket, "Key": key}
        try:
            if size < self._multipart:
                self._s3.copy_object(Bucket=self.bucket, Key=key, CopySource=source)  # type: ignore[arg-type]
            else:
                self._s3.copy(source, self.bucket, key, Config=self._transfer)  # type: ignore[arg-type]
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code") or "Unknown")
            if is_transient(exc) or code not in RECORDING_REFUSALS:
                raise
            log.error(
                "call recording not copied; the contact is flagged recording_copy_failed",
                bucket=bucket[:63],
                target_bucket=self.bucket,
                error=code,
            )
            return CopyOutcome(None, code)
        return CopyOutcome(self.target(location))
