"""The CTR path, batch at a time: AWS requests per contact, request waves per batch, contacts/s
with and without a 10 ms delay on every AWS request, arrival-to-output latency, CPU/contact.

Everything runs on one private embedded emulator, through the project's public interfaces
only, so that it measures whatever the join and emission do now:

* **In process** (no delay): ``processor.app.wiring.build_ingest`` and the recordings consumer
  (``RecordingEventConsumer`` built as ``qm-ingest run`` builds it) on
  :class:`bench.instruments.CountingAwsClients`, whose every botocore client counts its HTTP
  requests (attempts) by operation and its request *waves* (periods with at least one
  request in flight). ``CtrIngest.process(batch)`` and ``poll_once()`` are called directly:
  requests per contact in both orders (recording first, CTR first), waves per batch of
  100, 250 and 500 clean CTRs, and ``time.process_time`` of this process per contact.
* **End to end**: ``qm-ingest run`` (the real KCL daemon and record processors) with every
  AWS endpoint pointed at a fault proxy (:mod:`processor.devtools.faultproxy`) that adds a
  fixed network latency to every answer (0 or 10 ms: ``FaultProxy.latency``, each answer
  arrives that much later however many chunks it takes and however many HTTP/2 streams
  share its connection, as over a real network path); contacts/s from the first put until every
  contact is on the output stream, against a naive consumer (GetRecords + one PutItem per
  record) and a raw put + get through the same proxy; the latency from a CTR's arrival on
  the CTR stream to its contact's arrival on the output stream (both Kinesis arrival
  times) at a steady 50 CTRs/s; CPU seconds of the service's Python processes (``/proc``).
  Completion is watched by one reader of the output stream (a GetRecords per shard every
  0.2 s), not by reading the contacts table.

``BENCH_QUICK=1`` (or ``python -m bench --quick pipeline``) runs small sizes; ``QM_BENCH_CONTACTS``
sets the end-to-end contact count; ``QM_BENCH_AUDIO`` (``both``, ``agent``, ``customer``,
``agent-quiet``; unset: headers only) uploads audio after each header, so that the recorded
parties' reads are counted as a real recording's (:mod:`bench.common`).
"""

from __future__ import annotations

import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

from bench.common import clean_scenario, emulator, line, quick, upload_headers
from bench.instruments import CountingAwsClients, RequestCounts, format_breakdown, tree_cpu_seconds
from processor.adapters.aws import AwsClients
from processor.adapters.kinesis.put_records import put_records
from processor.app.ctr_path import CtrIngest
from processor.app.recording_events import RecordingEventConsumer
from processor.app.wiring import build_ingest, build_joiner, build_recordings_consumer
from processor.core.batch import StreamRecord
from processor.devtools.faultproxy import FaultProxy
from processor.ops.bootstrap import bootstrap
from processor.platform.exceptions import SourcePosition
from processor.platform.settings import Settings

QUICK = quick()
CONTACTS = int(os.environ.get("QM_BENCH_CONTACTS", "150" if QUICK else "1000"))
# As many as without delay: the KCL's poll interval (up to 1 s before the first read) and the
# output watch's 0.2 s are fixed costs that a shorter run would count against the pipeline.
DELAYED_CONTACTS = CONTACTS
ORDER_CONTACTS = 20 if QUICK else 100
WAVE_BATCHES = (50, 100) if QUICK else (100, 250, 500)
DELAY_S = 0.010
LATENCY_RATE = 50  # CTRs/s
LATENCY_SECONDS = 6 if QUICK else 30
SHARD_READ_BYTES_S = 2 * 1024 * 1024
TARGET_REQUESTS = 3
TARGET_WAVES = 6
TARGET_SPEEDUP = 5
TARGET_P99_S = 2.0
#: The KCL's start-up knobs only (the first lease is taken within seconds); reading is as in
#: production (idleTimeBetweenReads, maxRecords: the settings' defaults).
FAST_START = {
    "QM_KCL_LEASE_ASSIGNMENT_MS": "1000",
    "QM_KCL_SHARD_SYNC_MS": "5000",
    "QM_KCL_PARENT_SHARD_POLL_MS": "1000",
    "QM_LOG_LEVEL": "WARNING",
}


# --- in process ---------------------------------------------------------------------------------
def _batch(payloads: Sequence[bytes], stream: str) -> list[StreamRecord]:
    return [
        StreamRecord(p, SourcePosition("kinesis", stream, "shardId-bench", str(i)))
        for i, p in enumerate(payloads)
    ]


def recordings_consumer(settings: Settings, aws: AwsClients) -> RecordingEventConsumer:
    """The recordings consumer as ``qm-ingest run`` builds it, polling 1 s."""
    return build_recordings_consumer(settings, aws, build_joiner(settings, aws), wait_seconds=1)


def drain(consumer: RecordingEventConsumer, expected: int | None, timeout: float = 120) -> int:
    """``poll_once`` until ``expected`` messages were received (None: until one comes back empty)."""
    got = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        received = consumer.poll_once()
        got += received
        if (expected is None and received == 0) or (expected is not None and got >= expected):
            return got
    raise TimeoutError(f"{got} of {expected} recording notifications in {timeout:.0f} s")


def read_stream(aws: AwsClients, stream: str) -> list[dict[str, Any]]:
    """Every record of ``stream`` from the start (for checks after the fact)."""
    out: list[dict[str, Any]] = []
    for shard in aws.kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = aws.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = aws.kinesis.get_records(ShardIterator=iterator, Limit=10000)
            out += page["Records"]
            if not page["Records"] or not page.get("MillisBehindLatest", 1):
                break
            iterator = page["NextShardIterator"]
    return out


def output_contact_id(record: dict[str, Any]) -> str:
    with suppress(ValueError, KeyError, TypeError):
        return str(orjson.loads(record["Data"])["contact_id"])
    return str(record["PartitionKey"])


@dataclass
class OrderFigures:
    name: str
    contacts: int
    ctr_side: RequestCounts
    recordings_side: RequestCounts
    cpu_s: float
    emitted: int


def _sum(a: RequestCounts, b: RequestCounts) -> RequestCounts:
    ops = dict(a.by_operation)
    for op, n in b.by_operation.items():
        ops[op] = ops.get(op, 0) + n
    return RequestCounts(ops, a.waves + b.waves, max(a.peak_in_flight, b.peak_in_flight), 0.0)


@dataclass
class WaveFigures:
    size: int
    counts: RequestCounts = field(default_factory=lambda: RequestCounts({}, 0, 0, 0.0))
    wall: float = 0.0
    #: Another batch as large, every request delayed by DELAY_S.
    delayed_wall: float = 0.0

    @property
    def round_trips(self) -> float:
        return (self.delayed_wall - self.wall) / DELAY_S


def counted_via(endpoint: str) -> CountingAwsClients:
    return CountingAwsClients(Settings(aws_endpoint_url=endpoint))


def in_process(
    settings: Settings, setup: AwsClients, proxy: FaultProxy
) -> tuple[list[OrderFigures], list[WaveFigures]]:
    counted = CountingAwsClients(settings)
    ingest: CtrIngest = build_ingest(settings, counted)
    delayed_ingest = build_ingest(Settings(aws_endpoint_url=proxy.endpoint), counted_via(proxy.endpoint))
    consumer = recordings_consumer(settings, counted)
    drain(consumer, None)  # S3's test event from bootstrap, if any
    orders: list[OrderFigures] = []
    try:
        # Recording first: the object and its notification are handled before the CTR batch.
        scenario = clean_scenario(settings, seed=31, contacts=ORDER_CONTACTS)
        cpu = time.process_time()
        notifications = upload_headers(setup, scenario)
        with counted.counter.window() as rec:
            drain(consumer, notifications)
        with counted.counter.window() as ctr:
            ingest.process(_batch(scenario.deliveries, settings.ctr_stream))
        cpu = time.process_time() - cpu
        orders.append(OrderFigures("recording first", ORDER_CONTACTS, ctr[0], rec[0], cpu, 0))
        first_ids = set(scenario.expected)
        # CTR first: the batch, then the recordings arrive and the consumer handles them.
        scenario = clean_scenario(settings, seed=32, contacts=ORDER_CONTACTS, live=True)
        cpu = time.process_time()
        with counted.counter.window() as ctr:
            ingest.process(_batch(scenario.deliveries, settings.ctr_stream))
        notifications = upload_headers(setup, scenario)
        with counted.counter.window() as rec:
            drain(consumer, notifications)
        cpu = time.process_time() - cpu
        orders.append(OrderFigures("CTR first", ORDER_CONTACTS, ctr[0], rec[0], cpu, 0))
        emitted = {output_contact_id(r) for r in read_stream(setup, settings.output_stream)}
        orders[0].emitted = len(first_ids & emitted)
        orders[1].emitted = len(set(scenario.expected) & emitted)
        # Waves per batch of clean CTRs, recordings already there; then as many other CTRs
        # through the proxy's delay: the extra wall time / the delay = round trips waited for.
        waves: list[WaveFigures] = []
        for size in WAVE_BATCHES:
            figures = WaveFigures(size)
            for delayed in (False, True):
                scenario = clean_scenario(settings, seed=(200 if delayed else 100) + size, contacts=size)
                drain(consumer, upload_headers(setup, scenario))
                batch = _batch(scenario.deliveries, settings.ctr_stream)
                target = delayed_ingest if delayed else ingest
                proxy.latency(DELAY_S if delayed else 0.0)
                with counted.counter.window() as got:
                    started = time.perf_counter()
                    target.process(batch)
                    wall = time.perf_counter() - started
                proxy.latency(0.0)
                if delayed:
                    figures.delayed_wall = wall
                else:
                    figures.counts, figures.wall = got[0], wall
            waves.append(figures)
    finally:
        ingest.close()
        delayed_ingest.close()
    return orders, waves


# --- end to end ---------------------------------------------------------------------------------
@dataclass
class OutputWatch:
    """One reader of the output stream (from its start): contact id -> first arrival time."""

    aws: AwsClients
    stream: str
    seen: dict[str, datetime] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> OutputWatch:
        self._thread = threading.Thread(target=self._run, name="output-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(10)

    def _run(self) -> None:
        iterators = {
            s["ShardId"]: self.aws.kinesis.get_shard_iterator(
                StreamName=self.stream, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for s in self.aws.kinesis.list_shards(StreamName=self.stream)["Shards"]
        }
        while not self._stop.wait(0.2):
            for shard, iterator in list(iterators.items()):
                with suppress(Exception):
                    page = self.aws.kinesis.get_records(ShardIterator=iterator, Limit=10000)
                    for record in page["Records"]:
                        self.seen.setdefault(output_contact_id(record), record["ApproximateArrivalTimestamp"])
                    iterators[shard] = page["NextShardIterator"]

    def wait_for(self, ids: set[str], timeout: float) -> float:
        """Seconds until every id is on the output stream."""
        started = time.perf_counter()
        while not ids <= self.seen.keys():
            if time.perf_counter() - started > timeout:
                missing = len(ids - self.seen.keys())
                raise TimeoutError(
                    f"{missing} of {len(ids)} contacts not on the output stream in {timeout:.0f} s"
                )
            time.sleep(0.1)
        return time.perf_counter() - started


def wait_queue_empty(aws: AwsClients, queue_url: str, timeout: float = 300) -> None:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        attrs = aws.sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]  # type: ignore[arg-type]
        if all(int(attrs.get(n, "0")) == 0 for n in names):
            return
        time.sleep(0.5)
    raise TimeoutError("the recordings queue did not drain")


def naive(aws: AwsClients, stream: str, table: str) -> float:
    """One GetRecords loop per shard and one put_item per record: no join, no checks."""
    started = time.perf_counter()
    for shard in aws.kinesis.list_shards(StreamName=stream)["Shards"]:
        iterator = aws.kinesis.get_shard_iterator(
            StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while True:
            page = aws.kinesis.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                ctr = orjson.loads(record["Data"])
                aws.dynamodb.put_item(
                    TableName=table,
                    Item={"contact_id": {"S": ctr["ContactId"]}, "doc": {"S": record["Data"].decode()}},
                )
            if not page["Records"]:
                break
            iterator = page["NextShardIterator"]
    return time.perf_counter() - started


def raw_put_get(aws: AwsClients, stream: str, payloads: Sequence[bytes]) -> float:
    started = time.perf_counter()
    put_records(aws.kinesis, stream, [(p, str(i)) for i, p in enumerate(payloads)])
    got = len(read_stream(aws, stream))
    assert got >= len(payloads), (got, len(payloads))
    return time.perf_counter() - started


@dataclass
class EndToEnd:
    contacts: int
    seconds: float
    python_cpu_s: float
    other_cpu_s: float
    naive_s: float
    raw_s: float | None
    avg_record_bytes: float

    @property
    def rate(self) -> float:
        return self.contacts / self.seconds


class Service:
    """``qm-ingest run`` with every AWS endpoint at the proxy."""

    def __init__(self, endpoint: str, state: Path) -> None:
        env = {**os.environ, **FAST_START, "AWS_ENDPOINT_URL": endpoint}
        self.log = open(state / "service.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "processor", "run"], env=env, stdout=self.log, stderr=self.log
        )

    def cpu(self) -> Any:
        return tree_cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class E2e:
    def __init__(
        self, settings: Settings, direct: AwsClients, via_proxy: AwsClients, service: Service
    ) -> None:
        self.settings, self.direct, self.via_proxy, self.service = settings, direct, via_proxy, service
        self.queue_url = direct.sqs.get_queue_url(QueueName=settings.recordings_queue)["QueueUrl"]
        self.watch = OutputWatch(direct, settings.output_stream).start()
        self.tables = 0

    def warm_up(self) -> None:
        scenario = clean_scenario(self.settings, seed=1, contacts=4)
        upload_headers(self.direct, scenario)
        wait_queue_empty(self.direct, self.queue_url)
        put_records(self.direct.kinesis, self.settings.ctr_stream, [(p, "w") for p in scenario.deliveries])
        self.watch.wait_for(set(scenario.expected), timeout=180)

    def throughput(self, seed: int, contacts: int, *, raw: bool) -> EndToEnd:
        scenario = clean_scenario(self.settings, seed=seed, contacts=contacts)
        cpu_before = self.service.cpu()
        upload_headers(self.direct, scenario)  # the uploads themselves are not the service's
        wait_queue_empty(self.direct, self.queue_url)
        payloads = scenario.deliveries
        started = time.perf_counter()
        put_records(
            self.direct.kinesis, self.settings.ctr_stream, [(p, str(i)) for i, p in enumerate(payloads)]
        )
        self.watch.wait_for(set(scenario.expected), timeout=600)
        seconds = time.perf_counter() - started
        python_cpu, other_cpu = self.service.cpu().minus(cpu_before)
        # Baselines with the same records through the same proxy.
        self.tables += 1
        stream, table = f"bench-raw-{self.tables}", f"bench-naive-{self.tables}"
        self.direct.kinesis.create_stream(StreamName=stream, ShardCount=self.settings.ctr_stream_shards)
        self.direct.kinesis.get_waiter("stream_exists").wait(StreamName=stream)
        self.direct.dynamodb.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "contact_id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "contact_id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        raw_s = None
        if raw:
            raw_s = raw_put_get(self.via_proxy, stream, payloads)
        else:
            put_records(self.direct.kinesis, stream, [(p, str(i)) for i, p in enumerate(payloads)])
        naive_s = naive(self.via_proxy, stream, table)
        avg = sum(len(p) for p in payloads) / len(payloads)
        return EndToEnd(contacts, seconds, python_cpu, other_cpu, naive_s, raw_s, avg)

    def latency(self, seed: int) -> tuple[list[float], int]:
        """Latency of each contact at a steady LATENCY_RATE, recordings there first."""
        count = LATENCY_RATE * LATENCY_SECONDS
        scenario = clean_scenario(self.settings, seed=seed, contacts=count)
        upload_headers(self.direct, scenario)
        wait_queue_empty(self.direct, self.queue_url)
        payloads = scenario.deliveries
        tick, per_tick = 0.1, max(1, LATENCY_RATE // 10)
        started = time.perf_counter()
        for n, at in enumerate(range(0, len(payloads), per_tick)):
            put_records(
                self.direct.kinesis,
                self.settings.ctr_stream,
                [(p, f"l{at + i}") for i, p in enumerate(payloads[at : at + per_tick])],
            )
            pause = started + (n + 1) * tick - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        ids = set(scenario.expected)
        self.watch.wait_for(ids, timeout=300)
        arrived = {
            str(orjson.loads(r["Data"])["ContactId"]): r["ApproximateArrivalTimestamp"]
            for r in read_stream(self.direct, self.settings.ctr_stream)
        }
        latencies = sorted((self.watch.seen[c] - arrived[c]).total_seconds() for c in ids if c in arrived)
        return latencies, len(ids)


def percentile(values: Sequence[float], share: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(share * len(values)))]


# --- report -------------------------------------------------------------------------------------
def _target(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report_orders(orders: list[OrderFigures]) -> None:
    for order in orders:
        total = _sum(order.ctr_side, order.recordings_side)
        per = total.requests / order.contacts
        print(
            f"AWS requests per contact, {order.name:<16} {per:6.2f}  (CTR side "
            f"{order.ctr_side.requests / order.contacts:.2f} + recordings side "
            f"{order.recordings_side.requests / order.contacts:.2f}; target <= {TARGET_REQUESTS}: "
            f"{_target(per <= TARGET_REQUESTS)}; {order.emitted}/{order.contacts} on the output stream)"
        )
        print(f"    by operation: {format_breakdown(total, order.contacts)}")
        print(
            f"    CPU in process (time.process_time of the bench process): "
            f"{order.cpu_s / order.contacts * 1000:.2f} ms/contact"
        )
    baseline = 1.0  # the naive consumer: one PutItem per record (GetRecords shared by a page)
    worst = max(_sum(o.ctr_side, o.recordings_side).requests / o.contacts for o in orders)
    print(
        line(
            "AWS requests per contact (worse order)",
            worst,
            "req",
            "naive: one PutItem per record",
            baseline,
            lower_is_better=True,
        )
    )


def report_waves(waves: list[WaveFigures]) -> None:
    for w in waves:
        c = w.counts
        print(
            f"request waves per batch of {w.size:>3} clean CTRs: {c.waves:4d} (target <= {TARGET_WAVES}: "
            f"{_target(c.waves <= TARGET_WAVES)}); {c.requests} requests, at most {c.peak_in_flight} "
            f"in flight, {c.busy_seconds:.2f} s of {w.wall:.2f} s with one in flight"
        )
        print(
            f"    sequential requests on the busiest thread: {c.max_per_thread:4d};"
            f" round trips waited for (extra wall time with {DELAY_S * 1000:.0f} ms per request"
            f" / {DELAY_S * 1000:.0f} ms): {w.round_trips:6.1f} ({w.wall:.2f} s -> {w.delayed_wall:.2f} s)"
        )


def report_e2e(plain: EndToEnd, delayed: EndToEnd, shards: int, processors: str) -> None:
    print(
        f"qm-ingest run ({processors}), {plain.contacts} contacts without delay, "
        f"{delayed.contacts} with {DELAY_S * 1000:.0f} ms latency on every AWS request (fault proxy)"
    )
    assert plain.raw_s is not None
    print(
        line(
            "no delay: contacts/s",
            plain.rate,
            "/s",
            "raw put + get of the records",
            plain.contacts / plain.raw_s,
        )
    )
    print(
        line(
            "no delay: contacts/s",
            plain.rate,
            "/s",
            "naive GetRecords + PutItem",
            plain.contacts / plain.naive_s,
        )
    )
    naive_rate = delayed.contacts / delayed.naive_s
    print(
        line(
            f"{DELAY_S * 1000:.0f} ms delay: contacts/s",
            delayed.rate,
            "/s",
            "naive GetRecords + PutItem",
            naive_rate,
        )
    )
    print(
        f"    target {TARGET_SPEEDUP}x the naive consumer: "
        f"{_target(delayed.rate >= TARGET_SPEEDUP * naive_rate)}"
    )
    limit = SHARD_READ_BYTES_S / delayed.avg_record_bytes
    print(
        line(
            f"{DELAY_S * 1000:.0f} ms delay: contacts/s per shard ({shards})",
            delayed.rate / shards,
            "/s",
            f"shard read limit 2 MB/s at {delayed.avg_record_bytes:,.0f} B/CTR",
            limit,
        )
    )
    for name, figures in (("no delay", plain), (f"{DELAY_S * 1000:.0f} ms delay", delayed)):
        print(
            f"CPU per contact, {name}: {figures.python_cpu_s / figures.contacts * 1000:.2f} ms in the "
            f"service's Python processes, {figures.other_cpu_s / figures.contacts * 1000:.2f} ms in the "
            "others (KCL JVMs)"
            " (/proc utime+stime of the process tree of `qm-ingest run`, recordings handling included)"
        )


def run() -> None:
    state = Path(tempfile.mkdtemp(prefix="qm-bench-pipeline-"))
    with emulator() as endpoint:
        os.environ.update({"QM_STATE_DIR": str(state), "QM_APPLICATION_NAME": "bench-app"})
        settings = Settings()
        direct = AwsClients(settings)
        bootstrap(settings, direct)
        print(
            f"one embedded emulator, {settings.ctr_stream_shards} CTR shards{' (quick run)' if QUICK else ''}"
        )

        # Stopping the proxy drops its open connections' tasks: asyncio's complaints are noise here.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        with FaultProxy(urlsplit(endpoint).port or 0) as proxy:
            orders, waves = in_process(settings, direct, proxy)
            print(
                f"-- in process: build_ingest + the recordings consumer, {ORDER_CONTACTS} contacts per order"
            )
            report_orders(orders)
            report_waves(waves)
            via_proxy = AwsClients(Settings(aws_endpoint_url=proxy.endpoint))
            service = Service(proxy.endpoint, state)
            e2e = E2e(settings, direct, via_proxy, service)
            try:
                e2e.warm_up()
                plain = e2e.throughput(seed=41, contacts=CONTACTS, raw=True)
                proxy.latency(DELAY_S)
                delayed = e2e.throughput(seed=42, contacts=DELAYED_CONTACTS, raw=False)
                proxy.latency(0.0)
                latencies, expected = e2e.latency(seed=43)
            finally:
                e2e.watch.stop()
                service.stop()
        processors = (
            f"KCL, idleTimeBetweenReads {settings.kcl_idle_between_reads_ms} ms,"
            f" maxRecords {settings.kcl_max_records}"
        )
        print("-- end to end: " + processors)
        report_e2e(plain, delayed, settings.ctr_stream_shards, processors)
        p50, p99 = percentile(latencies, 0.50), percentile(latencies, 0.99)
        print(
            f"latency CTR arrival -> contact on the output stream (qm-ingest run, KCL), "
            f"{LATENCY_RATE} CTRs/s for "
            f"{LATENCY_SECONDS} s, recordings there first: p50 {p50:.2f} s, p99 {p99:.2f} s, max "
            f"{max(latencies, default=float('nan')):.2f} s over {len(latencies)}/{expected} contacts "
            f"(target p99 <= {TARGET_P99_S:.0f} s: {_target(p99 <= TARGET_P99_S)})"
        )
        if latencies:
            print(
                f"    mean {statistics.fmean(latencies):.2f} s"
                " (Kinesis ApproximateArrivalTimestamp on both streams)"
            )
