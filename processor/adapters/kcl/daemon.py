"""The KCL MultiLangDaemon: its properties, its jars and its Java process.

The daemon (Java) owns leases and checkpoints in DynamoDB and starts one Python record
processor per shard it holds, talking to it over the child's stdin/stdout. These
settings were needed against the embedded emulator and are harmless on AWS:

* ``retrievalMode = POLLING``: emulators have no SubscribeToShard (enhanced fan-out).
* ``-Daws.cborEnabled=false``: the Java SDK's default CBOR wire format is not served by
  moto (HTTP 500); JSON is. Only set when an endpoint override is configured.
* ``kinesisEndpoint`` comes from ``AWS_ENDPOINT_URL_KINESIS`` when set (kinesis-mock for
  resharding, while the lease table stays on the emulator's DynamoDB), else from
  ``AWS_ENDPOINT_URL``.
* ``metricsLevel = NONE``: no CloudWatch in the emulator (and our own metrics suffice).
* A stable ``workerId``: a worker restarted after ``kill -9`` owns the same leases and
  resumes in seconds; with a random id it waits for its old leases to expire and for
  the dead leader's lock (120 s in KCL 3.x).
* No ``timeoutInSeconds``: a record processor retries a failed batch in place for as long as
  it fails (:mod:`processor.adapters.kcl.record_processor`); with a timeout the daemon would
  ``halt()`` its JVM, every shard with it, when a retry outlasted it.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from processor.platform.exceptions import ConfigurationError
from processor.platform.settings import Settings

# The KCL's graceful shutdown often waits out its whole grace period after every record
# processor has already checkpointed and exited (a known race, amazon-kinesis-client #542,
# #1374); 5 s leaves room for an in-flight batch and keeps SIGTERM-to-exit under 10 s.
SHUTDOWN_GRACE_MS = 5000


def jars_dir(settings: Settings) -> Path:
    if settings.kcl_jars_dir:
        path = Path(settings.kcl_jars_dir)
    else:
        try:
            import amazon_kclpy
        except ImportError as exc:
            raise ConfigurationError("amazon_kclpy is not installed: run `make install`") from exc
        path = Path(amazon_kclpy.__file__).parent / "jars"
    jars = sorted(path.glob("*.jar")) if path.is_dir() else []
    if not any(j.name.startswith("amazon-kinesis-client-multilang") for j in jars):
        raise ConfigurationError(
            f"no KCL MultiLangDaemon jar in {path}: reinstall amazon_kclpy (`make install`) "
            "or set QM_KCL_JARS_DIR"
        )
    return path


@dataclass(frozen=True)
class KclApplication:
    """One KCL application: a stream, its lease table, and the Python processor it runs."""

    application_name: str
    stream_name: str
    processor_module: str  # run as `python -m <module>` for each shard
    worker_id: str


def properties(settings: Settings, app: KclApplication, executable: str) -> str:
    lines = {
        "executableName": executable,
        "streamName": app.stream_name,
        "applicationName": app.application_name,
        "workerId": app.worker_id,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "initialPositionInStream": settings.initial_position.value,
        "regionName": settings.aws_region,
        "retrievalMode": "POLLING",
        "metricsLevel": "NONE",
        "failoverTimeMillis": settings.kcl_failover_ms,
        "shardSyncIntervalMillis": settings.kcl_shard_sync_ms,
        "leaseAssignmentIntervalMillis": settings.kcl_lease_assignment_ms,
        "idleTimeBetweenReadsInMillis": settings.kcl_idle_between_reads_ms,
        "maxRecords": settings.kcl_max_records,
        "parentShardPollIntervalMillis": settings.kcl_parent_shard_poll_ms,
        "shutdownGraceMillis": SHUTDOWN_GRACE_MS,
        "cleanupLeasesUponShardCompletion": "true",
        "validateSequenceNumberBeforeCheckpointing": "true",
        # Empty GetRecords reach the processor too: its heartbeat and MillisBehindLatest stay current.
        "callProcessRecordsEvenForEmptyRecordList": "true",
    }
    kinesis_endpoint = settings.endpoint_for("kinesis")
    if kinesis_endpoint:
        lines["kinesisEndpoint"] = kinesis_endpoint
    if settings.aws_endpoint_url:
        lines["dynamoDBEndpoint"] = settings.aws_endpoint_url
    return "".join(f"{key} = {value}\n" for key, value in lines.items())


def processor_executable(module: str, state_dir: Path) -> str:
    """The command the daemon runs per shard. The KCL splits it on spaces, so a Python
    path with a space gets a small wrapper script instead."""
    command = f"{sys.executable} -m {module}"
    if " " not in sys.executable:
        return command
    wrapper = state_dir / f"{module.rsplit('.', 1)[-1]}.sh"
    wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m {module} "$@"\n')
    wrapper.chmod(0o755)
    if " " in str(wrapper):
        raise ConfigurationError(
            f"QM_STATE_DIR must not contain spaces (the KCL splits commands): {state_dir}"
        )
    return str(wrapper)


def java_command(settings: Settings, properties_file: Path) -> list[str]:
    classpath = f"{jars_dir(settings)}/*"
    command = [settings.java, "-Xss1m", "-XX:+UseSerialGC", "-Xmx384m"]
    if settings.aws_endpoint_url or settings.aws_endpoint_url_kinesis:
        command.append("-Daws.cborEnabled=false")
    command += [
        "-cp",
        classpath,
        "software.amazon.kinesis.multilang.MultiLangDaemon",
        "--properties-file",
        str(properties_file),
    ]
    return command


def child_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["AWS_REGION"] = settings.aws_region
    if settings.aws_endpoint_url_kinesis:
        env["AWS_ENDPOINT_URL_KINESIS"] = settings.aws_endpoint_url_kinesis
    if settings.aws_endpoint_url or settings.aws_endpoint_url_kinesis:
        if settings.aws_endpoint_url:
            env["AWS_ENDPOINT_URL"] = settings.aws_endpoint_url
        # The Java SDK's default chain needs credentials even for an emulator.
        env.setdefault("AWS_ACCESS_KEY_ID", "test")
        env.setdefault("AWS_SECRET_ACCESS_KEY", "test")
        env["CBOR_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env
