"""The CTR path decides every known input as it did before it was made fast.

``data/ctr_reference.json.gz`` holds, for every case of ``ctr_cases`` (samples, the unit tests'
hostile inputs, the fuzz corpus, the simulated CTRs, seeded mutations), the answer of the code
before the fast path: the reason (or "accepted"), the detail and the mapped QM contact. The
current code must give the same answer, field by field.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from processor.core.ctr import ctr_from_object
from processor.platform.exceptions import InvalidInput
from tests.unit.ctr_cases import SHARED_SAMPLES, all_cases, decide, load_reference


@pytest.fixture(scope="module")
def reference() -> dict[str, list[Any]]:
    return load_reference()


def test_every_case_is_decided_as_before(reference: dict[str, list[Any]]) -> None:
    seen: set[str] = set()
    wrong: list[tuple[str, Any, Any]] = []
    counts: Counter[str] = Counter()
    for case in all_cases():
        expected = reference[case.label]
        got = decide(case)
        assert got[0] == expected[0], f"{case.label}: the case's payload changed, not the decision"
        if got != expected:
            wrong.append((case.label, expected[1:], got[1:]))
        seen.add(case.label)
        counts[got[1]] += 1
    assert not wrong, wrong[:3]
    missing = set(reference) - seen
    if not SHARED_SAMPLES.is_dir():
        missing = {label for label in missing if not label.startswith("shared/")}
    assert not missing, sorted(missing)[:5]
    # Every kind of answer is covered, accepted ones by the thousand.
    assert counts["accepted"] > 2000
    assert set(counts) == {
        "accepted",
        "bad_json",
        "not_an_object",
        "schema",
        "bad_timestamp",
        "absurd_timestamp",
        "oversized",
        "foreign_instance",
    }


def test_the_object_path_decides_as_the_bytes_path(reference: dict[str, list[Any]]) -> None:
    """``ctr_from_object`` on the decoded value: the same reason, detail and record."""
    compared = 0
    for case in all_cases(shared=False):
        expected = reference[case.label]
        if expected[1] in ("bad_json", "oversized", "foreign_instance"):
            continue
        try:
            ctr_from_object(orjson.loads(case.payload))
            got = ["accepted", None]
        except InvalidInput as exc:
            got = [exc.reason, exc.detail]
        if expected[1] == "accepted":
            assert got == ["accepted", None], case.label
        else:
            assert got == expected[1:3], case.label
        compared += 1
    assert compared > 5000
