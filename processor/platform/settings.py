"""Settings of every qm-ingest command, read from the environment (and an optional file).

Every setting has a default that works against the embedded emulator, so a fresh clone
runs with no configuration; production overrides them with environment variables.
``CommonSettings`` holds what the server and qm-desktop both read; ``Settings`` adds the
server's, ``processor.desktop.desktop_settings.DesktopSettings`` the desktop's. The settings
tables in docs/settings.md are generated from them (``qm-ingest settings [--desktop]``).
"""

from __future__ import annotations

import difflib
import os
import socket
from collections.abc import Mapping
from datetime import tzinfo
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from processor.core.ctr import ANY_INSTANCE, AcceptedInstances
from processor.core.local_time import zone
from processor.core.recording_location import CONNECT_PREFIX, RecordingLocations
from processor.platform.exceptions import ConfigurationError


class InitialPosition(StrEnum):
    TRIM_HORIZON = "TRIM_HORIZON"
    LATEST = "LATEST"


class CtrSource(StrEnum):
    KINESIS = "kinesis"
    FIREHOSE_S3 = "firehose-s3"


class ConsoleRole(StrEnum):
    ADMINISTRATOR = "administrator"  # ACD configuration and users
    EVALUATOR = "evaluator"  # contacts and playback


class LogFormat(StrEnum):
    JSON = "json"
    CONSOLE = "console"


class ConsoleAccountSetting(BaseModel):
    """One console user as configured (``QM_CONSOLE_USERS``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._@-]+$")]
    roles: Annotated[list[ConsoleRole], Field(min_length=1)]
    password_hash: Annotated[SecretStr, Field(description="argon2id hash of the password")]
    reveal_numbers: bool = False

    @field_validator("password_hash")
    @classmethod
    def _is_argon2(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith("$argon2"):
            raise ValueError("password_hash must be an argon2 hash (qm-ingest console hash-password)")
        return value


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class CommonSettings(BaseSettings):
    """What the server and qm-desktop both read: AWS, the resources they share, logs.
    Environment variable names are given per field; a settings file (``QM_SETTINGS_FILE``)
    may hold the same names."""

    model_config = SettingsConfigDict(
        env_prefix="QM_",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
        frozen=True,
    )

    # --- AWS -------------------------------------------------------------------------
    aws_endpoint_url: Annotated[
        str | None,
        Field(
            validation_alias=_alias("AWS_ENDPOINT_URL"),
            description="Endpoint of every AWS service (emulator, LocalStack); unset = real AWS",
        ),
    ] = None
    aws_endpoint_url_kinesis: Annotated[
        str | None,
        Field(
            validation_alias=_alias("AWS_ENDPOINT_URL_KINESIS"),
            description="Endpoint of Kinesis alone (the service, its record processors and the KCL); "
            "e.g. kinesis-mock for resharding while the rest stays on the emulator; unset = AWS_ENDPOINT_URL",
        ),
    ] = None
    aws_region: Annotated[
        str,
        Field(validation_alias=_alias("AWS_REGION", "AWS_DEFAULT_REGION"), description="AWS region"),
    ] = "us-east-1"
    aws_max_attempts: Annotated[
        int, Field(ge=1, le=20, description="Attempts per AWS call (botocore standard retry mode)")
    ] = 8

    # --- resources the server and the desktops share ---------------------------------------
    screen_bucket: Annotated[
        str, Field(description="S3 bucket where desktops upload encrypted screen recordings")
    ] = "qm-screen-recordings"
    screen_results_queue: Annotated[
        str, Field(description="SQS queue on which desktops report screen-recording results")
    ] = "qm-screen-results"
    users_table: Annotated[str, Field(description="DynamoDB table of QM users")] = "qm-users"

    # --- logs ---------------------------------------------------------------------------
    log_level: Annotated[str, Field(description="DEBUG, INFO, WARNING or ERROR")] = "INFO"
    log_format: Annotated[LogFormat, Field(description="json (default, for machines) or console")] = (
        LogFormat.JSON
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file is named at construction time (not import time), and a named file that
        # does not exist is an error, not silently "no settings".
        path = os.environ.get(SETTINGS_FILE_ENV)
        if not path:
            return init_settings, env_settings, file_secret_settings
        if not Path(path).is_file():
            raise ConfigurationError(f"{SETTINGS_FILE_ENV}: {path} is not a readable file")
        dotenv = DotEnvSettingsSource(settings_cls, env_file=path, env_file_encoding="utf-8")
        # Environment variables win over the file.
        return init_settings, env_settings, dotenv, file_secret_settings

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"unknown log level {value!r}")
        return upper

    @field_validator("aws_endpoint_url", "aws_endpoint_url_kinesis")
    @classmethod
    def _endpoint_is_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    def endpoint_for(self, service: str) -> str | None:
        """The endpoint of one AWS service: its own override, else the common one."""
        if service == "kinesis" and self.aws_endpoint_url_kinesis:
            return self.aws_endpoint_url_kinesis
        return self.aws_endpoint_url


class Settings(CommonSettings):
    """Typed, validated settings of the server, the console and the operator commands."""

    # --- Amazon Connect ----------------------------------------------------------------
    instance_arn: Annotated[
        str | None,
        Field(
            description="The Connect instance(s) whose CTRs and agent events are imported (ARNs,"
            " comma-separated; 'any' = every instance, on purpose); with the console's instance,"
            " at least one is needed for run"
        ),
    ] = None

    # --- resources ---------------------------------------------------------------------
    ctr_stream: Annotated[str, Field(description="Kinesis stream of Contact Trace Records")] = "qm-ctr"
    ctr_stream_shards: Annotated[
        int, Field(ge=1, le=500, description="Shards of the CTR stream (bootstrap)")
    ] = 2
    agent_event_stream: Annotated[str, Field(description="Kinesis stream of agent events")] = (
        "qm-agent-events"
    )
    output_stream: Annotated[
        str, Field(description="Kinesis stream that receives every new QM contact version")
    ] = "qm-contacts"
    recordings_bucket: Annotated[str, Field(description="S3 bucket of Amazon Connect call recordings")] = (
        "qm-recordings"
    )
    recordings_extra_buckets: Annotated[
        str,
        Field(
            description="Other S3 buckets whose call recordings CTRs may name (comma-separated, e.g. "
            "an instance's earlier bucket); a recording anywhere else is never read nor played"
        ),
    ] = ""
    recordings_key_prefix: Annotated[
        str,
        Field(
            description="Connect's key prefix of call recordings in those buckets (* = one path "
            "segment, the instance alias): keys are PREFIX/YYYY/MM/DD/CONTACTID_YYYYMMDDTHH:MM_UTC.wav"
        ),
    ] = CONNECT_PREFIX
    recordings_queue: Annotated[
        str, Field(description="SQS queue fed by the bucket's ObjectCreated events")
    ] = "qm-recording-events"
    recordings_copy: Annotated[
        bool,
        Field(
            description="Keep QM's own copy of every call recording (server-side copy into the "
            "recording copies bucket when its contact is joined; played from there). Off for centres "
            "that keep Connect's bucket as the archive"
        ),
    ] = True
    recordings_copy_bucket: Annotated[
        str,
        Field(description="S3 bucket of QM's copies of call recordings (same keys as in Connect's bucket)"),
    ] = "qm-recording-copies"
    recordings_copy_retention_days: Annotated[
        int,
        Field(
            ge=0,
            le=36500,
            description="Days QM keeps its copy of a call recording (the copies bucket's lifecycle "
            "rule; 0 = until deleted)",
        ),
    ] = 0
    contacts_table: Annotated[str, Field(description="DynamoDB table of imported QM contacts")] = (
        "qm-contacts"
    )
    quarantine_table: Annotated[str, Field(description="DynamoDB table of quarantined input")] = (
        "qm-quarantine"
    )
    quarantine_bucket: Annotated[
        str, Field(description="S3 bucket for quarantined payloads too large for a table item")
    ] = "qm-ingest-quarantine"
    join_table: Annotated[str, Field(description="DynamoDB table of the CTR/recording join")] = "qm-join"
    config_table: Annotated[
        str,
        Field(
            description="DynamoDB table of the runtime ACD configuration (console's ACD Configuration page)"
        ),
    ] = "qm-config"
    archive_bucket: Annotated[
        str,
        Field(description="S3 bucket where Kinesis Firehose writes CTRs (under YYYY/MM/DD/HH/ folders)"),
    ] = "qm-ctr-archive"
    archive_prefix: Annotated[
        str,
        Field(
            description="Folder of the Firehose objects in QM_ARCHIVE_BUCKET (Firehose's S3 prefix; "
            "empty = the bucket's root)"
        ),
    ] = ""
    archive_queue: Annotated[
        str,
        Field(description="SQS queue fed by the archive bucket's ObjectCreated events (follow mode)"),
    ] = "qm-ctr-archive-events"
    archive_cursor_table: Annotated[
        str,
        Field(
            description="DynamoDB table of the Firehose objects already imported (backfill and "
            "follow mode skip them)"
        ),
    ] = "qm-archive-cursor"

    # --- screen recording (server side) -----------------------------------------------------
    agent_application_name: Annotated[
        str, Field(description="KCL application name of the agent-event consumer (also its lease table)")
    ] = "qm-ingest-agent-events"
    screen_upload_url_days: Annotated[
        int,
        Field(
            ge=1, le=7, description="Validity of the pre-signed upload URL in extract_screen (SigV4: <= 7)"
        ),
    ] = 7
    commands_table: Annotated[
        str, Field(description="DynamoDB table of commands published to desktops (and their results)")
    ] = "qm-commands"
    agents_table: Annotated[
        str, Field(description="DynamoDB table of per-agent recording state and release watermark")
    ] = "qm-agents"
    results_consumers: Annotated[
        int, Field(ge=0, le=16, description="Threads receiving desktop results (0 = off)")
    ] = 1
    release_interval_seconds: Annotated[
        float, Field(gt=0, le=86400, description="How often release_segments_before is recomputed per agent")
    ] = 60.0
    recording_guard_seconds: Annotated[
        float,
        Field(
            gt=0,
            le=3600,
            description="How often recordings that RTE or a user's setting no longer allows are stopped",
        ),
    ] = 10.0
    release_slack_seconds: Annotated[
        int, Field(ge=0, le=86400, description="Extra margin before a segment may be released (clock skew)")
    ] = 300
    screen_private_key_file: Annotated[
        str | None,
        Field(
            description="RSA-2048 private key that opens uploaded screen recordings (`qm-ingest keys "
            "generate`); unset = <QM_STATE_DIR>/screen-private-key.pem"
        ),
    ] = None

    # --- KCL ---------------------------------------------------------------------------
    application_name: Annotated[
        str, Field(description="KCL application name of the CTR consumer (also its lease table)")
    ] = "qm-ingest-ctr"
    worker_id: Annotated[
        str | None,
        Field(
            description="KCL worker id; unset = '<hostname>-<slot>', stable across restarts so a "
            "restarted worker takes its own leases back at once"
        ),
    ] = None
    initial_position: Annotated[
        InitialPosition, Field(description="Where a new lease starts reading: TRIM_HORIZON or LATEST")
    ] = InitialPosition.TRIM_HORIZON
    kcl_jars_dir: Annotated[
        str | None, Field(description="Folder of the KCL jars; unset = the jars installed with amazon_kclpy")
    ] = None
    java: Annotated[str, Field(description="Java 17+ executable that runs the KCL MultiLangDaemon")] = "java"
    kcl_failover_ms: Annotated[int, Field(ge=1000, description="KCL failoverTimeMillis (lease expiry)")] = (
        10000
    )
    kcl_shard_sync_ms: Annotated[int, Field(ge=1000, description="KCL shardSyncIntervalMillis")] = 60000
    kcl_lease_assignment_ms: Annotated[
        int, Field(ge=500, description="KCL leaseAssignmentIntervalMillis")
    ] = 10000
    kcl_idle_between_reads_ms: Annotated[
        int, Field(ge=200, description="KCL idleTimeBetweenReadsInMillis (5 GetRecords/s per shard max)")
    ] = 1000
    kcl_max_records: Annotated[int, Field(ge=1, le=10000, description="KCL maxRecords per GetRecords")] = 1000
    kcl_parent_shard_poll_ms: Annotated[
        int, Field(ge=100, description="KCL parentShardPollIntervalMillis")
    ] = 10000

    # --- processing ---------------------------------------------------------------------
    join_window_seconds: Annotated[
        int,
        Field(
            ge=1,
            le=7 * 24 * 3600,
            description="How long a CTR waits for its recording (and a recording for its CTR); "
            "the console's ACD configuration overrides it once saved",
        ),
    ] = 1800
    join_retention_hours: Annotated[
        int,
        Field(ge=1, le=24 * 365, description="How long join state is kept (table TTL) after its last change"),
    ] = 168
    sweep_interval_seconds: Annotated[
        float, Field(gt=0, le=3600, description="How often the sweeper closes due join windows")
    ] = 10.0
    duration_tolerance_seconds: Annotated[
        float, Field(ge=0, description="A recording may differ this much from the CTR's talk + hold time")
    ] = 5.0
    duration_tolerance_ratio: Annotated[
        float, Field(ge=0, le=1, description="... or this share of it, whichever is larger")
    ] = 0.05
    ctr_source: Annotated[
        CtrSource,
        Field(
            description="Where `run` reads CTRs: kinesis (the CTR stream, through the KCL) or firehose-s3 "
            "(new Firehose objects in QM_ARCHIVE_BUCKET, announced on QM_ARCHIVE_QUEUE)"
        ),
    ] = CtrSource.KINESIS
    archive_consumers: Annotated[
        int,
        Field(ge=1, le=64, description="Threads importing Firehose objects in follow mode (firehose-s3)"),
    ] = 2
    recording_consumers: Annotated[
        int, Field(ge=0, le=64, description="Threads receiving S3 recording notifications (0 = off)")
    ] = 2
    max_record_bytes: Annotated[
        int, Field(ge=1024, description="Records larger than this are quarantined (Kinesis maximum: 1 MiB)")
    ] = 1_048_576

    # --- operations ----------------------------------------------------------------------
    health_host: Annotated[
        str,
        Field(
            description="Address of the health and metrics endpoint of `run` (0.0.0.0 in the container image)"
        ),
    ] = "127.0.0.1"
    health_port: Annotated[
        int,
        Field(ge=0, le=65535, description="Port of /healthz, /readyz and /metrics in `run`; 0 = no endpoint"),
    ] = 8080
    replay_window_hours: Annotated[
        int,
        Field(
            ge=1,
            le=8760,
            description="How far back a replay must reach: doctor checks stream and queue retention "
            "against it",
        ),
    ] = 24
    ready_min_leases: Annotated[
        int,
        Field(
            ge=0, description="/readyz needs this many shard leases held by this worker (0: standby worker)"
        ),
    ] = 1
    ready_heartbeat_max_age_s: Annotated[
        int,
        Field(
            ge=5,
            description="/readyz: a record processor silent for longer than this is not running",
        ),
    ] = 120

    # --- local ---------------------------------------------------------------------------
    state_dir: Annotated[
        str, Field(description="Where local runs keep pid files, logs and generated KCL properties")
    ] = ".qm-local"

    audit_table: Annotated[
        str, Field(description="DynamoDB table of the console's audit log (changes, phone-number reveals)")
    ] = "qm-audit"

    # --- QM console -----------------------------------------------------------------------
    console_password: Annotated[
        SecretStr | None,
        Field(
            description="Password of the console user 'admin' (administrator and evaluator) when "
            "QM_CONSOLE_USERS is unset; hashed in memory, never printed"
        ),
    ] = None
    console_users: Annotated[
        list[ConsoleAccountSetting],
        Field(
            description='Console users as JSON: [{"username", "roles": ["administrator"|'
            '"evaluator"], "password_hash" (argon2id, from `qm-ingest console hash-password`), '
            '"reveal_numbers"}]'
        ),
    ] = []
    console_host: Annotated[str, Field(description="Address the console listens on")] = "127.0.0.1"
    console_port: Annotated[
        int,
        Field(ge=0, le=65535, description="Port of the console (0 = any free); /metrics of `run` uses 8080"),
    ] = 8081
    console_enabled: Annotated[
        bool, Field(description="Serve the console inside `qm-ingest run` as well")
    ] = False
    console_session_secret: Annotated[
        SecretStr | None,
        Field(
            description="Key that signs console session cookies (32+ characters); unset = a random key "
            "per process (sessions end at restart)"
        ),
    ] = None
    console_session_minutes: Annotated[
        int, Field(ge=5, le=24 * 60, description="Console sessions expire after this many minutes")
    ] = 480
    console_secure_cookies: Annotated[
        bool, Field(description="Mark console cookies Secure (set when served behind HTTPS)")
    ] = False
    console_page_size: Annotated[
        int, Field(ge=10, le=500, description="Contacts and users per console page")
    ] = 50
    users_sync_interval_minutes: Annotated[
        float,
        Field(
            ge=0,
            le=24 * 60,
            description="Sync QM users from Amazon Connect this often, in minutes, while the service"
            " runs (0 = only on demand: `users sync`, the console's Sync now)",
        ),
    ] = 0
    console_screen_max_mb: Annotated[
        int,
        Field(ge=1, le=5120, description="Largest screen recording the console decrypts and plays (MiB)"),
    ] = 256
    time_zone: Annotated[
        str,
        Field(
            description="The contact centre's time zone (IANA name): the Date and Time the console"
            " and contacts list show, and the days their filters mean (storage stays UTC)"
        ),
    ] = "UTC"

    @field_validator("console_session_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters")
        return value

    @field_validator("console_users")
    @classmethod
    def _unique_users(cls, value: list[ConsoleAccountSetting]) -> list[ConsoleAccountSetting]:
        names = [u.username for u in value]
        if len(names) != len(set(names)):
            raise ValueError("a username appears twice")
        return value

    @field_validator("time_zone")
    @classmethod
    def _time_zone_known(cls, value: str) -> str:
        zone(value)  # ValueError names the problem
        return value.strip()

    @property
    def zone(self) -> tzinfo:
        return zone(self.time_zone)

    @field_validator("instance_arn")
    @classmethod
    def _instance_arn_shape(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if value.strip().lower() == ANY_INSTANCE:
            return ANY_INSTANCE
        arns = [part.strip() for part in value.split(",") if part.strip()]
        for arn in arns:
            if not arn.startswith("arn:") or ":instance/" not in arn:
                raise ValueError(f"not an Amazon Connect instance ARN: {arn!r} (or 'any')")
        return ",".join(arns)

    @property
    def named_instance_arn(self) -> str | None:
        """The first instance this setting names (users are synced from it); None with 'any'."""
        if not self.instance_arn or self.instance_arn == ANY_INSTANCE:
            return None
        return self.instance_arn.split(",")[0]

    @field_validator("recordings_key_prefix")
    @classmethod
    def _key_prefix_shape(cls, value: str) -> str:
        RecordingLocations.of(["bucket"], value)  # raises ValueError on "", "a//b", ".."
        return value.strip().strip("/")

    @property
    def recording_locations(self) -> RecordingLocations:
        """Where call recordings may be read from: the recordings bucket(s), Connect's layout."""
        extra = [b for b in self.recordings_extra_buckets.split(",") if b.strip()]
        return RecordingLocations.of([self.recordings_bucket, *extra], self.recordings_key_prefix)

    @property
    def accepted_instances(self) -> AcceptedInstances:
        """The instances this setting names (the console's saved one comes on top)."""
        return AcceptedInstances.parse(self.instance_arn)

    def resolved_worker_id(self, slot: int = 1) -> str:
        return self.worker_id or f"{socket.gethostname()}-{slot}"


SETTINGS_FILE_ENV = "QM_SETTINGS_FILE"

#: QM_ variables that are not settings: the settings file, and what `run` passes to its children.
INTERNAL_VARIABLES = frozenset({SETTINGS_FILE_ENV, "QM_LOG_SOCKET", "QM_FAULT_KILL_AT", "QM_FAULT_MARKER"})

#: Every variable of qm-desktop's own settings (``DesktopSettings``, in the desktop extra) has
#: this prefix; the server does not read them, and they are not typos of its settings.
DESKTOP_PREFIX = "QM_DESKTOP_"

S = TypeVar("S", bound=CommonSettings)


def env_names(cls: type[CommonSettings] = Settings) -> set[str]:
    """Every environment variable that is a setting of ``cls``."""
    names: set[str] = set()
    for name, field in cls.model_fields.items():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(c) for c in alias.choices)
        else:
            names.add(f"QM_{name.upper()}")
    return names


def unknown_variables(environ: Mapping[str, str] | None = None) -> list[tuple[str, str | None]]:
    """``QM_`` variables that no server setting reads (typos), each with the closest real name;
    the desktop's (``QM_DESKTOP_*``) are not the server's to judge."""
    environ = os.environ if environ is None else environ
    known = env_names()
    out = []
    for key in sorted(environ):
        if not key.startswith("QM_") or key.startswith(DESKTOP_PREFIX):
            continue
        if key not in known and key not in INTERNAL_VARIABLES:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.75)
            out.append((key, close[0] if close else None))
    return out


def env_name(field_name: str, cls: type[CommonSettings] = Settings) -> str:
    """The environment variable of a setting of ``cls`` (its alias, or QM_<NAME>)."""
    field = cls.model_fields.get(field_name)
    alias = field.validation_alias if field else None
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0])
    return f"QM_{field_name.upper()}"


def load_settings(cls: type[S]) -> S:
    """Settings of ``cls`` from the environment (and the settings file). Raises
    ConfigurationError naming every offending environment variable."""
    from pydantic import ValidationError

    try:
        return cls()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = str(err["loc"][0]) if err["loc"] else ""
            name = loc if loc.isupper() else env_name(loc, cls) if loc else "settings"
            problems.append(f"{name}: {err['msg'].removeprefix('Value error, ')}")
        raise ConfigurationError("invalid settings: " + "; ".join(problems)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings of this process, validated once (see ``load_settings``)."""
    return load_settings(Settings)
