"""``qm-ingest audit``: read what QM holds and judge it against an expectation.

Reads the contacts table, every record of the output stream (all shards, closed ones
included) and the quarantine, and hands them to the pure :func:`processor.core.scenario_verdict.audit`.
Run it after the service has caught up: contacts still waiting for a recording count as
lost.
"""

from __future__ import annotations

from collections.abc import Iterator

from processor.adapters.aws import AwsClients
from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.dynamodb.quarantine import DynamoQuarantine
from processor.adapters.kinesis.output import OutputStream
from processor.core.scenario_verdict import (
    AuditReport,
    Expectation,
    OutputRecord,
    QuarantinedItem,
    StoredContactState,
    audit,
    canonical_instant,
)
from processor.platform.retry import retry_transient
from processor.platform.settings import Settings

#: Reading a table or a stream may meet throttling; an audit gives up after this long.
MAX_RETRY_SECONDS = 120.0


def stored_contacts(settings: Settings, aws: AwsClients) -> list[StoredContactState]:
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)

    def read() -> list[StoredContactState]:
        return [
            StoredContactState(
                contact_id=c.contact_id,
                last_update=canonical_instant(c.last_update, c.contact_id),
                version=c.version,
                join_state=c.view.state.value,
                final=c.view.state.final,
            )
            for c in store.scan()
        ]

    return retry_transient(read, "audit.contacts", max_seconds=MAX_RETRY_SECONDS)


def output_records(settings: Settings, aws: AwsClients) -> list[OutputRecord]:
    stream = OutputStream(aws.kinesis, settings.output_stream)

    def read() -> list[OutputRecord]:
        return [OutputRecord(str(doc["contact_id"]), str(doc["version"])) for doc in stream.records()]

    return retry_transient(read, "audit.output", max_seconds=MAX_RETRY_SECONDS)


def quarantined_items(settings: Settings, aws: AwsClients) -> list[QuarantinedItem]:
    quarantine = DynamoQuarantine(aws.dynamodb, settings.quarantine_table)

    def read() -> Iterator[QuarantinedItem]:
        for reason, source, status in quarantine.summaries():
            # A retried entry was imported after a fix: it is no longer quarantined.
            if status == "open":
                yield QuarantinedItem(reason, source)

    return retry_transient(lambda: list(read()), "audit.quarantine", max_seconds=MAX_RETRY_SECONDS)


def run_audit(settings: Settings, aws: AwsClients, expectation: Expectation) -> AuditReport:
    return audit(
        expectation,
        stored_contacts(settings, aws),
        output_records(settings, aws),
        quarantined_items(settings, aws),
    )
