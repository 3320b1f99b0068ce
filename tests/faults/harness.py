"""What every fault scenario shares: a known set of contacts sent in phases, the service run as
users run it, the time to recover measured, and ``qm-ingest audit`` as the single judge.

A scenario builds a simulated contact centre (recordings before/after/never, duplicates,
updates), sends it phase by phase while it breaks things, waits until the service has caught
up, then runs the real ``qm-ingest audit --expect FILE --json`` and records its figures.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.kinesis.put_records import put_records
from processor.core.scenario_verdict import Expectation, ExpectedContact
from processor.devtools.publish_simulation import upload_recording
from processor.devtools.simulated_centre import RecordingUpload, Scenario, build_scenario
from processor.ops.scenario_audit import run_audit
from tests.helpers import ServiceProcess, descendants

#: A short join window, so contacts whose recording never comes are final within the test.
SERVICE_ENV = {
    "QM_JOIN_WINDOW_SECONDS": "15",
    "QM_SWEEP_INTERVAL_SECONDS": "1",
    "QM_RELEASE_INTERVAL_SECONDS": "3600",
}

Event = bytes | RecordingUpload


def contact_centre(
    seed: int, contacts: int, bucket: str, *, day: int = 1, instance_arn: str | None = None
) -> Scenario:
    kwargs: dict[str, Any] = {}
    if instance_arn is not None:
        kwargs["instance_arn"] = instance_arn
    return build_scenario(
        seed=seed,
        contacts=contacts,
        start=datetime(2026, 5, day, 9, tzinfo=UTC),
        bucket=bucket,
        max_talk_seconds=120,
        missing_rate=0.1,
        **kwargs,
    )


def phases(scenario: Scenario, count: int) -> list[list[Event]]:
    """The scenario's events (CTR deliveries and recording uploads, in order) cut in ``count``."""
    # Exactly ``count`` parts, as even as can be: with ceiling-sized slices, 341 events in 20
    # parts gave 19 (slices of 18), and a scenario indexing its 20th part failed.
    events = scenario.events
    size, extra = divmod(len(events), count)
    parts, start = [], 0
    for index in range(count):
        end = start + size + (1 if index < extra else 0)
        parts.append(events[start:end])
        start = end
    return parts


def publish(aws: Any, stream: str, events: Sequence[Event], kinesis: Any = None) -> None:
    """Send events as Connect would: CTRs on the stream (partition key = ContactId), recordings to S3."""
    client = kinesis or aws.kinesis
    pending: list[tuple[bytes, str]] = []

    def flush() -> None:
        if pending:
            put_records(client, stream, pending)
            pending.clear()

    for event in events:
        if isinstance(event, RecordingUpload):
            flush()
            upload_recording(aws, event)
        else:
            pending.append((event, _partition_key(event)))
    flush()


def _partition_key(payload: bytes) -> str:
    try:
        key = orjson.loads(payload).get("ContactId")
    except (orjson.JSONDecodeError, AttributeError):
        key = None
    return key if isinstance(key, str) and key else f"k{len(payload)}"


def delivered(events: Sequence[Event]) -> dict[str, str]:
    """contact id -> newest LastUpdateTimestamp among the CTRs in ``events`` (stored form)."""
    from processor.core.scenario_verdict import canonical_instant

    newest: dict[str, str] = {}
    for event in events:
        if isinstance(event, RecordingUpload):
            continue
        ctr = orjson.loads(event)
        version = canonical_instant(ctr["LastUpdateTimestamp"], "LastUpdateTimestamp")
        if version > newest.get(ctr["ContactId"], ""):
            newest[ctr["ContactId"]] = version
    return newest


def stored_versions(store: DynamoContactStore) -> dict[str, str]:
    return {c.contact_id: c.last_update for c in store.scan()}


def caught_up(store: DynamoContactStore, sent: dict[str, str]) -> bool:
    """Every contact sent so far is stored at its newest version (final or still waiting), and
    no stored version waits to be emitted (a crash between a write and its emission)."""
    have = {c.contact_id: (c.last_update, c.emission_pending) for c in store.scan()}
    return all(cid in have and have[cid][0] >= version and not have[cid][1] for cid, version in sent.items())


def wait_caught_up(
    store: DynamoContactStore,
    sent: dict[str, str],
    since: float,
    timeout: float,
    diagnose: Callable[[], Any] | None = None,
) -> float:
    """Seconds from ``since`` (time.monotonic) until the service has caught up with ``sent``.
    On a timeout the error carries what ``diagnose`` returns (e.g. the KCL's tables)."""
    deadline = time.monotonic() + timeout
    while not caught_up(store, sent):
        if time.monotonic() > deadline:
            have = stored_versions(store)
            behind = [cid for cid, v in sent.items() if have.get(cid, "") < v]
            pending = pending_emissions(store, sent)
            state = f"\n{diagnose()}" if diagnose else ""
            raise AssertionError(
                f"not caught up after {timeout:.0f}s: {len(behind)} contacts behind, e.g. {behind[:3]}; "
                f"{len(pending)} emissions pending, e.g. {pending[:3]}{state}"
            )
        time.sleep(0.5)
    return time.monotonic() - since


def pending_emissions(store: DynamoContactStore, sent: dict[str, str]) -> list[dict[str, str]]:
    """The stored versions still waiting to be emitted, with their outbox attributes: who holds
    the claim and since when (a holder that died leaves it for the next visit of the contact)."""
    found = []
    for contact in store.scan():
        if contact.contact_id not in sent or not contact.emission_pending:
            continue
        item = store._ddb.get_item(
            TableName=store._table, Key={"contact_id": {"S": contact.contact_id}}, ConsistentRead=True
        ).get("Item", {})
        found.append(
            {"contact_id": contact.contact_id, "checked_at": datetime.now(UTC).isoformat()}
            | {
                name: str(next(iter(item[name].values())))
                for name in ("version", "state", "emit_claim", "emit_claimed_at", "emit_attempted_at")
                if name in item
            }
        )
    return found


def kcl_state(aws: Any, application: str) -> str:
    """The KCL's own tables (leases, leader lock and migration state, worker metrics), for failures."""
    lines = []
    for table in (application, f"{application}-CoordinatorState", f"{application}-WorkerMetricStats"):
        try:
            items: Any = aws.dynamodb.scan(TableName=table, ConsistentRead=True)["Items"]
        except Exception as exc:
            items = f"{type(exc).__name__}: {exc}"
        lines.append(f"{table}: {orjson.dumps(items, default=str).decode()}")
    return "\n".join(lines)


def expectation(*scenarios: Scenario, quarantined: dict[str, Any] | None = None) -> Expectation:
    contacts: dict[str, ExpectedContact] = {}
    for scenario in scenarios:
        contacts.update(scenario.expectation().contacts)
    quarantined = quarantined or {}
    return Expectation(
        contacts,
        quarantined_total=quarantined.get("total"),
        quarantined_by_reason=quarantined.get("by_reason"),
        quarantined_by_source=quarantined.get("by_source"),
    )


def wait_audit_ok(settings: Any, aws: Any, expect: Expectation, timeout: float) -> float:
    """Poll the audit (in process) until it passes; returns how long it took. The verdict
    itself comes from :func:`judge`, the real command."""
    started = time.monotonic()
    deadline = started + timeout
    while True:
        report = run_audit(settings, aws, expect)
        if report.ok:
            return time.monotonic() - started
        if time.monotonic() > deadline:
            return time.monotonic() - started  # the judge reports what is wrong
        time.sleep(1.0)


def judge(expect: Expectation, path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """``qm-ingest audit --expect FILE --json``, the command users run; its report as a dict."""
    path.write_bytes(orjson.dumps(expect.to_dict()))
    result = subprocess.run(
        [sys.executable, "-m", "processor", "audit", "--expect", str(path), "--json"],
        capture_output=True,
        env={**os.environ, **(env or {})},
        timeout=300,
        check=False,
    )
    assert result.stdout, result.stderr.decode(errors="replace")[-2000:]
    report: dict[str, Any] = orjson.loads(result.stdout)
    report["exit_code"] = result.returncode
    return report


def assert_clean(report: dict[str, Any]) -> None:
    problems = [f"{p['kind']} {p['contact_id']}: {p['detail']}" for p in report["problems"][:20]]
    assert report["exit_code"] == 0 and report["ok"], "\n".join(problems)
    assert report["lost"] == 0 and report["duplicated"] == 0
    assert report["imported"] == report["expected"]
    assert report["records_per_version"]["0"] == 0 and report["records_per_version"][">1"] == 0


@dataclass
class Figures:
    """One row of the Reliability table (docs/reliability.md)."""

    scenario: str
    report: dict[str, Any]
    recovery_s: list[float] = field(default_factory=list)
    notes: str = ""
    seconds: float = 0.0

    def row(self) -> dict[str, Any]:
        r = self.report
        return {
            "scenario": self.scenario,
            "expected": r["expected"],
            "imported": r["imported"],
            "duplicated": r["duplicated"],
            "lost": r["lost"],
            "quarantined": r["quarantined"]["total"],
            "output_records": r["output_records"],
            "records_per_version": r["records_per_version"],
            "recovery_s": [round(x, 1) for x in self.recovery_s],
            "notes": self.notes,
            "seconds": round(self.seconds, 1),
        }


# --- processes --------------------------------------------------------------------------------
def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def service_processes(service: ServiceProcess, needle: str) -> list[int]:
    """Descendants of the service whose command line contains ``needle``."""
    assert service.proc is not None
    return [pid for pid in descendants(service.proc.pid) if needle in cmdline(pid)]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    from tests.helpers import wait_until

    return wait_until(predicate, timeout, what, interval)


def lease_owners(aws: Any, application: str) -> dict[str, str]:
    """shard -> owning worker, from the KCL lease table (finished shards left out)."""
    out: dict[str, str] = {}
    for item in aws.dynamodb.scan(TableName=application, ConsistentRead=True).get("Items", []):
        if item.get("checkpoint", {}).get("S") == "SHARD_END":
            continue
        out[item["leaseKey"]["S"]] = item.get("leaseOwner", {}).get("S", "")
    return out


def checkpoints(aws: Any, application: str) -> dict[str, str]:
    return {
        item["leaseKey"]["S"]: item.get("checkpoint", {}).get("S", "")
        for item in aws.dynamodb.scan(TableName=application, ConsistentRead=True).get("Items", [])
    }


def log_events(path: Path) -> list[dict[str, Any]]:
    out = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                out.append(orjson.loads(line))
            except orjson.JSONDecodeError:
                continue
    return out


def seeded(name: str) -> random.Random:
    """The scenario's random choices: reproducible with FAULTS_SEED, printed in the report."""
    seed = int(os.environ.get("FAULTS_SEED", "0") or 0) or int(time.time()) % 100_000
    print(f"[faults] {name}: FAULTS_SEED={seed}")
    return random.Random(f"{name}-{seed}")


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)
