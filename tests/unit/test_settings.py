"""Settings: typed, validated at start with errors naming the variable, a settings file,
typos reported, secrets never printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from processor.platform.exceptions import ConfigurationError
from processor.platform.settings import Settings, get_settings, unknown_variables

SECRET = "s3cr3t-Pa55word-only-in-this-test"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for key in list(os.environ):
        if key.startswith("QM_") or key in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def settings_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    with pytest.raises(ConfigurationError) as caught:
        get_settings()
    return str(caught.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"QM_CTR_STREAM_SHARDS": "two"}, "QM_CTR_STREAM_SHARDS: Input should be a valid integer"),
        ({"QM_CTR_STREAM_SHARDS": "0"}, "QM_CTR_STREAM_SHARDS: Input should be greater than or equal to 1"),
        ({"QM_HEALTH_PORT": "70000"}, "QM_HEALTH_PORT: Input should be less than or equal to 65535"),
        (
            {"QM_INITIAL_POSITION": "OLDEST"},
            "QM_INITIAL_POSITION: Input should be 'TRIM_HORIZON' or 'LATEST'",
        ),
        ({"QM_LOG_FORMAT": "xml"}, "QM_LOG_FORMAT: Input should be 'json' or 'console'"),
        ({"QM_LOG_LEVEL": "LOUD"}, "QM_LOG_LEVEL: unknown log level 'LOUD'"),
        ({"AWS_ENDPOINT_URL": "localhost:4566"}, "AWS_ENDPOINT_URL: must start with http:// or https://"),
        ({"QM_INSTANCE_ARN": "instance-1"}, "QM_INSTANCE_ARN: not an Amazon Connect instance ARN"),
        (
            {"QM_REPLAY_WINDOW_HOURS": "-1"},
            "QM_REPLAY_WINDOW_HOURS: Input should be greater than or equal to 1",
        ),
    ],
)
def test_invalid_values_name_the_variable(clean_env, env: dict[str, str], expected: str) -> None:
    assert expected in settings_error(clean_env, **env)


def test_every_problem_is_reported_at_once(clean_env) -> None:
    message = settings_error(clean_env, QM_KCL_MAX_RECORDS="0", QM_HEALTH_PORT="x", QM_JAVA="java")
    assert "QM_KCL_MAX_RECORDS" in message and "QM_HEALTH_PORT" in message
    assert "QM_JAVA" not in message


def test_settings_file_is_read_and_the_environment_wins(clean_env, tmp_path: Path) -> None:
    file = tmp_path / "qm.env"
    file.write_text(
        "QM_CTR_STREAM=from-file\nQM_HEALTH_PORT=9100\nAWS_ENDPOINT_URL=http://127.0.0.1:4999\n"
        f"QM_CONSOLE_PASSWORD={SECRET}\n"
    )
    clean_env.setenv("QM_SETTINGS_FILE", str(file))
    clean_env.setenv("QM_HEALTH_PORT", "9200")
    settings = Settings()
    assert settings.ctr_stream == "from-file"
    assert settings.health_port == 9200
    assert settings.aws_endpoint_url == "http://127.0.0.1:4999"
    assert settings.console_password is not None
    assert settings.console_password.get_secret_value() == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.model_dump())


def test_a_named_settings_file_that_does_not_exist_is_an_error(clean_env, tmp_path: Path) -> None:
    message = settings_error(clean_env, QM_SETTINGS_FILE=str(tmp_path / "missing.env"))
    assert "QM_SETTINGS_FILE" in message and "missing.env" in message


def test_invalid_value_in_the_file_names_the_variable(clean_env, tmp_path: Path) -> None:
    file = tmp_path / "qm.env"
    file.write_text("QM_KCL_FAILOVER_MS=soon\n")
    assert "QM_KCL_FAILOVER_MS" in settings_error(clean_env, QM_SETTINGS_FILE=str(file))


def test_typos_are_found_with_the_closest_name() -> None:
    found = dict(
        unknown_variables(
            {"QM_CTR_STREEM": "x", "QM_CTR_STREAM": "y", "QM_LOG_SOCKET": "z", "QM_NOTHING_LIKE_IT": "1"}
        )
    )
    assert found == {"QM_CTR_STREEM": "QM_CTR_STREAM", "QM_NOTHING_LIKE_IT": None}


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "processor", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_reports_bad_settings_in_one_line_and_exits_2(clean_env) -> None:
    env = {**os.environ, "QM_CTR_STREAM_SHARDS": "many"}
    done = run_cli("settings", env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "qm-ingest: invalid settings: QM_CTR_STREAM_SHARDS: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_settings_command_never_prints_secrets(clean_env, tmp_path: Path) -> None:
    env = {**os.environ, "QM_CONSOLE_PASSWORD": SECRET, "AWS_SECRET_ACCESS_KEY": SECRET}
    for args in (("settings",), ("settings", "--markdown")):
        done = run_cli(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr
    plain = run_cli("settings", env=env).stdout
    assert any(line.startswith("QM_CONSOLE_PASSWORD") and "(set)" in line for line in plain.splitlines())


def test_readme_settings_table_is_current() -> None:
    from processor.ops.report import settings_table

    readme = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    start = readme.index("<!-- settings-table:start -->") + len("<!-- settings-table:start -->")
    table = readme[start : readme.index("<!-- settings-table:end -->")].strip()
    assert table == settings_table(Settings(), markdown=True), "regenerate: qm-ingest settings --markdown"


def test_kinesis_can_have_its_own_endpoint(clean_env) -> None:
    from processor.adapters.aws import AwsClients
    from processor.adapters.kcl.daemon import KclApplication, child_environment, java_command, properties

    clean_env.delenv("AWS_ENDPOINT_URL_KINESIS", raising=False)
    clean_env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4999")
    app = KclApplication("app", "stream", "processor.entrypoints.ctr_worker", "w-1")
    same = Settings()
    assert "kinesisEndpoint = http://127.0.0.1:4999\n" in properties(same, app, "python")

    clean_env.setenv("AWS_ENDPOINT_URL_KINESIS", "http://127.0.0.1:4600/")
    split = Settings()
    assert split.endpoint_for("kinesis") == "http://127.0.0.1:4600"
    assert split.endpoint_for("dynamodb") == split.endpoint_for("s3") == "http://127.0.0.1:4999"
    props = properties(split, app, "python")
    # The KCL reads the stream on kinesis-mock and keeps its leases on the emulator's DynamoDB.
    assert "kinesisEndpoint = http://127.0.0.1:4600\n" in props
    assert "dynamoDBEndpoint = http://127.0.0.1:4999\n" in props
    assert child_environment(split)["AWS_ENDPOINT_URL_KINESIS"] == "http://127.0.0.1:4600"
    assert "-Daws.cborEnabled=false" in java_command(split.model_copy(update={"java": "java"}), Path("p"))
    aws = AwsClients(split)
    assert aws.kinesis.meta.endpoint_url == "http://127.0.0.1:4600"
    assert aws.dynamodb.meta.endpoint_url == "http://127.0.0.1:4999"
    assert "AWS_ENDPOINT_URL_KINESIS" in settings_error(clean_env, AWS_ENDPOINT_URL_KINESIS="localhost:4600")
