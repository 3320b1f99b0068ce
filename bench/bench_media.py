"""Bytes read per recording to learn its duration (ranged GETs of the header), against downloading it."""

from __future__ import annotations

import time

from bench.common import emulator, line
from processor.adapters.aws import AwsClients
from processor.adapters.s3.call_recordings import S3Media
from processor.devtools.simulated_centre import wav_bytes
from processor.platform.settings import Settings

LENGTHS = [15.0, 60.0, 180.0, 600.0]


def run() -> None:
    with emulator():
        aws = AwsClients(Settings())
        aws.s3.create_bucket(Bucket="bench-media")
        media = S3Media(aws.s3)
        read_total = size_total = 0
        ours_s = full_s = 0.0
        for seconds in LENGTHS:
            body = wav_bytes(seconds)
            key = f"connect/x/CallRecordings/{seconds}.wav"
            aws.s3.put_object(Bucket="bench-media", Key=key, Body=body)
            started = time.perf_counter()
            duration = media.duration(f"bench-media/{key}", len(body))
            ours_s += time.perf_counter() - started
            assert abs(duration.seconds - seconds) < 0.001
            started = time.perf_counter()
            downloaded = aws.s3.get_object(Bucket="bench-media", Key=key)["Body"].read()
            full_s += time.perf_counter() - started
            read_total += duration.bytes_read
            size_total += len(downloaded)
        n = len(LENGTHS)
        print(f"{n} Connect-format recordings of {', '.join(f'{s:.0f}' for s in LENGTHS)} s")
        print(
            line(
                "bytes read per recording (header, ranged GET)",
                read_total / n,
                "bytes",
                "bytes per recording (whole download)",
                size_total / n,
                lower_is_better=True,
            )
        )
        print(
            line(
                "time per recording (header)",
                ours_s / n * 1000,
                "ms",
                "time per recording (download)",
                full_s / n * 1000,
                lower_is_better=True,
            )
        )
