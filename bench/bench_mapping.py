"""Mapping + validation on one core: CTR/s through parse_ctr + map_contact, against decoding alone.

Two baselines read the same bytes with no validation: ``orjson.loads`` alone (the decoder
parse_ctr uses, the floor of any importer built on it) and the standard json module plus
the seed table's field reads from the dict (the first baseline of this benchmark).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import orjson

from bench.common import line
from processor.core.ctr import parse_ctr
from processor.core.mapping import map_contact
from processor.devtools.simulated_centre import build_scenario

N = 20_000


def _orjson(payloads: list[bytes]) -> float:
    loads = orjson.loads
    started = time.perf_counter()
    for raw in payloads:
        loads(raw)
    return len(payloads) / (time.perf_counter() - started)


def _json_dict(payloads: list[bytes]) -> float:
    started = time.perf_counter()
    for raw in payloads:
        ctr = json.loads(raw)
        agent = ctr.get("Agent") or {}
        _ = (
            agent.get("Username"),
            (ctr.get("SystemEndpoint") or {}).get("Address"),
            (ctr.get("CustomerEndpoint") or {}).get("Address"),
            ctr["ContactId"],
            ctr["InitiationMethod"],
            agent.get("ConnectedToAgentTimestamp"),
        )
    return len(payloads) / (time.perf_counter() - started)


def _ours(payloads: list[bytes]) -> float:
    started = time.perf_counter()
    for raw in payloads:
        map_contact(parse_ctr(raw, max_bytes=1_048_576))
    return len(payloads) / (time.perf_counter() - started)


def run() -> None:
    scenario = build_scenario(
        seed=5, contacts=N, start=datetime(2026, 1, 1, tzinfo=UTC), duplicate_rate=0, update_rate=0
    )
    payloads = scenario.deliveries
    size = sum(map(len, payloads)) / len(payloads)
    map_contact(parse_ctr(payloads[0]))  # the one-time work: compiling the schema checks
    # Interleaved, best of 5 each: the three see the same machine load.
    ours = loads = json_dict = 0.0
    for _ in range(5):
        loads = max(loads, _orjson(payloads))
        ours = max(ours, _ours(payloads))
        json_dict = max(json_dict, _json_dict(payloads))
    print(f"{len(payloads)} simulated CTRs, {size:,.0f} bytes each, best of 5 runs, one core")
    name = "parse + full schema validation + mapping"
    print(line(name, ours, "CTR/s", "orjson.loads alone (no checks)", loads))
    print(line(name, ours, "CTR/s", "json.loads + dict reads (no checks)", json_dict))
