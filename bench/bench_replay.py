"""Replay throughput per shard (records/s, MB/s): ``replay --direct`` through the whole CTR path,
against the emulator's raw GetRecords loop on the same records, and against the 2 MB/s a
shard serves its readers on real Kinesis.

One shard, ``QM_BENCH_REPLAY_RECORDS`` CTRs (default 2,000, ~3 kB each) on the embedded
emulator. Measured twice: into an empty contacts table (every contact joined, written and
emitted) and again over the imported contacts (the replay case: every record read,
parsed and compared, nothing written). The baseline reads the same shard with a bare
GetRecords loop (10,000 records a call, no pacing, no parsing).
"""

from __future__ import annotations

import os
import tempfile
import time

from bench.common import clean_contact_centre, emulator, line
from processor.adapters.aws import AwsClients
from processor.adapters.kinesis.put_records import put_records
from processor.app.wiring import build_ingest
from processor.ops.bootstrap import bootstrap
from processor.ops.replay import ReplayFrom, replay_direct
from processor.platform.settings import Settings

RECORDS = int(os.environ.get("QM_BENCH_REPLAY_RECORDS", "2000"))
KINESIS_READ_MB_S = 2.0  # per shard, shared by every reader of the shard (AWS quota)


def raw_loop(aws: AwsClients, stream: str) -> tuple[int, int, float]:
    started = time.perf_counter()
    count = size = 0
    shard = aws.kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    iterator = aws.kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    while True:
        page = aws.kinesis.get_records(ShardIterator=iterator, Limit=10_000)
        count += len(page["Records"])
        size += sum(len(r["Data"]) for r in page["Records"])
        if not page["Records"]:
            break
        iterator = page["NextShardIterator"]
    return count, size, time.perf_counter() - started


def run() -> None:
    with emulator():
        os.environ.update(
            {
                "QM_STATE_DIR": tempfile.mkdtemp(prefix="qm-bench-replay-"),
                "QM_CTR_STREAM": "bench-replay-ctr",
                "QM_CTR_STREAM_SHARDS": "1",
            }
        )
        settings = Settings()
        aws = AwsClients(settings)
        bootstrap(settings, aws)
        scenario = clean_contact_centre(aws, settings, seed=17, contacts=RECORDS)
        put_records(
            aws.kinesis, settings.ctr_stream, [(p, str(i)) for i, p in enumerate(scenario.deliveries)]
        )
        frm = ReplayFrom(trim_horizon=True)

        def replay() -> tuple[int, int, float]:
            ingest = build_ingest(settings, aws)
            try:
                report = replay_direct(settings, aws, frm, ingest=ingest, progress=False)
            finally:
                ingest.close()
            return report.records, report.bytes, report.seconds

        base_records, base_bytes, base_s = raw_loop(aws, settings.ctr_stream)
        first_records, first_bytes, first_s = replay()
        again_records, again_bytes, again_s = replay()
        assert base_records == first_records == again_records == len(scenario.deliveries)
    mb = base_bytes / 1e6
    print(
        f"{base_records} CTRs ({mb:.2f} MB, {base_bytes / base_records:,.0f} B each) "
        "on one shard, one emulator"
    )
    raw_rate, raw_mb = base_records / base_s, mb / base_s
    for name, records, size, seconds in (
        ("replay --direct, empty contacts table", first_records, first_bytes, first_s),
        ("replay --direct, contacts already imported", again_records, again_bytes, again_s),
    ):
        print(line(f"{name}, records/s", records / seconds, "/s", "raw GetRecords loop", raw_rate))
        print(line(f"{name}, MB/s", size / 1e6 / seconds, "MB/s", "raw GetRecords loop", raw_mb))
        print(
            line(
                f"{name}, MB/s",
                size / 1e6 / seconds,
                "MB/s",
                "Kinesis read limit per shard",
                KINESIS_READ_MB_S,
            )
        )
