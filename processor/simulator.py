"""``qm-ingest simulate``: publish a simulated contact centre (users + CTR stream)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson

from processor.adapters.aws import AwsClients
from processor.adapters.kinesis import put_records
from processor.adapters.users import DynamoUserDirectory
from processor.core.users import QmUser
from processor.settings import Settings
from processor.simulation import DEFAULT_INSTANCE_ARN, Scenario, build_scenario


@dataclass(frozen=True)
class PublishedScenario:
    scenario: Scenario
    expected: dict[str, str]
    deliveries: int
    users: list[QmUser]


def publish_scenario(
    settings: Settings,
    aws: AwsClients,
    *,
    contacts: int,
    seed: int | None = None,
    start: datetime | None = None,
) -> PublishedScenario:
    seed = seed if seed is not None else time.time_ns() % 2**31
    start = start or datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    scenario = build_scenario(
        seed=seed,
        contacts=contacts,
        start=start,
        instance_arn=settings.instance_arn or DEFAULT_INSTANCE_ARN,
        bucket=settings.recordings_bucket,
    )
    users = scenario.users()
    directory = DynamoUserDirectory(aws.dynamodb, settings.users_table)
    for user in users:
        directory.put(user)
    records = [(payload, orjson.loads(payload)["ContactId"]) for payload in scenario.deliveries]
    put_records(aws.kinesis, settings.ctr_stream, records)
    return PublishedScenario(scenario, dict(scenario.expected), len(records), users)
