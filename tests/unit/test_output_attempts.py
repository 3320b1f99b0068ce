"""The output stream's client makes one attempt per put: a put whose answer is lost may have
landed, and only the emitter's read-back can tell; a retry inside botocore would put the
contact twice (the fault suite's connection-reset phase found four such duplicates)."""

from __future__ import annotations

import socket

import pytest
from botocore.exceptions import EndpointConnectionError

from processor.adapters.aws import AwsClients
from processor.platform.settings import Settings


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def attempts(client, call) -> int:  # type: ignore[no-untyped-def]
    sent = []
    client.meta.events.register("before-send", lambda **_: sent.append(1))
    with pytest.raises(EndpointConnectionError):
        call(client)
    return len(sent)


def test_an_output_put_is_attempted_once_and_other_calls_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    settings = Settings(aws_max_attempts=3)
    aws = AwsClients(settings)

    def put(client):  # type: ignore[no-untyped-def]
        return client.put_records(StreamName="qm-contacts", Records=[{"Data": b"{}", "PartitionKey": "c"}])

    assert attempts(aws.kinesis_output, put) == 1
    assert attempts(aws.kinesis, put) == 3  # everything else keeps the configured attempts
