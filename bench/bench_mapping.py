"""Mapping + validation on one core: CTR/s through parse_ctr + map_contact, against json + dict access.

The baseline decodes the same bytes with the standard json module and reads the seed
table's fields from the dict, with no validation: the floor any importer pays.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from bench.common import line
from processor.core.ctr import parse_ctr
from processor.core.mapping import map_contact
from processor.simulation import build_scenario

N = 20_000


def _baseline(payloads: list[bytes]) -> float:
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
    base = max(_baseline(payloads) for _ in range(3))
    ours = max(_ours(payloads) for _ in range(3))
    print(f"{len(payloads)} simulated CTRs, {size:,.0f} bytes each, best of 3 runs, one core")
    print(
        line(
            "parse + schema validation + mapping", ours, "CTR/s", "json.loads + dict reads (no checks)", base
        )
    )
