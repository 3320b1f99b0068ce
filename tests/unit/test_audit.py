"""The audit's judgement: every way a contact can be lost, duplicated or wrong is named and
counted, a clean run is ok, and both the expectation and the report keep to their schemas."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft7Validator

from processor.core.scenario_verdict import (
    Expectation,
    ExpectedContact,
    OutputRecord,
    QuarantinedItem,
    StoredContactState,
    audit,
    parse_expectation,
)
from processor.core.schemas import load_schema
from processor.devtools.simulated_centre import build_scenario
from processor.platform.exceptions import InvalidInput

T1 = "2026-03-01T09:00:00.000Z"
T2 = "2026-03-01T09:05:00.000Z"


def stored(cid: str, last_update: str = T1, state: str = "joined", revision: int = 0) -> StoredContactState:
    return StoredContactState(
        contact_id=cid,
        last_update=last_update,
        version=f"{last_update}#{revision:06d}",
        join_state=state,
        final=state != "waiting_for_recording",
    )


def emitted(cid: str, last_update: str = T1, revision: int = 0) -> OutputRecord:
    return OutputRecord(cid, f"{last_update}#{revision:06d}")


def expect(**contacts: tuple[str, str | None]) -> Expectation:
    return Expectation({cid: ExpectedContact(cid, lu, state) for cid, (lu, state) in contacts.items()})


def check_schema(report_doc: dict) -> None:
    Draft7Validator(load_schema("audit-report")).validate(report_doc)


def test_a_clean_run_is_ok() -> None:
    report = audit(
        expect(a=(T1, "joined"), b=(T2, "no_recording_expected")),
        [stored("a", revision=1), stored("b", T2, "no_recording_expected")],
        # a: revision 0 and 1 were both emitted once (its recording arrived late): no duplicate.
        [emitted("a"), emitted("a", revision=1), emitted("b", T2)],
        [QuarantinedItem("bad_json", "kinesis")],
    )
    assert report.ok
    doc = report.to_dict()
    check_schema(doc)
    assert (doc["expected"], doc["imported"], doc["lost"], doc["duplicated"]) == (2, 2, 0, 0)
    assert doc["records_per_version"] == {"0": 0, "1": 3, ">1": 0}
    assert doc["quarantined"] == {
        "total": 1,
        "by_reason": {"bad_json": 1},
        "by_source": {"kinesis": 1},
        "expected": None,
    }
    assert report.render().endswith("OK: nothing lost, nothing duplicated")


@pytest.mark.parametrize(
    ("table", "output", "kind"),
    [
        ([], [], "missing"),
        ([stored("a", "2026-03-01T08:59:00.000Z")], [emitted("a", "2026-03-01T08:59:00.000Z")], "stale"),
        ([stored("a", state="waiting_for_recording")], [], "not_final"),
        ([stored("a")], [], "not_emitted"),
        ([stored("a", revision=2)], [emitted("a")], "not_emitted"),  # an older revision went out only
    ],
)
def test_each_way_of_losing_a_contact(table, output, kind) -> None:
    report = audit(expect(a=(T1, "joined")), table, output, [])
    assert not report.ok
    assert [p.kind for p in report.problems] == [kind]
    assert (report.lost, report.imported, report.duplicated) == (1, 0, 0)
    check_schema(report.to_dict())
    assert "FAILED" in report.render()


def test_a_version_emitted_twice_is_a_duplicate() -> None:
    report = audit(expect(a=(T1, None)), [stored("a")], [emitted("a"), emitted("a")], [])
    assert (report.duplicated, report.lost, report.imported) == (1, 0, 0)
    assert report.to_dict()["records_per_version"] == {"0": 0, "1": 0, ">1": 1}
    assert not report.ok


def test_wrong_state_newer_and_unexpected_contacts_fail_the_audit() -> None:
    report = audit(
        expect(a=(T1, "joined"), b=(T1, None)),
        [stored("a", state="recording_missing"), stored("b", T2), stored("intruder")],
        [emitted("a"), emitted("b", T2), emitted("intruder"), emitted("ghost")],
        [],
    )
    kinds = sorted((p.kind, p.contact_id) for p in report.problems)
    assert kinds == [
        ("newer_than_expected", "b"),
        ("unexpected", "ghost"),
        ("unexpected", "intruder"),
        ("wrong_state", "a"),
    ]
    assert (report.mismatched, report.unexpected, report.lost) == (2, 2, 0)


def test_quarantine_counts_are_checked_when_expected() -> None:
    expectation = Expectation(
        {},
        quarantined_total=3,
        quarantined_by_reason={"bad_json": 2, "schema": 1},
        quarantined_by_source={"kinesis": 2, "sqs": 1},
    )
    items = [QuarantinedItem("bad_json", "kinesis"), QuarantinedItem("bad_json", "sqs")]
    report = audit(expectation, [], [], items)
    details = sorted(p.detail for p in report.problems)
    assert details == [
        "2 quarantined, expected 3",
        "reason schema: 0 quarantined, expected 1",
        "source kinesis: 1 quarantined, expected 2",
    ]
    assert all(p.kind == "quarantine_count" for p in report.problems)
    ok = audit(expectation, [], [], [*items, QuarantinedItem("schema", "kinesis")])
    assert ok.ok


def test_expectation_forms() -> None:
    full = parse_expectation(
        orjson.dumps(
            {
                "contacts": {"a": {"last_update": "2026-03-01T09:00:00Z", "join_state": "joined"}},
                "quarantined": {"total": 4},
            }
        )
    )
    assert full.contacts["a"] == ExpectedContact("a", T1, "joined")
    assert full.quarantined_total == 4
    bare = parse_expectation(b'{"a": {"last_update": "2026-03-01T10:00:00+01:00"}}')
    assert bare.contacts["a"] == ExpectedContact("a", T1, None)  # the same instant, any notation
    legacy = parse_expectation(b'{"a": "2026-03-01T09:00:00.000Z"}')  # older `simulate --expect-file`
    assert legacy.contacts["a"].last_update == T1
    assert parse_expectation(b"{}").contacts == {}


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"a": 42}',
        b'{"a": {"join_state": "joined"}}',
        b'{"a": {"last_update": "2026-03-01T09:00:00Z", "join_state": "teleported"}}',
        b'{"contacts": {}, "extra": 1}',
        b'{"a": "9999-01-01T00:00:00Z"}',
    ],
)
def test_bad_expectations_are_refused(payload: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_expectation(payload)


def test_a_scenario_writes_an_expectation_the_audit_reads_back() -> None:
    scenario = build_scenario(seed=5, contacts=40, start=datetime(2026, 3, 1, 9, tzinfo=UTC))
    doc = scenario.expectation().to_dict()
    Draft7Validator(load_schema("audit-expect")).validate(doc)
    again = parse_expectation(orjson.dumps(doc))
    assert {cid: c.last_update for cid, c in again.contacts.items()} == scenario.expected
    assert {cid: c.join_state for cid, c in again.contacts.items()} == scenario.expected_state
