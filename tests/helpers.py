"""Test helpers that drive the real service as users run it (a child process)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: KCL timings for tests: quick lease assignment and reads (production keeps the defaults).
FAST_KCL = {
    "QM_KCL_LEASE_ASSIGNMENT_MS": "1000",
    "QM_KCL_SHARD_SYNC_MS": "5000",
    "QM_KCL_IDLE_BETWEEN_READS_MS": "250",
    "QM_KCL_PARENT_SHARD_POLL_MS": "1000",
    "QM_KCL_FAILOVER_MS": "10000",
}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


#: The KCL's lease table, as the KCL creates it (3.x): leases by shard, and the owner index.
_LEASE_TABLE: dict[str, Any] = {
    "KeySchema": [{"AttributeName": "leaseKey", "KeyType": "HASH"}],
    "AttributeDefinitions": [
        {"AttributeName": "leaseKey", "AttributeType": "S"},
        {"AttributeName": "leaseOwner", "AttributeType": "S"},
    ],
    "GlobalSecondaryIndexes": [
        {
            "IndexName": "LeaseOwnerToLeaseKeyIndex",
            "KeySchema": [
                {"AttributeName": "leaseOwner", "KeyType": "HASH"},
                {"AttributeName": "leaseKey", "KeyType": "RANGE"},
            ],
            "Projection": {"ProjectionType": "KEYS_ONLY"},
        }
    ],
    "BillingMode": "PAY_PER_REQUEST",
}


def prime_kcl_leases(env: dict[str, str]) -> None:
    """Write the leases the KCL's first shard sync would write, before a service's first start.

    On a new application the KCL (3.x, ``Scheduler.shouldInitiateLeaseSync``) waits a random
    1-30 s while its lease table stays empty, so that workers starting together do not all
    sync shards (21-29 s in the runs measured here, at every test's first start). With the
    table already holding one unowned lease per open shard at the initial position (the items
    the KCL itself creates: tests/e2e/test_kcl_pipeline.py compares them), a service starts
    as it does on every later start: leases exist, the KCL assigns and reads them. Only plain
    streams are primed (every shard open, no parents, TRIM_HORIZON or LATEST, the embedded
    emulator); anything else starts as a new application does."""
    import boto3
    from botocore.exceptions import ClientError

    from processor.platform.settings import Settings

    if "AWS_ENDPOINT_URL_KINESIS" in env or "QM_SETTINGS_FILE" in env or env.get("TEST_KCL_PRIME") == "0":
        return
    fields = Settings.model_fields

    def value(name: str) -> str:
        return env.get(f"QM_{name.upper()}") or str(fields[name].default)

    position = value("initial_position")
    if position not in ("TRIM_HORIZON", "LATEST"):
        return
    # The test process's endpoint is the emulator itself (a service may be given a fault proxy).
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or env.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return
    options = {"endpoint_url": endpoint, "region_name": env.get("AWS_REGION", "us-east-1")}
    kinesis = boto3.client("kinesis", **options)
    dynamodb = boto3.client("dynamodb", **options)
    for stream, table in (
        (value("ctr_stream"), value("application_name")),
        (value("agent_event_stream"), value("agent_application_name")),
    ):
        try:
            shards = kinesis.list_shards(StreamName=stream)["Shards"]
            dynamodb.create_table(TableName=table, **_LEASE_TABLE)
        except ClientError:
            continue  # no such stream, or the application has started before: nothing to prime
        if any("ParentShardId" in s or "EndingSequenceNumber" in s["SequenceNumberRange"] for s in shards):
            continue  # an empty table: the KCL syncs the shards itself
        for item in lease_items(shards, position):
            dynamodb.put_item(
                TableName=table, Item=item, ConditionExpression="attribute_not_exists(leaseKey)"
            )


def lease_items(shards: list[dict[str, Any]], position: str) -> list[dict[str, Any]]:
    """The KCL's unowned lease of each shard, at the initial position."""
    return [
        {
            "leaseKey": {"S": shard["ShardId"]},
            "checkpoint": {"S": position},
            "checkpointSubSequenceNumber": {"N": "0"},
            "leaseCounter": {"N": "0"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "startingHashKey": {"S": shard["HashKeyRange"]["StartingHashKey"]},
            "endingHashKey": {"S": shard["HashKeyRange"]["EndingHashKey"]},
        }
        for shard in shards
    ]


class ServiceProcess:
    """``qm-ingest run`` in a child process with its logs in a file."""

    def __init__(
        self,
        log_path: Path,
        env: dict[str, str] | None = None,
        args: tuple[str, ...] = (),
        prefix: tuple[str, ...] = (),
    ) -> None:
        from processor.devtools.emulator.control import free_port

        self.log_path = log_path
        self.env = {**os.environ, **FAST_KCL, **(env or {})}
        # Its own health port: parallel runs (and other developers' on this host) never clash.
        self.env.setdefault("QM_HEALTH_PORT", str(free_port()))
        self.health_port = int(self.env["QM_HEALTH_PORT"])
        self.args = args
        self.prefix = prefix  # e.g. ("tini", "--"), as in the container image
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        prime_kcl_leases(self.env)
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log = log
        self.proc = subprocess.Popen(
            [*self.prefix, sys.executable, "-m", "processor", "run", *self.args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> float:
        """SIGTERM and wait; returns how long the exit took."""
        assert self.proc is not None
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self._log.close()
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the service, its KCL daemon and every record processor (kill -9)."""
        assert self.proc is not None
        victims = [self.proc.pid, *descendants(self.proc.pid)]
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self._log.close()

    def get(self, path: str) -> tuple[int, bytes]:
        """GET the service's health endpoint; (0, b"") while nothing listens."""
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}{path}", timeout=10) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.alive():
            self.stop()


def leaked_numbers(log_text: str, numbers: set[str]) -> list[str]:
    """The phone numbers of ``numbers`` that appear in ``log_text`` in any form: as written,
    as bare digits (formatting removed), or their national part (last 10 digits)."""
    import re

    # Formatting between digits removed: "+61 2 9123-4567" reads as "+61291234567".
    compact = re.sub(r"(?<=\d)[\s().-]+(?=\d)", "", log_text)
    leaked = []
    for number in sorted(numbers):
        digits = re.sub(r"[^0-9]", "", number)
        national = digits[-10:] if len(digits) >= 11 else digits
        if number.strip() in log_text or re.search(rf"(?<!\d)(?:{digits}|0?{national})(?!\d)", compact):
            leaked.append(number)
    return leaked


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc; the daemon runs in its own group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    out: list[int] = []
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            out.append(child)
            stack.append(child)
    return out


# --- IAM enforcement (tests/e2e/test_iam_roles.py, tests/contract/test_iam_enforcement.py) --------
REGION = "us-east-1"
#: What the emulator accepts while IAM enforcement is off.
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def credentials_env(key: dict[str, Any]) -> dict[str, str]:
    """IAM's access key or STS's credentials as the environment an SDK reads them from."""
    env = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    if key.get("SessionToken"):
        env["AWS_SESSION_TOKEN"] = key["SessionToken"]
    return env


def signed_client(service: str, endpoint: str, env: dict[str, str], **extra: Any) -> Any:
    """A boto3 client signing with these credentials (``credentials_env``'s form)."""
    import boto3

    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        **extra,
    )


def iam_admin(endpoint: str, name: str) -> tuple[str, dict[str, str]]:
    """An IAM user allowed everything, made while enforcement is off: its ARN and credentials."""
    import orjson

    iam = signed_client("iam", endpoint, EMULATOR_CREDENTIALS)
    arn: str = iam.create_user(UserName=name)["User"]["Arn"]
    iam.put_user_policy(UserName=name, PolicyName="all", PolicyDocument=orjson.dumps(ALLOW_ALL).decode())
    return arn, credentials_env(iam.create_access_key(UserName=name)["AccessKey"])


def refused(call: Callable[[], Any]) -> bool:
    """True when the call is refused for want of a permission (and only then)."""
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in {"AccessDenied", "AccessDeniedException"}
    return False


def permitted(attempts: dict[str, Callable[[], Any]]) -> list[str]:
    """Which of these attempts were not refused."""
    return [what for what, call in attempts.items() if not refused(call)]
