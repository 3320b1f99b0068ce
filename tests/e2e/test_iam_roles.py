"""The stack's component roles, proven with IAM enforcement on (docs/deploy.md).

The template (deploy/qm-ingest.yaml, from processor/stack.py and processor/roles.py) is deployed
into an embedded emulator of its own; then moto checks every request against the policies of
the credentials it is signed with (processor/local/iam_enforcement.py). ``qm-ingest run``, the
real KCL daemon included, imports a simulated contact centre with the service role's
temporary credentials: every contact is imported, no request of the service is refused, and
what the role must not do (read quarantined payloads, write the users' console audit, forge
CTRs or screen results...) is refused.

The test's own writes (the simulated Connect: CTRs, recordings, users) are signed by an
administrator user created before enforcement is switched on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError

from processor.adapters.contacts import DynamoContactStore
from processor.local import control
from processor.simulation import build_scenario
from processor.simulator import publish_scenario
from processor.stack import role_id, template
from tests.conftest import unique_names
from tests.contract.test_joiner import output_records
from tests.helpers import ServiceProcess, wait_until

pytestmark = pytest.mark.e2e

REGION = "us-east-1"
ALLOW_ALL = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
SERVICE_ENV = {"QM_JOIN_WINDOW_SECONDS": "15", "QM_SWEEP_INTERVAL_SECONDS": "1"}


@pytest.fixture(scope="module")
def iam_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator of this module's own: enforcement is one switch for the whole server."""
    state = tmp_path_factory.mktemp("iam-emulator")
    port = control.free_port()
    status = control.up(port, state, timeout=60)
    yield status.endpoint
    control.down(port, state)


def credentials_env(key: dict[str, Any]) -> dict[str, str]:
    env = {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}
    if key.get("SessionToken"):
        env["AWS_SESSION_TOKEN"] = key["SessionToken"]
    return env


def client(service: str, endpoint: str, env: dict[str, str]) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
    )


@pytest.fixture
def deployed(iam_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The stack deployed with enforcement off; then enforcement on, the test signed as admin."""
    from processor.adapters.aws import AwsClients
    from processor.bootstrap import bootstrap
    from processor.settings import Settings, get_settings

    names = unique_names("iam")
    for key, value in names.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("QM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("QM_INSTANCE_ARN", "any")
    monkeypatch.setenv("AWS_ENDPOINT_URL", iam_endpoint)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    emulator_env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    for key, value in emulator_env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = Settings()

    iam = client("iam", iam_endpoint, emulator_env)
    admin_name = names["QM_APPLICATION_NAME"] + "-admin"
    admin_arn = iam.create_user(UserName=admin_name)["User"]["Arn"]
    iam.put_user_policy(
        UserName=admin_name, PolicyName="all", PolicyDocument=orjson.dumps(ALLOW_ALL).decode()
    )
    admin = credentials_env(iam.create_access_key(UserName=admin_name)["AccessKey"])

    cloudformation = client("cloudformation", iam_endpoint, emulator_env)
    stack_name = names["QM_APPLICATION_NAME"]
    cloudformation.create_stack(
        StackName=stack_name,
        TemplateBody=orjson.dumps(template(settings)).decode(),
        Parameters=[{"ParameterKey": "TrustedPrincipalArn", "ParameterValue": admin_arn}],
        Capabilities=["CAPABILITY_IAM"],
    )
    deadline = time.monotonic() + 120
    while (stack := cloudformation.describe_stacks(StackName=stack_name)["Stacks"][0])[
        "StackStatus"
    ].endswith("_IN_PROGRESS") and time.monotonic() < deadline:
        time.sleep(0.5)
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
    from processor import roles

    role = next(r for r in roles.roles(deployed["settings"]) if r.component == component)
    sts = client("sts", deployed["endpoint"], deployed["admin"])
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


def refused(call: Any) -> bool:
    try:
        call()
    except ClientError as exc:
        code = exc.response["Error"]["Code"]
        return code in {"AccessDenied", "AccessDeniedException", "403"}
    return False


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
    versions = Counter(
        (r["contact_id"], r["version"]) for r in output_records(admin_aws, settings.output_stream)
    )
    assert versions and max(versions.values()) == 1
    assert {cid for cid, _ in versions} == set(scenario.expected)

    # What the service role must not do, tried with its own credentials.
    ddb = client("dynamodb", endpoint, service_env)
    s3 = client("s3", endpoint, service_env)
    kinesis = client("kinesis", endpoint, service_env)
    sqs = client("sqs", endpoint, service_env)
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
    allowed = [what for what, call in attempts.items() if not refused(call)]
    assert allowed == [], f"the service role may {allowed}"
