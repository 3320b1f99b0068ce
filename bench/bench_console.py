"""The console's Contacts page with 100,000 contacts in the emulator, against a raw index Query.

Loads QM_BENCH_CONTACTS (default 100,000) contacts over 30 days and 20 agents into the
contacts table of a private emulator, signs in, and times the page load (HTTP GET to the
rendered HTML) of: the newest day's first page, its next page (cursor), an agent's page
and a flag-filtered page. Each is set next to the raw boto3 ``Query`` that reads the same
page from the same index (the floor), and the scan-everything-then-sort listing the
console avoids is timed once for scale. moto answers a GSI Query by walking the whole
table in Python, so absolute times here grow with the table; on DynamoDB a page's Query
costs the same at any size.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import httpx

from bench.common import emulator, line, timed

CONTACTS = int(os.environ.get("QM_BENCH_CONTACTS", "100000"))
DAYS = 30
AGENTS = [f"agent.{n:02d}" for n in range(20)]
PAGE = 50
NOW = datetime(2024, 7, 1, 12, 0, tzinfo=UTC)


def _docs() -> list[dict]:
    from processor.console.samples import contact_doc

    start = NOW - timedelta(days=DAYS)
    step = (DAYS * 86400) / CONTACTS
    docs = []
    for i in range(CONTACTS):
        docs.append(
            contact_doc(
                f"bench-{i:07d}",
                agent=AGENTS[i % len(AGENTS)],
                first_name="Agent",
                last_name=f"{i % len(AGENTS):02d}",
                connected_at=start + timedelta(seconds=i * step),
                duration_seconds=120.0 + i % 300,
                direction="outbound" if i % 5 == 0 else "inbound",
                calling=f"+1425555{i % 10000:04d}",
                recording_location=None if i % 50 == 0 else f"qm-recordings/bench/{i}.wav",
                flags=["recording_missing"] if i % 50 == 0 else [],
            )
        )
    return docs


def _load(aws, table: str, docs: list[dict]) -> None:
    from processor.console.samples import put_contacts

    started = time.perf_counter()
    chunks = [docs[i : i + 2500] for i in range(0, len(docs), 2500)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda chunk: put_contacts(aws.dynamodb, table, chunk), chunks))
    seconds = time.perf_counter() - started
    print(f"loaded {len(docs):,} contacts in {seconds:.0f} s ({len(docs) / seconds:,.0f}/s)")


def _signed_in(url: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=120)
    login = client.get("/login").text
    marker = 'name="csrf_token" value="'
    csrf = login[login.index(marker) + len(marker) :].split('"', 1)[0]
    client.post("/login", data={"username": "bench", "password": "bench-password", "csrf_token": csrf})
    return client


def _scan_all(aws, table: str) -> None:
    """What a listing without the indexes would do: read everything, sort, show 50."""
    items = []
    for chunk in aws.dynamodb.get_paginator("scan").paginate(
        TableName=table, ProjectionExpression="contact_id, connected_at"
    ):
        items.extend(chunk["Items"])
    items.sort(key=lambda it: it.get("connected_at", {}).get("S", ""), reverse=True)
    assert len(items[:PAGE]) == min(PAGE, CONTACTS)


def run() -> None:
    from processor.adapters.aws import AwsClients
    from processor.console.app import create_app
    from processor.console.auth import ConsoleAccount, hash_password
    from processor.console.server import ConsoleServer, build_deps
    from processor.ops.bootstrap import bootstrap
    from processor.platform.settings import ConsoleRole, Settings

    with emulator():
        settings = Settings(console_port=0)
        aws = AwsClients(settings)
        bootstrap(settings, aws)
        docs = _docs()
        _load(aws, settings.contacts_table, docs)

        account = ConsoleAccount("bench", frozenset(ConsoleRole), hash_password("bench-password"), True)
        deps = build_deps(settings, aws, accounts=[account], now=lambda: NOW)
        server = ConsoleServer(create_app(deps), "127.0.0.1", 0).start()
        try:
            client = httpx.Client(base_url=server.url, timeout=120)
            login = client.get("/login").text
            marker = 'name="csrf_token" value="'
            csrf = login[login.index(marker) + len(marker) :].split('"', 1)[0]
            client.post(
                "/login", data={"username": "bench", "password": "bench-password", "csrf_token": csrf}
            )
            newest = docs[-1]["date"]

            def page(params: dict[str, str]) -> str:
                response = client.get("/contacts", params=params)
                assert response.status_code == 200, response.status_code
                assert response.text.count("data-contact=") == PAGE or CONTACTS < 20_000
                return response.text

            day = {"from": newest, "to": newest}
            first = page(day)
            cursor = first.split('id="next-page"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
            cursor_params = dict(httpx.QueryParams(cursor.split("?", 1)[1].replace("&amp;", "&")))

            def raw(index: str, condition: str, values: dict, extra: dict | None = None) -> None:
                response = aws.dynamodb.query(
                    TableName=settings.contacts_table,
                    IndexName=index,
                    KeyConditionExpression=condition,
                    ExpressionAttributeValues=values,
                    ScanIndexForward=False,
                    Limit=PAGE,
                    **(extra or {}),
                )
                assert len(response["Items"]) == PAGE or CONTACTS < 20_000

            before = (datetime.fromisoformat(newest) - timedelta(days=1)).date().isoformat()
            agent = {"from": before, "to": newest, "agent": AGENTS[3]}
            flag = {"from": newest, "to": newest, "flag": "recording_missing", "agent": AGENTS[0]}
            flag["from"] = (NOW - timedelta(days=DAYS)).date().isoformat()
            agent_values = {
                ":a": {"S": AGENTS[3]},
                ":lo": {"S": f"{before}T00:00:00.000Z"},
                ":hi": {"S": f"{newest}T23:59:59.999Z"},
            }
            cases = [
                (
                    f"Contacts page, newest day ({CONTACTS:,} contacts)",
                    lambda: page(day),
                    "raw Query by_date, Limit 50",
                    lambda: raw("by_date", "contact_date = :d", {":d": {"S": newest}}),
                ),
                (
                    "Contacts page 2 (cursor)",
                    lambda: page(cursor_params),
                    "raw Query by_date, Limit 50",
                    lambda: raw("by_date", "contact_date = :d", {":d": {"S": newest}}),
                ),
                (
                    "Contacts page, one agent, two days",
                    lambda: page(agent),
                    "raw Query by_agent, Limit 50",
                    lambda: raw("by_agent", "acd_id = :a AND connected_at BETWEEN :lo AND :hi", agent_values),
                ),
            ]
            for name, fn, base_name, base in cases:
                value = timed(fn, repeat=5) * 1000
                baseline = timed(base, repeat=5) * 1000
                print(line(name, value, "ms", base_name, baseline, lower_is_better=True))
            flagged = timed(lambda: page(flag), repeat=3) * 1000
            print(
                line(
                    "Contacts page, agent + flag filter, 30 days",
                    flagged,
                    "ms",
                    "raw Query by_agent, Limit 50",
                    timed(
                        lambda: raw(
                            "by_agent",
                            "acd_id = :a",
                            {":a": {"S": AGENTS[0]}},
                        ),
                        repeat=3,
                    )
                    * 1000,
                    lower_is_better=True,
                )
            )

            scan = timed(lambda: _scan_all(aws, settings.contacts_table), repeat=1) * 1000
            page_ms = timed(lambda: page(day), repeat=3) * 1000
            print(
                line(
                    "Contacts page, newest day",
                    page_ms,
                    "ms",
                    "scan all + sort (avoided)",
                    scan,
                    lower_is_better=True,
                )
            )
        finally:
            server.stop()
