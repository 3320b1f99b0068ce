"""boto3 clients for every AWS call, configured once from the settings.

The same code talks to AWS, LocalStack and the embedded emulator; only the endpoint
(``AWS_ENDPOINT_URL``; ``AWS_ENDPOINT_URL_KINESIS`` for Kinesis alone) differs. Retries
use botocore's *standard* mode (exponential backoff with jitter, throttling and 5xx
retried, client errors not).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from processor.platform.settings import CommonSettings

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

# Dummy credentials for emulators; real AWS uses the normal credential chain.
_EMULATOR_CREDENTIALS = {"aws_access_key_id": "test", "aws_secret_access_key": "test"}

TRANSIENT_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "RequestLimitExceeded",
        "LimitExceededException",
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "InternalError",
        "SlowDown",
        "KMSThrottlingException",
        "TransactionInProgressException",
    }
)

#: One output-stream put lasts at most this long (connect + read); see ``kinesis_output``.
OUTPUT_CONNECT_TIMEOUT_S = 3
OUTPUT_READ_TIMEOUT_S = 7
OUTPUT_PUT_MAX_S = OUTPUT_CONNECT_TIMEOUT_S + OUTPUT_READ_TIMEOUT_S

NETWORK_ERRORS = (EndpointConnectionError, ConnectionClosedError, ConnectTimeoutError, ReadTimeoutError)


def is_transient(exc: BaseException) -> bool:
    """True for errors that a later attempt can fix: throttling, 5xx, network."""
    if isinstance(exc, NETWORK_ERRORS):
        return True
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return code in TRANSIENT_ERROR_CODES or status >= 500
    return isinstance(exc, ConnectionError | TimeoutError)


#: AWS errors that one record's content can cause (an item over DynamoDB's 400 KB, a value a
#: service refuses): the record is set aside, the shard moves on.
RECORD_ERROR_CODES = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})


def fails_the_batch(exc: BaseException) -> bool:
    """True when a failure is not the record's fault but the service's surroundings: throttled,
    unreachable, access denied, a table or bucket missing, bad credentials. The batch fails
    and is read again from the last checkpoint once the cause is gone; quarantining the record
    instead would move every contact into quarantine while, say, a permission is missing."""
    if is_transient(exc):
        return True
    if isinstance(exc, ClientError):
        return error_code(exc) not in RECORD_ERROR_CODES
    return isinstance(exc, BotoCoreError)


def error_code(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return type(exc).__name__


@dataclass
class AwsClients:
    """Lazily built boto3 clients sharing one session and one retry policy."""

    settings: CommonSettings
    #: Seconds to connect and to wait for an answer; probes that must answer quickly use less.
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    _session: boto3.session.Session = field(init=False, repr=False)

    def __post_init__(self) -> None:
        kwargs: dict[str, Any] = {"region_name": self.settings.aws_region}
        emulated = self.settings.aws_endpoint_url or self.settings.aws_endpoint_url_kinesis
        if emulated and not _has_credentials():
            kwargs.update(_EMULATOR_CREDENTIALS)
        self._session = boto3.session.Session(**kwargs)

    def _config(self, **extra: Any) -> Config:
        options: dict[str, Any] = {
            # botocore's "max_attempts" counts retries; "total_max_attempts" counts attempts,
            # which is what QM_AWS_MAX_ATTEMPTS means.
            "retries": {"mode": "standard", "total_max_attempts": self.settings.aws_max_attempts},
            "connect_timeout": self.connect_timeout,
            "read_timeout": self.read_timeout,
            "max_pool_connections": 32,
        }
        options.update(extra)
        return Config(**options)

    def client(self, service: str, **extra: Any) -> Any:
        return self._session.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.settings.endpoint_for(service),
            config=self._config(**extra),
        )

    @cached_property
    def kinesis(self) -> KinesisClient:
        return self.client("kinesis")  # type: ignore[no-any-return]

    @cached_property
    def kinesis_output(self) -> KinesisClient:
        """For the output stream's puts: one attempt each, bounded in time, so that the
        emitter knows when an attempt can no longer land (its claim's lease depends on it).
        No retry inside botocore: a put whose answer is lost may have landed, and only the
        emitter's read-back of the shard can tell (a retry here put such records twice)."""
        return self.client(  # type: ignore[no-any-return]
            "kinesis",
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=OUTPUT_CONNECT_TIMEOUT_S,
            read_timeout=OUTPUT_READ_TIMEOUT_S,
        )

    @cached_property
    def dynamodb(self) -> DynamoDBClient:
        return self.client("dynamodb")  # type: ignore[no-any-return]

    @cached_property
    def s3(self) -> S3Client:
        # Path-style addressing: emulators serve every bucket on one host name.
        style = "path" if self.settings.aws_endpoint_url else "auto"
        return self.client("s3", s3={"addressing_style": style})  # type: ignore[no-any-return]

    @cached_property
    def sqs(self) -> SQSClient:
        return self.client("sqs")  # type: ignore[no-any-return]


def _has_credentials() -> bool:
    return bool(os.environ.get("AWS_ACCESS_KEY_ID") or os.environ.get("AWS_PROFILE"))
