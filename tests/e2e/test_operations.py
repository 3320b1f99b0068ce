"""Operations end to end, with the real KCL daemon: metrics that move with the data, JSON logs
without a phone number, SIGTERM through tini (the image's PID 1), and ``/readyz`` flipping
when AWS goes away."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from processor.adapters.dynamodb.contacts import DynamoContactStore
from processor.adapters.kinesis.put_records import put_records
from processor.core.ctr_files import iter_ctr_inputs
from processor.devtools.simulated_centre import build_scenario
from tests.faults.harness import _partition_key
from tests.helpers import ServiceProcess, leaked_numbers, wait_until

pytestmark = pytest.mark.e2e

# Bad input that carries phone numbers: they must not reach a log line through the quarantine.
BAD_WITH_NUMBERS = [
    b"call from +1 415 555 0199 to 4155550143 {",
    orjson.dumps(
        {"ContactId": 7, "CustomerEndpoint": {"Address": "+442079460321", "Type": "TELEPHONE_NUMBER"}}
    ),
    orjson.dumps(
        {
            "ContactId": "bad-ts",
            "InstanceARN": "arn:aws:connect:us-east-1:123456789012:instance/x",
            "InitiationMethod": "INBOUND",
            "LastUpdateTimestamp": "9999-01-01T00:00:00Z",
            "CustomerEndpoint": {"Address": "+61291234567", "Type": "TELEPHONE_NUMBER"},
        }
    ),
]
BAD_NUMBERS = ["+14155550199", "4155550143", "+442079460321", "+61291234567"]


def sample_ctrs(samples_dir: Path) -> list[dict[str, Any]]:
    out = []
    for path in sorted((samples_dir / "ctr").glob("*.json")):
        out += [item.value for item in iter_ctr_inputs([path.read_bytes()]) if item.error is None]
    return out


def numbers_in(ctrs: list[dict[str, Any]]) -> set[str]:
    found = set()
    for ctr in ctrs:
        for key in ("CustomerEndpoint", "SystemEndpoint"):
            address = ((ctr.get(key) or {}).get("Address") or "").strip()
            if sum(c.isdigit() for c in address) >= 7:
                found.add(address)
    return found


def metric_values(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def scrape(service: ServiceProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, body = service.get("/metrics")
    assert status == 200
    return metric_values(body)


def value(metrics: dict, name: str, **labels: str) -> float:
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


def by_name(metrics: dict, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in metrics.items() if n == name}


def test_metrics_move_logs_stay_clean_and_sigterm_through_tini(
    bootstrapped, aws, tmp_path: Path, samples_dir: Path
) -> None:
    settings = bootstrapped
    stream = settings.ctr_stream
    tini = shutil.which("tini")
    assert tini, "tini is installed by `make install` (the image's PID 1)"
    store = DynamoContactStore(aws.dynamodb, settings.contacts_table)
    first = build_scenario(seed=31, contacts=30, start=datetime(2026, 4, 1, 9, tzinfo=UTC))
    second = build_scenario(seed=32, contacts=12, start=datetime(2026, 4, 2, 9, tzinfo=UTC))
    samples = sample_ctrs(samples_dir)
    sample_ids = {c["ContactId"] for c in samples}
    phase1 = first.deliveries + [orjson.dumps(c) for c in samples] + BAD_WITH_NUMBERS
    phase2 = second.deliveries + BAD_WITH_NUMBERS[:1]

    def put(payloads: list[bytes]) -> None:
        # Keyed by ContactId, as Connect does: a contact's versions stay in order on one shard
        # (and one batch keeps only the newest), so each contact is emitted once.
        put_records(aws.kinesis, stream, [(p, _partition_key(p)) for p in payloads])

    def stored() -> dict[str, str]:
        # Final views only: contacts waiting for a recording are emitted when their window closes.
        return {c.contact_id: c.last_update for c in store.scan() if c.view.state.final}

    def emitted(m: dict) -> float:
        return sum(by_name(m, "qm_contacts_emitted_total").values())

    put(phase1)
    log = tmp_path / "service.log"
    # No recording is uploaded: contacts that expect one are emitted recording_missing when the
    # (short) window closes; every contact is emitted exactly once.
    service = ServiceProcess(
        log,
        env={"QM_LOG_LEVEL": "DEBUG", "QM_JOIN_WINDOW_SECONDS": "5", "QM_SWEEP_INTERVAL_SECONDS": "1"},
        prefix=(tini, "-s", "--"),
    ).start()
    try:
        wait_until(
            lambda: (
                all(stored().get(k) == v for k, v in first.expected.items()) and sample_ids <= set(stored())
            ),
            timeout=150,
            what="phase 1 contacts",
        )
        distinct1 = len(first.expected) + len(sample_ids)

        def phase1_metrics() -> dict | None:
            m = scrape(service)
            read = value(m, "qm_records_read_total", stream=stream)
            if read == len(phase1) and emitted(m) == distinct1:
                return m
            seen.update(read=read, emitted=by_name(m, "qm_contacts_emitted_total"))
            return None

        seen: dict = {}
        try:
            m1 = wait_until(phase1_metrics, timeout=30, what="metrics of phase 1")
        except AssertionError as exc:
            wanted = f"expected {len(phase1)} read, {distinct1} emitted"
            raise AssertionError(f"{exc}: {wanted}; last {seen}") from None
        assert by_name(m1, "qm_quarantined_total") == {
            (("reason", "bad_json"), ("source", "kinesis")): 1,
            (("reason", "schema"), ("source", "kinesis")): 1,
            (("reason", "absurd_timestamp"), ("source", "kinesis")): 1,
        }
        assert value(m1, "qm_kcl_daemon_starts_total", application=settings.application_name) == 1
        for name in ("qm_joins_pending", "qm_orphaned_recordings_total", "qm_contacts_unchanged_total"):
            assert (name, ()) in m1, name
        for kind in ("start_recording", "stop_recording", "extract_screen"):
            assert ("qm_commands_published_total", (("type", kind),)) in m1
        shards = {dict(labels)["shard"] for labels in by_name(m1, "qm_millis_behind_latest")}
        assert shards == {"shardId-000000000000", "shardId-000000000001"}
        checkpoints1 = by_name(m1, "qm_last_checkpoint_timestamp_seconds")
        wait_until(lambda: service.get("/readyz")[0] == 200, 60, "/readyz 200")
        assert service.get("/healthz")[0] == 200

        put(phase2)
        m2 = wait_until(
            lambda: (
                (m := scrape(service))
                and value(m, "qm_records_read_total", stream=stream) == len(phase1) + len(phase2)
                and emitted(m) == distinct1 + len(second.expected)
                and set(by_name(m, "qm_checkpoint_age_seconds").values()) == {0.0}
                and m
            ),
            timeout=90,
            what="metrics of phase 2",
        )
        assert value(m2, "qm_quarantined_total", reason="bad_json", source="kinesis") == 2
        moved = by_name(m2, "qm_last_checkpoint_timestamp_seconds")
        assert any(moved[k] > checkpoints1.get(k, 0) for k in moved), "no checkpoint moved"
        assert value(m2, "qm_batch_duration_seconds_count", stream=stream) >= 2
        assert all(v >= 0 for v in by_name(m2, "qm_millis_behind_latest").values())
    finally:
        seconds = service.stop()
    # SIGTERM went to tini (PID 1 in the image; -s stands in for that here) and reached `qm-ingest run`.
    assert service.proc is not None and service.proc.returncode == 0
    assert seconds < 10, f"SIGTERM through tini took {seconds:.1f}s"

    lines = [line for line in log.read_text().splitlines() if line.strip()]
    docs = []
    for line in lines:
        doc = orjson.loads(line)  # every line is one JSON object
        assert {"event", "level", "timestamp"} <= set(doc), line
        docs.append(doc)
    batches = [d for d in docs if d["event"] == "batch processed"]
    assert batches and all(d["stream"] == stream and d["shard_id"] and d["sequence_number"] for d in batches)
    quarantined = [d for d in docs if d["event"] == "record quarantined"]
    assert len(quarantined) == 4 and all(d["shard_id"] and d["sequence_number"] for d in quarantined)
    contacts = [d for d in docs if d["event"] == "contact"]
    assert {d["contact_id"] for d in contacts} >= set(second.expected)
    assert all(d["shard_id"].startswith("shardId-") for d in contacts)

    ctrs = [orjson.loads(p) for p in first.deliveries + second.deliveries] + samples
    numbers = numbers_in(ctrs) | set(BAD_NUMBERS)
    assert len(numbers) > 20
    assert leaked_numbers("\n".join(lines), numbers) == []
