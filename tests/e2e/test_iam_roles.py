"""The stack's component roles, proven with IAM enforcement on (docs/deploy.md).

The template (deploy/qm-ingest.yaml, from processor/ops/stack.py and processor/ops/roles.py) is deployed
into an embedded emulator of its own; then moto checks every request against the policies of
the credentials it is signed with (processor/devtools/emulator/iam_enforcement.py). ``qm-ingest run``, the
real KCL daemon included, imports a simulated contact centre with the service role's
temporary credentials: every contact is imported, no request of the service is refused, and
what the role must not do (read quarantined payloads, write the users' console audit, forge
CTRs or screen results...) is refused.

The test's own writes (the simulated Connect: CTRs, recordings, users) are signed by an
administrator user created before enforcement is switched on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.core.agent_queue import agent_queue_name
from processor.devtools.emulator import control
from processor.devtools.publish_simulation import publish_scenario
from processor.devtools.simulated_centre import build_scenario
from processor.ops.stack import role_id
from tests.conftest import unique_names
from tests.contract.test_joiner import output_records
from tests.contract.test_stack_deploy import deploy
from tests.helpers import (
    EMULATOR_CREDENTIALS,
    REGION,
    ServiceProcess,
    credentials_env,
    iam_admin,
    permitted,
    signed_client,
    wait_until,
)

pytestmark = pytest.mark.e2e

SERVICE_ENV = {"QM_JOIN_WINDOW_SECONDS": "15", "QM_SWEEP_INTERVAL_SECONDS": "1"}


@pytest.fixture
def deployed(iam_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The stack deployed with enforcement off; then enforcement on, the test signed as admin."""
    from processor.adapters.aws import AwsClients
    from processor.ops.bootstrap import bootstrap
    from processor.platform.settings import Settings, get_settings

    names = unique_names("iam")
    for key, value in names.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("QM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("QM_INSTANCE_ARN", "any")
    monkeypatch.setenv("AWS_ENDPOINT_URL", iam_endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    for key, value in EMULATOR_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = Settings()

    admin_arn, admin = iam_admin(iam_endpoint, names["QM_APPLICATION_NAME"] + "-admin")
    stack = deploy(
        AwsClients(settings),
        settings,
        names["QM_APPLICATION_NAME"],
        parameters={"TrustedPrincipalArn": admin_arn},
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # moto's CloudFormation leaves out the buckets' notification rules (tests/contract/
    # test_stack_deploy.py): bootstrap adds them, as on an existing Connect bucket.
    bootstrap(settings, AwsClients(settings))

    control.iam_enforcement(iam_endpoint, True, clear=True)
    for key, value in admin.items():
        monkeypatch.setenv(key, value)
    try:
        yield {"settings": settings, "outputs": outputs, "admin": admin, "endpoint": iam_endpoint}
    finally:
        control.iam_enforcement(iam_endpoint, False)
        get_settings.cache_clear()


def assume(deployed: dict[str, Any], component: str) -> dict[str, str]:
    from processor.ops import roles

    role = next(r for r in roles.roles(deployed["settings"]) if r.component == component)
    sts = signed_client("sts", deployed["endpoint"], deployed["admin"])
    arn = deployed["outputs"][role_id(role) + "Arn"]
    return credentials_env(sts.assume_role(RoleArn=arn, RoleSessionName=f"qm-{component}")["Credentials"])


def denials(endpoint: str, principal_part: str) -> list[tuple[str, str]]:
    decisions = control.iam_enforcement(endpoint)["decisions"]
    return sorted(
        {
            (d["action"], d["resource"])
            for d in decisions
            if principal_part in d["principal"] and not d["allowed"]
        }
    )


def allowed_actions(endpoint: str, principal_part: str) -> set[str]:
    """What the component did, as the emulator authorised it (its requests were signed with
    the role's credentials, so its policy was the one checked)."""
    decisions = control.iam_enforcement(endpoint)["decisions"]
    return {d["action"] for d in decisions if principal_part in d["principal"] and d["allowed"]}


def test_the_service_imports_every_contact_with_its_role_and_nothing_more(
    deployed: dict[str, Any], tmp_path: Path
) -> None:
    from processor.adapters.aws import AwsClients

    settings = deployed["settings"]
    endpoint = deployed["endpoint"]
    admin_aws = AwsClients(settings)
    service_env = assume(deployed, "service")
    scenario = build_scenario(
        seed=21,
        contacts=12,
        start=datetime(2026, 3, 3, 9, tzinfo=UTC),
        bucket=settings.recordings_bucket,
        max_talk_seconds=120,
        missing_rate=0.1,
    )
    service = ServiceProcess(tmp_path / "service.log", {**SERVICE_ENV, **service_env}).start()
    store = DynamoContactStore(admin_aws.dynamodb, settings.contacts_table)
    try:
        publish_scenario(settings, admin_aws, contacts=0, scenario=scenario)

        def imported() -> bool:
            final = {c.contact_id: c.doc for c in store.scan() if c.view.state.final}
            return all(final.get(k, {}).get("last_update") == v for k, v in scenario.expected.items())

        try:
            wait_until(imported, 180, "every contact imported under the service role")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; refused: {denials(endpoint, 'qm-service')}") from None
        stop_seconds = service.stop()
    finally:
        if service.alive():
            service.stop()
    assert stop_seconds < 10
    assert denials(endpoint, "qm-service") == [], "the service role is missing a permission"
    # The KCL daemon (Java) and the Python workers both signed with the role.
    assert {
        "kinesis:GetRecords",
        "dynamodb:CreateTable",
        "dynamodb:UpdateItem",
        "s3:GetObject",
        "kinesis:PutRecords",
        "sqs:ReceiveMessage",
    } <= allowed_actions(endpoint, "qm-service")
    versions = Counter(
        (r["contact_id"], r["version"]) for r in output_records(admin_aws, settings.output_stream)
    )
    assert versions and max(versions.values()) == 1
    assert {cid for cid, _ in versions} == set(scenario.expected)

    # What the service role must not do, tried with its own credentials.
    ddb = signed_client("dynamodb", endpoint, service_env)
    s3 = signed_client("s3", endpoint, service_env)
    kinesis = signed_client("kinesis", endpoint, service_env)
    sqs = signed_client("sqs", endpoint, service_env)
    quarantined = admin_aws.s3.list_objects_v2(Bucket=settings.quarantine_bucket).get("Contents", [])
    attempts = {
        "read a quarantined payload": lambda: s3.get_object(
            Bucket=settings.quarantine_bucket, Key=quarantined[0]["Key"] if quarantined else "x"
        ),
        "write the console's audit log": lambda: ddb.put_item(
            TableName=settings.audit_table, Item={"id": {"S": "forged"}}
        ),
        "write the console's configuration": lambda: ddb.put_item(
            TableName=settings.config_table, Item={"name": {"S": "forged"}}
        ),
        "forge a CTR": lambda: kinesis.put_record(
            StreamName=settings.ctr_stream, Data=b"{}", PartitionKey="x"
        ),
        "forge a screen result": lambda: sqs.send_message(
            QueueUrl=admin_aws.sqs.get_queue_url(QueueName=settings.screen_results_queue)["QueueUrl"],
            MessageBody="{}",
        ),
        "delete a recording": lambda: s3.delete_object(Bucket=settings.recordings_bucket, Key="x"),
        "read a screen recording": lambda: s3.get_object(Bucket=settings.screen_bucket, Key="x"),
        "delete a table": lambda: ddb.delete_table(TableName=settings.contacts_table),
    }
    allowed = permitted(attempts)
    assert allowed == [], f"the service role may {allowed}"


def run_cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_operator_replays_and_checks_with_its_role(deployed: dict[str, Any]) -> None:
    from processor.adapters.aws import AwsClients
    from processor.adapters.kinesis.put_records import put_records

    settings = deployed["settings"]
    endpoint = deployed["endpoint"]
    admin_aws = AwsClients(settings)
    operator_env = assume(deployed, "operator")
    scenario = build_scenario(
        seed=22, contacts=6, start=datetime(2026, 3, 4, 9, tzinfo=UTC), bucket=settings.recordings_bucket
    )
    publish_scenario(settings, admin_aws, contacts=0, scenario=scenario)
    put_records(admin_aws.kinesis, settings.ctr_stream, [(b"{not json", "bad")])

    replay = run_cli(operator_env, "replay", "--trim-horizon", "--direct")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    store = DynamoContactStore(admin_aws.dynamodb, settings.contacts_table)
    assert {c.contact_id for c in store.scan()} == set(scenario.expected)
    for args in (("quarantine", "list"), ("contacts", "list"), ("doctor",)):
        result = run_cli(operator_env, *args)
        assert result.returncode in (0, 1), result.stdout + result.stderr  # doctor: 1 = warnings
        assert "AccessDenied" not in result.stdout + result.stderr, (args, denials(endpoint, "qm-operator"))
    assert denials(endpoint, "qm-operator") == [], "the operator role is missing a permission"
    assert {"kinesis:GetRecords", "dynamodb:PutItem", "s3:GetObject"} <= allowed_actions(
        endpoint, "qm-operator"
    )

    ddb = signed_client("dynamodb", endpoint, operator_env)
    kinesis = signed_client("kinesis", endpoint, operator_env)
    s3 = signed_client("s3", endpoint, operator_env)
    attempts = {
        "change the QM users": lambda: ddb.put_item(
            TableName=settings.users_table, Item={"username": {"S": "forged"}}
        ),
        "write the console's audit log": lambda: ddb.put_item(
            TableName=settings.audit_table, Item={"id": {"S": "forged"}}
        ),
        "forge a CTR": lambda: kinesis.put_record(
            StreamName=settings.ctr_stream, Data=b"{}", PartitionKey="x"
        ),
        "overwrite a recording": lambda: s3.put_object(
            Bucket=settings.recordings_bucket, Key="connect/x/CallRecordings/x.wav", Body=b"x"
        ),
        "read a screen recording": lambda: s3.get_object(Bucket=settings.screen_bucket, Key="x"),
    }
    allowed = permitted(attempts)
    assert allowed == [], f"the operator role may {allowed}"


def test_the_console_serves_contacts_and_saves_settings_with_its_role(deployed: dict[str, Any]) -> None:
    import httpx

    from processor.adapters.aws import AwsClients
    from processor.devtools.emulator.control import free_port
    from tests.console_support import csrf_of, seed

    settings = deployed["settings"]
    endpoint = deployed["endpoint"]
    admin_aws = AwsClients(settings)
    _, wavs, _ = seed(settings, admin_aws)
    console_env = assume(deployed, "console")
    port = free_port()
    env = {**os.environ, **console_env, "QM_CONSOLE_PORT": str(port), "QM_CONSOLE_PASSWORD": "iam-test-pw"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "processor", "console"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: control.port_open(port), 60, "the console listening")
        with httpx.Client(base_url=url, timeout=30) as web:
            csrf = csrf_of(web.get("/login").text)
            signed_in = web.post(
                "/login", data={"username": "admin", "password": "iam-test-pw", "csrf_token": csrf}
            )
            assert signed_in.status_code == 303, signed_in.text
            assert web.get("/contacts").status_code == 200
            page = web.get("/contacts/c-both")
            assert page.status_code == 200
            audio = web.get("/contacts/c-both/audio")
            assert audio.status_code == 200 and audio.content == wavs["c-both"]
            assert web.get("/users").status_code == 200
            config = web.get("/config")
            assert config.status_code == 200
            form = {
                "join_window_minutes": "30",
                "include_acw": "on",
                "version": "0",
                "csrf_token": csrf_of(config.text),
            }
            assert web.post("/config", data=form).status_code in (200, 303)
            toggle = web.post(
                "/users/screen-recording",
                data={"action": "enable", "username": "ana.silva", "csrf_token": csrf_of(config.text)},
            )
            assert toggle.status_code in (200, 303)
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=30)
    assert "AccessDenied" not in stderr, stderr[-3000:]
    assert denials(endpoint, "qm-console") == [], "the console role is missing a permission"
    assert {"dynamodb:Query", "s3:GetObject", "dynamodb:PutItem"} <= allowed_actions(endpoint, "qm-console")

    s3 = signed_client("s3", endpoint, console_env)
    ddb = signed_client("dynamodb", endpoint, console_env)
    sqs = signed_client("sqs", endpoint, console_env)
    quarantined = "x"
    attempts = {
        "read a quarantined payload": lambda: s3.get_object(
            Bucket=settings.quarantine_bucket, Key=quarantined
        ),
        "send a screen command": lambda: sqs.send_message(
            QueueUrl=admin_aws.sqs.get_queue_url(QueueName=agent_queue_name("ben.okafor"))["QueueUrl"],
            MessageBody="{}",
            MessageGroupId="x",
        ),
        "move the KCL's leases": lambda: ddb.scan(TableName=settings.application_name),
        "delete a recording": lambda: s3.delete_object(Bucket=settings.recordings_bucket, Key="x"),
    }
    allowed = permitted(attempts)
    assert allowed == [], f"the console role may {allowed}"


def test_a_desktop_reads_its_commands_and_uploads_only_where_a_command_says(deployed: dict[str, Any]) -> None:
    from processor.adapters.aws import AwsClients
    from processor.adapters.sqs.commands import AgentQueues
    from processor.core.desktop_protocol import UploadTarget
    from processor.desktop.transport import S3Uploader

    settings = deployed["settings"]
    endpoint = deployed["endpoint"]
    admin_aws = AwsClients(settings)
    AGENT = "desktop-" + settings.application_name
    service_env = assume(deployed, "service")
    desktop_env = assume(deployed, "desktop")
    # The service creates the agent's queue, sends a command, signs the upload URL.
    service_sqs = signed_client("sqs", endpoint, service_env)
    queue_url = AgentQueues(service_sqs).url(AGENT)
    service_sqs.send_message(
        QueueUrl=queue_url, MessageBody='{"n": 1}', MessageGroupId=AGENT, MessageDeduplicationId="1"
    )
    upload_url = signed_client("s3", endpoint, service_env).generate_presigned_url(
        "put_object", Params={"Bucket": settings.screen_bucket, "Key": "screen/desktop-agent/c1.qmse"}
    )

    sqs = signed_client("sqs", endpoint, desktop_env)
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", [])
    assert [m["Body"] for m in messages] == ['{"n": 1}']
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"])
    results_url = sqs.get_queue_url(QueueName=settings.screen_results_queue)["QueueUrl"]
    sqs.send_message(QueueUrl=results_url, MessageBody="{}")
    # qm-desktop's own uploader, through the URL the command carries.
    S3Uploader(None).put(
        UploadTarget(settings.screen_bucket, "screen/desktop-agent/c1.qmse", upload_url), b"segment"
    )
    assert (
        admin_aws.s3.get_object(Bucket=settings.screen_bucket, Key="screen/desktop-agent/c1.qmse")[
            "Body"
        ].read()
        == b"segment"
    )
    assert denials(endpoint, "qm-desktop") == [], "the desktop role is missing a permission"
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:SendMessage"} <= allowed_actions(
        endpoint, "qm-desktop"
    )
    # The upload was authorised against the credentials in the URL: the service role's.
    decisions = control.iam_enforcement(endpoint)["decisions"]
    assert any(
        d["action"] == "s3:PutObject" and d["resource"].endswith("c1.qmse") and "qm-service" in d["principal"]
        for d in decisions
    )

    s3 = signed_client("s3", endpoint, desktop_env)
    ddb = signed_client("dynamodb", endpoint, desktop_env)
    attempts = {
        "send a command to an agent's queue": lambda: sqs.send_message(
            QueueUrl=queue_url, MessageBody="{}", MessageGroupId="x", MessageDeduplicationId="2"
        ),
        "upload without a pre-signed URL": lambda: s3.put_object(
            Bucket=settings.screen_bucket, Key="screen/desktop-agent/forged.qmse", Body=b"x"
        ),
        "read another contact's screen recording": lambda: s3.get_object(
            Bucket=settings.screen_bucket, Key="screen/desktop-agent/c1.qmse"
        ),
        "read a call recording": lambda: s3.get_object(Bucket=settings.recordings_bucket, Key="x"),
        "read contacts": lambda: ddb.scan(TableName=settings.contacts_table),
        "read the users table": lambda: ddb.scan(TableName=settings.users_table),
        "read a screen result": lambda: sqs.receive_message(QueueUrl=results_url),
    }
    allowed = permitted(attempts)
    assert allowed == [], f"the desktop role may {allowed}"
