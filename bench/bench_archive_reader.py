"""Firehose archive reader on hostile objects: ms per MiB, against a clean MiB of CTRs.

Each hostile object is 1 MiB of crafted bytes between two good CTRs (the security review's
``{"`` flood, a malformed 1 MiB record, nesting, and stretches built so that every few bytes
is a record start that passes the start pattern). The reader must recover both CTRs and
report the rest as one located problem in about the time of a clean object; the figures
are read time only (no AWS), best of three.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime

import orjson

from bench.common import line
from processor.core.firehose import read_archive_object
from processor.core.jsonstream import JsonValueSplitter
from processor.devtools.simulated_centre import build_scenario

MIB = 1 << 20
CHUNK = 1 << 20  # what the archive adapter streams with (READ_CHUNK)


def _ctrs(n: int) -> list[bytes]:
    scenario = build_scenario(seed=5, contacts=n, start=datetime(2026, 1, 1, tzinfo=UTC), duplicate_rate=0)
    return scenario.deliveries[:n]


def _looks_like_ctr(value: object) -> bool:
    return isinstance(value, dict) and "ContactId" in value


def _read_ms(data: bytes) -> tuple[float, int, int]:
    best = float("inf")
    records = problems = 0
    for _ in range(1 if os.environ.get("BENCH_QUICK") else 3):
        started = time.perf_counter()
        items = list(
            read_archive_object(
                (data[i : i + CHUNK] for i in range(0, len(data), CHUNK)),
                max_record_bytes=MIB,
                looks_like_record=_looks_like_ctr,
            )
        )
        best = min(best, time.perf_counter() - started)
        records = sum(1 for i in items if i.problem is None)
        problems = len(items) - records
    return best * 1000 * MIB / len(data), records, problems


def _splitter_ms(data: bytes) -> float:
    """A clean object the way the reader read it before (brace-counting splitter + orjson)."""
    best = float("inf")
    for _ in range(1 if os.environ.get("BENCH_QUICK") else 3):
        started = time.perf_counter()
        splitter = JsonValueSplitter(max_value_bytes=MIB)
        for i in range(0, len(data), CHUNK):
            for value in splitter.feed(data[i : i + CHUNK]):
                orjson.loads(value.data)
        best = min(best, time.perf_counter() - started)
    return best * 1000 * MIB / len(data)


def hostile_objects(good: bytes) -> dict[str, bytes]:
    def fill(unit: bytes) -> bytes:
        return (unit * (MIB // len(unit) + 1))[:MIB]

    return {
        '{" flood': good + fill(b'{"') + good,
        "one malformed 1 MiB record": good
        + fill(b'{"ContactId":"z","Junk":"' + b'{\\"' * 1000)
        + b"}"
        + good,
        "{ flood": good + fill(b"{") + good,
        "nesting that never closes": good + fill(b'{"a":') + b"1}" + good,
        'x{"a":0 (a start every 8 bytes)': good + fill(b'x{"a":0') + good,
        "mixed JSON fragments": good + fill(b'{"a":"b{"c":[1,{"d":') + good,
    }


def run() -> None:
    ctrs = _ctrs(400)
    clean = b"".join(ctrs)
    while len(clean) < MIB:
        clean += clean
    clean_ms, _, _ = _read_ms(clean)
    before_ms = _splitter_ms(clean)
    print(
        line(
            "clean 1 MiB of CTRs",
            clean_ms,
            "ms/MiB",
            "same, splitter + orjson (before)",
            before_ms,
            lower_is_better=True,
        )
    )
    for name, data in hostile_objects(ctrs[0]).items():
        ms, records, problems = _read_ms(data)
        print(line(name, ms, "ms/MiB", "clean 1 MiB of CTRs", clean_ms, lower_is_better=True))
        print(f"    records recovered {records} of 2, located problems {problems}")
