"""The benchmark's request counter and wave counter, against a local HTTP server that answers
every DynamoDB call after a short pause (long enough for parallel calls to overlap)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
import pytest
from botocore.config import Config

from bench.instruments import CountingAwsClients, RequestCounter, tree_cpu_seconds
from processor.platform.settings import Settings

PAUSE_S = 0.2


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        time.sleep(PAUSE_S)
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _client(endpoint: str) -> Any:
    return boto3.session.Session(
        aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1"
    ).client(
        "dynamodb",
        endpoint_url=endpoint,
        config=Config(max_pool_connections=16, retries={"mode": "standard", "total_max_attempts": 1}),
    )


def test_sequential_calls_are_one_wave_each(endpoint: str) -> None:
    counter = RequestCounter()
    client = counter.attach(_client(endpoint))
    with counter.window() as got:
        for _ in range(3):
            client.list_tables()
    assert got[0].waves == 3
    assert got[0].by_operation == {"dynamodb.ListTables": 3}
    assert got[0].peak_in_flight == 1
    assert got[0].max_per_thread == 3
    assert got[0].busy_seconds >= 3 * PAUSE_S
    assert counter.in_flight == 0


def test_parallel_calls_are_one_wave(endpoint: str) -> None:
    counter = RequestCounter()
    client = counter.attach(_client(endpoint))
    client.list_tables()  # connect once: signing and pools are built before the window
    start = threading.Barrier(10)

    def call(_: int) -> None:
        start.wait()
        client.describe_limits()

    with counter.window() as got, ThreadPoolExecutor(10) as pool:
        list(pool.map(call, range(10)))
    assert got[0].waves == 1
    assert got[0].by_operation == {"dynamodb.DescribeLimits": 10}
    assert got[0].peak_in_flight == 10
    assert got[0].max_per_thread == 1
    assert got[0].busy_seconds < 10 * PAUSE_S


def test_parallel_then_sequential_and_several_clients(endpoint: str) -> None:
    counter = RequestCounter()
    first, second = counter.attach(_client(endpoint)), counter.attach(_client(endpoint))
    with counter.window() as got:
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(lambda c: c.list_tables(), [first, second]))
        second.describe_limits()
    assert got[0].waves == 2
    assert got[0].by_operation == {"dynamodb.ListTables": 2, "dynamodb.DescribeLimits": 1}
    assert got[0].per(3) == {"dynamodb.ListTables": 2 / 3, "dynamodb.DescribeLimits": 1 / 3}


def _staggered(counter: RequestCounter, client: Any, hold: float) -> Any:
    """Two calls side by side, the second sent after the first was answered."""

    def late() -> None:
        time.sleep(PAUSE_S * 1.5)
        client.describe_limits()

    with counter.window(hold_seconds=hold) as got, ThreadPoolExecutor(2) as pool:
        first, second = pool.submit(client.list_tables), pool.submit(late)
        first.result(), second.result()
    return got[0]


def test_a_gap_between_side_by_side_calls_splits_them_into_two_waves(endpoint: str) -> None:
    counter = RequestCounter()
    client = counter.attach(_client(endpoint))
    client.list_tables()
    got = _staggered(counter, client, hold=0.0)
    assert got.waves == 2
    assert got.wave_operations == ({"dynamodb.ListTables": 1}, {"dynamodb.DescribeLimits": 1})


def test_holding_calls_as_a_round_trip_would_makes_them_one_wave(endpoint: str) -> None:
    counter = RequestCounter()
    client = counter.attach(_client(endpoint))
    client.list_tables()
    got = _staggered(counter, client, hold=PAUSE_S)
    assert got.waves == 1
    assert got.wave_operations == ({"dynamodb.ListTables": 1, "dynamodb.DescribeLimits": 1},)
    assert got.busy_seconds >= 2.5 * PAUSE_S
    # The hold ends with the window: later calls are not held.
    started = time.perf_counter()
    client.list_tables()
    assert time.perf_counter() - started < 2 * PAUSE_S


def test_counting_aws_clients_count_every_client_they_build(
    endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    aws = CountingAwsClients(Settings(aws_endpoint_url=endpoint, aws_max_attempts=1))
    with aws.counter.window() as got:
        aws.dynamodb.list_tables()
        aws.client("dynamodb").describe_limits()
    assert got[0].by_operation == {"dynamodb.ListTables": 1, "dynamodb.DescribeLimits": 1}
    assert got[0].waves == 2


def test_tree_cpu_seconds_sees_this_python_process() -> None:
    deadline = time.process_time() + 0.05
    while time.process_time() < deadline:
        pass
    cpu = tree_cpu_seconds(os.getpid())
    assert cpu.python.get(os.getpid(), 0.0) > 0.0
