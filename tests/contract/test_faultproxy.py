"""The fault proxy in front of the emulator, driven with real boto3 calls: it passes traffic
through untouched (large uploads with 100-continue and ranged reads included), answers chosen
requests with AWS errors the retry policy classifies correctly, and partitions, refuses,
resets and slows the network on command."""

from __future__ import annotations

import threading
import time
from urllib.parse import urlsplit

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from processor.adapters.aws import AwsClients, is_transient
from processor.devtools.faultproxy import FaultProxy, Injection, aws_json_error, server_error, throttling


@pytest.fixture
def proxy(emulator: str):
    with FaultProxy(urlsplit(emulator).port or 0) as running:
        yield running


class OneAttempt(AwsClients):
    """The service's clients through the proxy, with one attempt per call: every fault shows."""

    def _config(self, **extra) -> Config:
        return Config(retries={"mode": "standard", "total_max_attempts": 1}, connect_timeout=5, **extra)


def clients(settings, proxy: FaultProxy) -> AwsClients:
    return OneAttempt(settings.model_copy(update={"aws_endpoint_url": proxy.endpoint}))


def put(ddb, table: str, key: str) -> None:
    ddb.put_item(TableName=table, Item={"contact_id": {"S": key}, "doc": {"S": "{}"}})


def test_traffic_passes_through_untouched(bootstrapped, proxy: FaultProxy) -> None:
    aws = clients(bootstrapped, proxy)
    put(aws.dynamodb, bootstrapped.contacts_table, "p-1")
    key = {"contact_id": {"S": "p-1"}}
    assert aws.dynamodb.get_item(TableName=bootstrapped.contacts_table, Key=key)["Item"]
    body = bytes(range(256)) * 8192  # 2 MiB: botocore sends it after "Expect: 100-continue"
    aws.s3.put_object(Bucket=bootstrapped.recordings_bucket, Key="big.bin", Body=body)
    ranged = aws.s3.get_object(Bucket=bootstrapped.recordings_bucket, Key="big.bin", Range="bytes=1000-1999")
    assert ranged["Body"].read() == body[1000:2000]
    aws.kinesis.put_record(StreamName=bootstrapped.ctr_stream, Data=b"x" * 100_000, PartitionKey="k")
    assert proxy.stats.connections >= 1 and proxy.stats.injected == 0
    assert proxy.stats.bytes_up > len(body)


def test_injected_errors_reach_boto3_as_aws_would_send_them(bootstrapped, proxy: FaultProxy) -> None:
    aws = clients(bootstrapped, proxy)
    table = bootstrapped.contacts_table
    only_contacts = f'"{table}"'.encode()
    rule = proxy.inject(throttling("DynamoDB_20120810.PutItem", contains=only_contacts, times=2))
    for _ in range(2):
        with pytest.raises(ClientError) as caught:
            put(aws.dynamodb, table, "t-1")
        assert caught.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        assert is_transient(caught.value)
    # Other tables and operations pass; the rule is used up after two requests.
    aws.dynamodb.put_item(TableName=bootstrapped.quarantine_table, Item={"id": {"S": "q"}})
    put(aws.dynamodb, table, "t-1")
    assert rule.hits == 2

    proxy.inject(server_error("DynamoDB_20120810.GetItem"))
    with pytest.raises(ClientError) as caught:
        aws.dynamodb.get_item(TableName=table, Key={"contact_id": {"S": "t-1"}})
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500 and is_transient(caught.value)

    denied = aws_json_error("AccessDeniedException", "not allowed")
    denied.target = "DynamoDB_20120810.PutItem"
    proxy.inject(denied)
    with pytest.raises(ClientError) as caught:
        put(aws.dynamodb, table, "t-2")
    assert caught.value.response["Error"]["Code"] == "AccessDeniedException"
    assert not is_transient(caught.value)  # poison for the call: never retried forever

    proxy.inject(Injection(target="Kinesis_20131202.PutRecord", reset=True))
    with pytest.raises((ConnectionClosedError, EndpointConnectionError)) as reset:
        aws.kinesis.put_record(StreamName=bootstrapped.ctr_stream, Data=b"x", PartitionKey="k")
    assert is_transient(reset.value)


def test_partition_holds_traffic_until_healed(bootstrapped, proxy: FaultProxy) -> None:
    aws = clients(bootstrapped, proxy)
    table = bootstrapped.contacts_table
    quick = aws.client("dynamodb", read_timeout=1)
    patient = aws.client("dynamodb", read_timeout=30)
    proxy.partition()
    started = time.monotonic()
    with pytest.raises(ReadTimeoutError) as timed_out:
        put(quick, table, "held-0")
    assert time.monotonic() - started >= 0.9 and is_transient(timed_out.value)

    finished: list[float] = []

    def write_during_partition() -> None:
        put(patient, table, "held-1")
        finished.append(time.monotonic())

    writer = threading.Thread(target=write_during_partition)
    writer.start()
    time.sleep(2)
    assert not finished, "a request went through the partition"
    healed = time.monotonic()
    proxy.heal()
    writer.join(timeout=20)
    assert finished and finished[0] >= healed
    assert patient.get_item(TableName=table, Key={"contact_id": {"S": "held-1"}})["Item"]


def test_refuse_resets_and_delay_slows(bootstrapped, proxy: FaultProxy) -> None:
    aws = clients(bootstrapped, proxy)
    put(aws.dynamodb, bootstrapped.contacts_table, "r-0")  # an open keep-alive connection
    proxy.refuse()
    for _ in range(3):
        with pytest.raises((ConnectionClosedError, EndpointConnectionError)) as refused:
            put(aws.dynamodb, bootstrapped.contacts_table, "r-1")
        assert is_transient(refused.value)
    assert proxy.stats.resets >= 3
    proxy.heal()
    put(aws.dynamodb, bootstrapped.contacts_table, "r-1")

    proxy.delay(0.4)
    started = time.monotonic()
    aws.dynamodb.get_item(TableName=bootstrapped.contacts_table, Key={"contact_id": {"S": "r-1"}})
    assert time.monotonic() - started >= 0.4
    proxy.clear()
    started = time.monotonic()
    aws.dynamodb.get_item(TableName=bootstrapped.contacts_table, Key={"contact_id": {"S": "r-1"}})
    assert time.monotonic() - started < 0.4


def test_only_loopback() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(443, upstream_host="10.0.0.1")


def test_latency_delays_each_answer_once(bootstrapped, proxy: FaultProxy) -> None:
    """A round trip, not a slow link: a 2 MiB answer (dozens of chunks) and four answers at
    once on their own connections each arrive one latency later, not one per chunk or per
    request in turn, where ``delay`` charges every chunk."""
    aws = clients(bootstrapped, proxy)
    bucket = bootstrapped.recordings_bucket
    body = bytes(range(256)) * 8192
    aws.s3.put_object(Bucket=bucket, Key="latency.bin", Body=body)
    latency = 0.25

    def timed_get() -> float:
        started = time.monotonic()
        assert aws.s3.get_object(Bucket=bucket, Key="latency.bin")["Body"].read() == body
        return time.monotonic() - started

    unloaded = min(timed_get() for _ in range(2))
    proxy.latency(latency)
    alone = timed_get()
    assert latency <= alone < unloaded + 2.5 * latency, (unloaded, alone)
    times: list[float] = []
    threads = [threading.Thread(target=lambda: times.append(timed_get())) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(times) == 4 and min(times) >= latency
    assert time.monotonic() - started < 4 * unloaded + 2.5 * latency
    chunks_before = proxy.stats.bytes_down
    proxy.clear()
    assert timed_get() < latency + unloaded * 2
    assert proxy.stats.bytes_down - chunks_before > len(body)  # passed on whole, every byte
