"""The fuzz corpus against the pure parsers: every hostile CTR and notification is refused with
the reason the corpus gives it, and every odd-but-valid CTR is accepted and maps to a contact
that keeps to its schema. (The fault suite sends the same corpus through the real service.)"""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from jsonschema import Draft7Validator

from processor.core.ctr import check_instance, parse_ctr
from processor.core.mapping import map_contact
from processor.core.s3_events import parse_notification
from processor.core.schemas import load_schema
from processor.devtools.simulated_centre import DEFAULT_INSTANCE_ARN, build_scenario
from processor.platform.exceptions import InvalidInput
from tests.faults.fuzz import MAX_RECORD_BYTES, notification_corpus, odd_but_valid, stream_corpus


@pytest.fixture(scope="module")
def good() -> list[dict]:
    scenario = build_scenario(seed=7, contacts=60, start=datetime(2026, 5, 1, 9, tzinfo=UTC))
    return list(scenario.newest.values())


def refused(payload: bytes) -> str:
    try:
        record = parse_ctr(payload, max_bytes=MAX_RECORD_BYTES)
        check_instance(record, DEFAULT_INSTANCE_ARN)
    except InvalidInput as exc:
        return exc.reason
    return "accepted"


def test_every_hostile_record_gets_its_reason(good: list[dict]) -> None:
    corpus = stream_corpus(good, 3000, random.Random(1), DEFAULT_INSTANCE_ARN)
    got = Counter((h.reason, refused(h.payload)) for h in corpus)
    wrong = {pair: n for pair, n in got.items() if pair[0] != pair[1]}
    assert not wrong, wrong
    reasons = {reason for reason, _ in got}
    assert reasons == {
        "bad_json",
        "not_an_object",
        "schema",
        "bad_timestamp",
        "absurd_timestamp",
        "foreign_instance",
        "oversized",
    }
    assert max(len(h.payload) for h in corpus) > 600 * 1024


def test_every_hostile_notification_gets_its_reason() -> None:
    corpus = notification_corpus(600, "qm-recordings", random.Random(2))
    wrong = []
    for hostile in corpus:
        try:
            parse_notification(hostile.payload)
            wrong.append((hostile.reason, "accepted", hostile.payload[:80]))
        except InvalidInput as exc:
            if exc.reason != hostile.reason:
                wrong.append((hostile.reason, exc.reason, hostile.payload[:80]))
    assert not wrong, wrong[:5]
    assert {h.reason for h in corpus} == {"bad_json", "schema"}
    assert max(len(h.payload) for h in corpus) > 100_000


def test_odd_but_valid_contacts_are_accepted(good: list[dict]) -> None:
    rng = random.Random(3)
    validator = Draft7Validator(load_schema("qm-contact"))
    for ctr in good:
        payload = odd_but_valid(ctr, rng)
        record = parse_ctr(payload, max_bytes=MAX_RECORD_BYTES)
        check_instance(record, DEFAULT_INSTANCE_ARN)
        assert record.contact_id == ctr["ContactId"]
        validator.validate(orjson.loads(orjson.dumps(map_contact(record).to_dict())))
