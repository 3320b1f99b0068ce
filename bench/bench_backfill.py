"""Backfill records/s: ``qm-ingest backfill`` (stream, split, map, join, emit, cursor) against a
plain loop that only downloads and parses the same Firehose objects.

``QM_BENCH_BACKFILL_RECORDS`` CTRs (default 2,000) written as Firehose does (100 a object,
gzip) to the embedded emulator, with their recordings (WAV headers: the join reads no
more). Also the object reader alone (gzip inflated chunk by chunk, records split with
resynchronisation) against ``gzip.decompress`` + ``split`` + ``orjson.loads`` of the
whole object in memory: the cost of streaming and of being able to resynchronise.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import time

import orjson

from bench.common import clean_contact_centre, emulator, line
from processor.adapters.aws import AwsClients
from processor.adapters.s3.archive import list_archive, read_object
from processor.app.wiring import build_ingest
from processor.core.firehose import read_archive_object
from processor.devtools.publish_simulation import archive_deliveries
from processor.ops.backfill import build_importer, looks_like_ctr, run_backfill
from processor.ops.bootstrap import bootstrap
from processor.platform.settings import Settings

RECORDS = int(os.environ.get("QM_BENCH_BACKFILL_RECORDS", "2000"))
PREFIX = "bench/"


def plain_loop(aws: AwsClients, bucket: str) -> tuple[int, float]:
    """Download each object whole, gunzip, split on record boundaries, parse each record."""
    started = time.perf_counter()
    count = 0
    for obj in list_archive(aws.s3, bucket, PREFIX, None, None):
        body = gzip.decompress(aws.s3.get_object(Bucket=bucket, Key=obj.key)["Body"].read())
        for piece in body.replace(b"}{", b"}\n{").split(b"\n"):
            if piece:
                orjson.loads(piece)
                count += 1
    return count, time.perf_counter() - started


def reader_loop(aws: AwsClients, bucket: str, max_bytes: int) -> tuple[int, float]:
    """The backfill's own reading: streamed, inflated and split chunk by chunk (no import)."""
    started = time.perf_counter()
    count = 0
    for obj in list_archive(aws.s3, bucket, PREFIX, None, None):
        for item in read_archive_object(
            read_object(aws.s3, obj), max_record_bytes=max_bytes, looks_like_record=looks_like_ctr
        ):
            if item.problem is None:
                orjson.loads(item.data)
                count += 1
    return count, time.perf_counter() - started


def run() -> None:
    with emulator():
        os.environ["QM_STATE_DIR"] = tempfile.mkdtemp(prefix="qm-bench-backfill-")
        settings = Settings()
        aws = AwsClients(settings)
        bootstrap(settings, aws)
        scenario = clean_contact_centre(aws, settings, seed=23, contacts=RECORDS)
        bucket = settings.archive_bucket
        written = archive_deliveries(aws, bucket, PREFIX, scenario.deliveries, per_object=100, compress=True)
        objects = list_archive(aws.s3, bucket, PREFIX, None, None)

        plain_count, plain_s = plain_loop(aws, bucket)
        reader_count, reader_s = reader_loop(aws, bucket, settings.max_record_bytes)
        ingest = build_ingest(settings, aws)
        try:
            report = run_backfill(build_importer(settings, aws, ingest), objects, progress=False)
        finally:
            ingest.close()
        assert plain_count == reader_count == report.records == len(scenario.deliveries)
        assert report.imported == RECORDS and not report.failed_objects
    size = sum(o.size for o in objects)
    print(f"{report.records} CTRs in {len(written)} gzip objects ({size / 1e6:.2f} MB stored), one emulator")
    plain_rate = plain_count / plain_s
    print(
        line(
            "backfill (2 objects at a time), records/s",
            report.records / report.seconds,
            "/s",
            "plain download + parse loop",
            plain_rate,
        )
    )
    print(
        line(
            "object reader alone (streamed, resyncing), records/s",
            reader_count / reader_s,
            "/s",
            "plain download + parse loop",
            plain_rate,
        )
    )
