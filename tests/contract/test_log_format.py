"""``--log-format``: JSON lines for machines by default, a console format for people."""

from __future__ import annotations

import os
import subprocess
import sys

import orjson


def run_with(bootstrapped, aws, *options: str) -> list[str]:
    # A missing queue: `run` logs the doctor's warnings, then refuses to start (no KCL needed).
    url = aws.sqs.get_queue_url(QueueName=bootstrapped.screen_results_queue)["QueueUrl"]
    aws.sqs.delete_queue(QueueUrl=url)
    done = subprocess.run(
        [sys.executable, "-m", "processor", *options, "run"],
        env={**os.environ, "QM_HEALTH_PORT": "0"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    return [line for line in done.stderr.splitlines() if "doctor: not encrypted at rest" in line]


def test_json_by_default(bootstrapped, aws) -> None:
    lines = run_with(bootstrapped, aws)
    assert lines
    for line in lines:
        doc = orjson.loads(line)
        assert doc["level"] == "warning" and doc["subject"].startswith("kinesis stream ")


def test_console_for_people(bootstrapped, aws) -> None:
    lines = run_with(bootstrapped, aws, "--log-format", "console")
    assert lines
    for line in lines:
        assert not line.startswith("{")
        assert "warning" in line and "subject=" in line


def test_unknown_format_is_a_usage_error() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "processor", "--log-format", "xml", "settings"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "xml" in done.stderr
