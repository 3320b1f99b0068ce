"""Poison against transient, through the real service behind the fault proxy.

* Throttling and 5xx answers (DynamoDB writes of contacts, the output stream's puts, S3's
  ranged reads of recordings, SQS deletes, the KCL's lease updates) are retried: every
  contact is imported, none of them is quarantined.
* Poison (bad JSON, a wrong shape, absurd timestamps) is quarantined once and the shard
  moves past it: checkpoints reach the end of every shard.
* A batch that fails for any other reason (here: access denied on one contact's writes) is
  never skipped: its record processor retries it in place with back-off, its shard waits
  (its checkpoint does not move) while the other shard goes on, ``/readyz`` answers 503
  naming the shard, and once the cause is gone the batch goes through. No process exits:
  an exit would take the whole KCL daemon, every shard, down with it.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.kinesis.put_records import put_records
from processor.devtools.faultproxy import (
    FaultProxy,
    Injection,
    aws_json_error,
    s3_error,
    server_error,
    throttling,
)
from tests.e2e.test_operations import by_name, scrape
from tests.faults.harness import (
    SERVICE_ENV,
    Figures,
    assert_clean,
    checkpoints,
    contact_centre,
    delivered,
    expectation,
    judge,
    log_events,
    phases,
    publish,
    service_processes,
    wait_audit_ok,
    wait_caught_up,
    wait_for,
)
from tests.helpers import ServiceProcess

pytestmark = [pytest.mark.faults, pytest.mark.e2e]

POISON = {
    b"{not json at all": "bad_json",
    b'"just a string"': "not_an_object",
    b'{"ContactId": 42, "InstanceARN": "x"}': "schema",
    orjson.dumps(
        {
            "ContactId": "poison-ts",
            "InstanceARN": "arn:aws:connect:us-east-1:123456789012:instance/x",
            "InitiationMethod": "INBOUND",
            "LastUpdateTimestamp": "1970-01-01T00:00:00Z",
        }
    ): "absurd_timestamp",
}


def slow_down(bucket: str, times: int) -> Injection:
    """S3's throttling answer (REST-XML), on ranged reads of the recordings bucket."""
    return s3_error(
        "SlowDown", "Please reduce your request rate.", status=503, path=f"GET /{bucket}/", times=times
    )


def test_transient_errors_are_retried_poison_is_quarantined_once(
    bootstrapped, aws, tmp_path: Path, *, services: list[ServiceProcess], record_figures, proxy: FaultProxy
) -> None:
    started_at = time.monotonic()
    settings = bootstrapped
    centre = contact_centre(91, 80, settings.recordings_bucket)
    contacts = f'"{settings.contacts_table}"'.encode()
    rules = {
        # The contacts are written in transactions, read in bulk, emitted in one put a batch:
        # each injected failure holds back a whole batch's request, retried as a whole.
        "contacts TransactWriteItems throttled": proxy.inject(
            throttling("DynamoDB_20120810.TransactWriteItems", contains=contacts, times=16)
        ),
        "contacts BatchGetItem 500": proxy.inject(
            server_error("DynamoDB_20120810.BatchGetItem", contains=contacts, times=10)
        ),
        "output PutRecords 500": proxy.inject(
            server_error("Kinesis_20131202.PutRecords", contains=settings.output_stream.encode(), times=6)
        ),
        "recording GET SlowDown": proxy.inject(slow_down(settings.recordings_bucket, 15)),
        "SQS DeleteMessageBatch 500": proxy.inject(server_error("AmazonSQS.DeleteMessageBatch", times=5)),
        "KCL lease UpdateItem throttled": proxy.inject(
            throttling(
                "DynamoDB_20120810.UpdateItem", contains=f'"{settings.application_name}"'.encode(), times=4
            )
        ),
    }
    log = tmp_path / "service.log"
    # Three attempts per call inside botocore: a call throttled three times in a row is retried
    # by the service itself (asserted below) after seconds of back-off, not half a minute.
    env = {**SERVICE_ENV, "AWS_ENDPOINT_URL": proxy.endpoint, "QM_AWS_MAX_ATTEMPTS": "3"}
    service = ServiceProcess(log, env).start()
    services.append(service)
    first, second = phases(centre, 2)
    publish(aws, settings.ctr_stream, first)
    put_records(aws.kinesis, settings.ctr_stream, [(p, f"poison-{i}") for i, p in enumerate(POISON)])
    publish(aws, settings.ctr_stream, second)
    expect = expectation(
        centre,
        quarantined={
            "total": len(POISON),
            "by_reason": {r: 1 for r in POISON.values()},
            "by_source": {"kinesis": 4},
        },
    )
    wait_audit_ok(settings, aws, expect, 240)
    retried = sum(by_name(scrape(service), "qm_retries_total").values())
    service.stop()
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    for name, rule in rules.items():
        assert rule.hits == rule.times, f"{name}: {rule.hits} of {rule.times} injected"
    assert retried > 0, "transient failures were retried by the service, not only inside botocore"
    # Poison was not retried forever: every shard is checkpointed up to its last record.
    last_on_shard: dict[str, str] = {}
    for shard in aws.kinesis.list_shards(StreamName=settings.ctr_stream)["Shards"]:
        iterator = aws.kinesis.get_shard_iterator(
            StreamName=settings.ctr_stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records = aws.kinesis.get_records(ShardIterator=iterator, Limit=10000)["Records"]
        if records:
            last_on_shard[shard["ShardId"]] = records[-1]["SequenceNumber"]
    table = checkpoints(aws, settings.application_name)
    assert {shard: table.get(shard) for shard in last_on_shard} == last_on_shard
    quarantined = [e for e in log_events(log) if e.get("event") == "record quarantined"]
    assert {e["reason"] for e in quarantined} == set(POISON.values())
    record_figures(
        Figures(
            "poison vs transient (throttling, 5xx on 6 operations; 4 poison records)",
            report,
            [],
            f"{sum(r.hits for r in rules.values())} injected errors retried, none quarantined; "
            "poison quarantined once, checkpoints at the end of every shard",
            time.monotonic() - started_at,
        )
    )


def shard_of(aws: Any, stream: str) -> Any:
    """contact id -> the shard its CTRs go to (partition key = ContactId, Kinesis's MD5 ranges)."""
    shards = aws.kinesis.list_shards(StreamName=stream)["Shards"]
    ranges = [
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]), s["ShardId"])
        for s in shards
        if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})
    ]

    def find(contact_id: str) -> str:
        key = int(hashlib.md5(contact_id.encode()).hexdigest(), 16)  # Kinesis's hash
        return next(shard for low, high, shard in ranges if low <= key <= high)

    return find


def readiness(service: ServiceProcess) -> tuple[int, dict[str, str]]:
    """/readyz's status and its failed checks (name -> detail)."""
    status, body = service.get("/readyz")
    checks = orjson.loads(body).get("checks", []) if body else []
    return status, {c["name"]: c["detail"] for c in checks if not c["ok"]}


def test_a_failed_batch_is_replayed_never_skipped(
    bootstrapped, aws, tmp_path: Path, *, services: list[ServiceProcess], record_figures, proxy: FaultProxy
) -> None:
    """amazon_kclpy reports a batch done even when the record processor raised; the next
    batch's checkpoint would then pass over it. The processor retries the batch in place
    instead: nothing skipped, nothing exits, the other shard carries on."""
    started_at = time.monotonic()
    settings = bootstrapped
    app = settings.application_name
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    centre = contact_centre(93, 60, settings.recordings_bucket)
    first, second, third = phases(centre, 3)
    log = tmp_path / "service.log"
    service = ServiceProcess(log, {**SERVICE_ENV, "AWS_ENDPOINT_URL": proxy.endpoint}).start()
    services.append(service)
    publish(aws, settings.ctr_stream, first)
    wait_caught_up(store, delivered(first), time.monotonic(), 150)
    wait_for(lambda: service.get("/readyz")[0] == 200, 60, "/readyz 200 before the fault")
    processors = set(service_processes(service, "ctr_worker"))
    assert processors

    # Access denied on every write of one contact of the second phase, until the cause is gone:
    # the batch holding it fails on one shard; the other shard has nothing to do with it.
    shard = shard_of(aws, settings.ctr_stream)
    victim = next(cid for cid in delivered(second) if cid not in delivered(first))
    stuck = shard(victim)
    denied = aws_json_error(
        "AccessDeniedException", "User is not authorized to perform: dynamodb:TransactWriteItems"
    )
    denied.target, denied.contains, denied.times = (
        "DynamoDB_20120810.TransactWriteItems",
        victim.encode(),
        None,
    )
    proxy.inject(denied)
    publish(aws, settings.ctr_stream, second)
    wait_for(lambda: denied.hits >= 2, 60, "the denied batch to be tried again")
    failed_at = time.monotonic()
    held_checkpoint = checkpoints(aws, app)[stuck]
    publish(aws, settings.ctr_stream, third)  # later batches must not checkpoint past the failed one

    _, failing = wait_for(
        lambda: (r := readiness(service))[0] == 503 and "batches" in r[1] and r, 30, "/readyz 503"
    )
    not_ready_after = time.monotonic() - failed_at
    assert f"{settings.ctr_stream}/{stuck}" in failing["batches"], failing
    assert "AccessDeniedException" in failing["batches"], failing

    # The other shard goes on while this one waits.
    sent = delivered(first + second + third)
    elsewhere = {cid: v for cid, v in sent.items() if shard(cid) != stuck}
    assert elsewhere and len(elsewhere) < len(sent)
    wait_caught_up(store, elsewhere, failed_at, 120)
    have = {c.contact_id: c.last_update for c in store.scan()}
    waiting = [cid for cid, v in delivered(third).items() if shard(cid) == stuck and have.get(cid, "") < v]
    assert waiting, "the stuck shard's later records wait behind the failed batch"
    assert checkpoints(aws, app)[stuck] == held_checkpoint, "checkpointed past the failed batch"
    # It keeps waiting, its retries further apart (1, 2, 4 s, ...), /readyz 503 all along.
    wait_for(lambda: denied.hits >= 4, 60, "more retries of the denied batch")
    assert readiness(service)[0] == 503
    assert checkpoints(aws, app)[stuck] == held_checkpoint
    stuck_for = time.monotonic() - failed_at

    # The cause goes away: the batch goes through on its next retry, the shard catches up.
    proxy.clear()
    healed = time.monotonic()
    recovery = wait_caught_up(store, sent, healed, 120)
    wait_for(lambda: readiness(service)[0] == 200, 60, "/readyz 200 after the fault")
    ready_after = time.monotonic() - healed
    metrics = scrape(service)
    starts = by_name(metrics, "qm_kcl_daemon_starts_total")
    expect = expectation(centre)
    wait_audit_ok(settings, aws, expect, 120)
    # No record processor exited (an exit takes its whole daemon down): the same ones still run.
    assert processors <= set(service_processes(service, "ctr_worker"))
    service.stop()
    assert starts and set(starts.values()) == {1.0}, starts
    report = judge(expect, tmp_path / "expect.json")
    assert_clean(report)
    events = log_events(log)
    failures = [e for e in events if e.get("event", "").startswith("batch failed")]
    assert failures and all(e["event"].startswith("batch failed; retrying it in place") for e in failures)
    assert {e["code"] for e in failures} == {"AccessDeniedException"}
    assert {e["shard_id"] for e in failures} == {stuck}
    assert any(e.get("event") == "failed batch succeeded on a retry" for e in events)
    record_figures(
        Figures(
            "batch failing with a non-transient error (access denied on one shard until fixed)",
            report,
            [recovery],
            f"{len(failures)} retries in place, no process exit; the other shard caught up meanwhile; "
            f"/readyz 503 {not_ready_after:.1f} s after the failure (stuck {stuck_for:.0f} s), "
            f"200 again {ready_after:.1f} s after the fix",
            time.monotonic() - started_at,
        )
    )
