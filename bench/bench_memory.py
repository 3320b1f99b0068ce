"""Peak RSS of a CTR record processor while 100,000 contacts wait for their recordings.

Join state lives in DynamoDB, not in the processor: its memory must not grow with the
number of contacts in the window. Baseline: the same process's peak after its first
1,000 waiting contacts.
"""

from __future__ import annotations

import os
import resource
import time
from datetime import UTC, datetime

import orjson

from bench.common import emulator, line
from processor.adapters.aws import AwsClients
from processor.app.wiring import build_ingest
from processor.core.batch import StreamRecord
from processor.devtools.simulated_centre import build_scenario
from processor.ops.bootstrap import bootstrap
from processor.platform.exceptions import SourcePosition
from processor.platform.settings import Settings

WAITING = int(os.environ.get("QM_BENCH_WAITING", "100000"))
BATCH = 500


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run() -> None:
    with emulator():
        os.environ["QM_JOIN_WINDOW_SECONDS"] = str(7 * 24 * 3600)  # nobody's window closes
        settings = Settings()
        aws = AwsClients(settings)
        bootstrap(settings, aws)
        ingest = build_ingest(settings, aws)
        done = 0
        baseline = 0.0
        started = time.perf_counter()
        seed = 0
        while done < WAITING:
            scenario = build_scenario(
                seed=seed,
                contacts=BATCH,
                start=datetime(2026, 1, 1, tzinfo=UTC),
                duplicate_rate=0,
                update_rate=0,
                missing_rate=1.0,  # every S3 recording is expected, none arrives
            )
            seed += 1
            waiting = [  # only contacts that expect a recording: every one of them waits
                p
                for p in scenario.deliveries
                if scenario.expected_state[orjson.loads(p)["ContactId"]] == "recording_missing"
            ]
            records = [
                StreamRecord(p, SourcePosition("kinesis", settings.ctr_stream, "shardId-0", str(done + i)))
                for i, p in enumerate(waiting[: WAITING - done])
            ]
            ingest.process(records)
            done += len(records)
            if done >= 1000 and not baseline:
                baseline = peak_rss_mb()
            if done % 10_000 < BATCH:
                print(
                    f"  {done:,} contacts in the window, peak RSS {peak_rss_mb():.1f} MB, "
                    f"{done / (time.perf_counter() - started):,.0f} CTR/s",
                    flush=True,
                )
        waiting, _ = build_ingest(settings, aws)._joiner.joins.count_pending()  # type: ignore[attr-defined]
        print(f"{done:,} CTRs processed, {waiting:,} contacts waiting in the join table")
        print(
            line(
                f"peak RSS with {done:,} contacts waiting",
                peak_rss_mb(),
                "MB",
                "peak RSS with 1,000 contacts waiting",
                baseline,
                lower_is_better=True,
            )
        )
