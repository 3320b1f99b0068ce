"""The CTR fast path agrees with its references: the specialised schema check with the JSON
Schema validator, the direct timestamp reading with parse_instant, the table formatting with
strftime, the quick builders with the dataclass constructors, the E.164 shortcut with the rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processor.core.ctr import (
    AgentInfo,
    ContactRecord,
    Endpoint,
    RecordingRef,
    _checked_instant,
    format_instant,
    parse_instant,
)
from processor.core.fastcheck import Unsupported, specialise
from processor.core.frozen import builder
from processor.core.mapping import QmContact
from processor.core.phone import to_e164
from processor.core.schemas import SchemaViolation, fast_check, load_schema, validate, validator
from processor.platform.exceptions import InvalidInput
from tests.unit.ctr_cases import (
    DELETE,
    FIELDS,
    TIMESTAMP_FIELDS,
    TIMESTAMPS,
    VALUES,
    sample_objects,
    set_path,
)

SAMPLES = sample_objects()
TIMESTAMP = load_schema("ctr")["definitions"]["timestamp"]["pattern"]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=80),
    st.text(alphabet="+-0123456789 .:TZz", max_size=32),
    st.sampled_from(TIMESTAMPS),
    st.sampled_from(VALUES),
    st.integers(min_value=0, max_value=80).map(lambda n: "a" * n * 8),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["Location", "x", "Address"]), inner)
    ),
    max_leaves=8,
)
timestamp_text = st.from_regex(TIMESTAMP.replace("$", r"\Z"), fullmatch=True)
paths = st.sampled_from(FIELDS + TIMESTAMP_FIELDS + [("Recordings", i) for i in range(3)])


def reference_accepts(obj: Any) -> bool:
    try:
        validate("ctr", obj)
    except SchemaViolation:
        return False
    return True


@st.composite
def mutated_ctrs(draw: st.DrawFn) -> dict[str, Any]:
    ctr = orjson.loads(orjson.dumps(draw(st.sampled_from(SAMPLES))))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        path = draw(paths)
        kind = draw(st.integers(min_value=0, max_value=9))
        if kind == 0:
            value: Any = DELETE
        elif kind <= 3 and path in TIMESTAMP_FIELDS:
            value = draw(st.one_of(timestamp_text, st.sampled_from(TIMESTAMPS)))
        else:
            value = draw(json_value)
        set_path(ctr, path, value)
    if draw(st.booleans()):
        ctr["Recordings"] = draw(
            st.one_of(
                st.lists(st.just({"Location": "b/k.wav"}), min_size=60, max_size=70),
                st.lists(st.dictionaries(st.sampled_from(["StartTimestamp", "Location"]), json_leaf)),
            )
        )
    return ctr


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_ctrs())
def test_the_specialised_check_decides_as_the_schema(ctr: dict[str, Any]) -> None:
    check = fast_check("ctr")
    assert check is not None
    assert check(ctr) == reference_accepts(ctr)


@settings(max_examples=300, deadline=None)
@given(json_value)
def test_the_specialised_check_on_any_json_value(value: Any) -> None:
    check = fast_check("ctr")
    assert check is not None
    assert check(value) == reference_accepts(value)


def test_the_check_is_specialised_from_the_schema_file() -> None:
    """Every sample accepted; a keyword it does not know means the reference decides alone."""
    check = fast_check("ctr")
    assert check is not None
    assert all(check(ctr) for ctr in SAMPLES)
    patterns = validator("ctr").__globals__["REGEX_PATTERNS"]
    with pytest.raises(Unsupported):
        specialise({"type": "object", "properties": {"Channel": {"enum": ["VOICE"]}}}, patterns)
    with pytest.raises(Unsupported):
        specialise({"type": "string", "pattern": "^unknown$"}, patterns)
    with pytest.raises(Unsupported):
        specialise({"type": ["integer", "boolean"]}, patterns)


def _parsed(parse: Any, text: str) -> Any:
    try:
        return parse(text, "Field")
    except InvalidInput as exc:
        return (exc.reason, exc.detail)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(timestamp_text, st.sampled_from([t for t in TIMESTAMPS if isinstance(t, str)])))
def test_timestamps_read_directly_as_parse_instant_reads_them(text: str) -> None:
    if re.search(TIMESTAMP.replace("$", r"\Z"), text) is None:
        return  # only values the schema let through reach the direct reading
    direct, reference = _parsed(_checked_instant, text), _parsed(parse_instant, text)
    assert direct == reference
    if isinstance(direct, datetime):
        assert direct.tzinfo is reference.tzinfo


def _strftime_format(value: datetime) -> str:
    """format_instant as it was."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


@settings(max_examples=1000, deadline=None)
@given(
    # hypothesis takes naive bounds and adds the time zone
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)),  # noqa: DTZ001
    st.integers(min_value=-23 * 3600, max_value=23 * 3600),
    st.booleans(),
)
def test_format_instant_writes_what_strftime_wrote(value: datetime, offset: int, shift: bool) -> None:
    if shift:
        value = value.astimezone(timezone(timedelta(seconds=offset)))
    assert format_instant(value) == _strftime_format(value)


def test_format_instant_with_sub_second_offsets() -> None:
    odd = datetime(2026, 1, 1, 10, 0, 0, 999_999, tzinfo=timezone(timedelta(microseconds=1)))
    assert format_instant(odd) == _strftime_format(odd)


@pytest.mark.parametrize("cls", [Endpoint, RecordingRef, AgentInfo, ContactRecord, QmContact])
def test_builders_make_what_the_constructors_make(cls: type) -> None:
    from dataclasses import FrozenInstanceError, fields

    values = [f"v{i}" for i, _ in enumerate(fields(cls))]
    built = builder(cls)(*values)
    assert type(built) is cls
    assert built == cls(*values)
    assert hash(built) == hash(cls(*values))
    with pytest.raises(FrozenInstanceError):
        built.__setattr__(fields(cls)[0].name, "changed")


def _e164_by_the_rules(address: str | None) -> str | None:
    """to_e164 as it was, without the shortcut for numbers already in E.164."""
    formatting = re.compile(r"[\s().\-/]")
    uri = re.compile(r"^(?:sip|sips|tel):([^@;]+)", re.IGNORECASE).match((address or "").strip())
    if address is None:
        return None
    text = uri.group(1) if uri else address
    lost_plus = bool(text) and text[0] == " " and text.strip()[:1].isdigit()
    text = text.strip()
    if text.startswith("+"):
        digits = formatting.sub("", text[1:])
    elif lost_plus:
        digits = formatting.sub("", text)
    elif text.startswith("00"):
        digits = formatting.sub("", text)[2:]
    else:
        return None
    if not re.match(r"^\d{7,15}$", digits) or digits.startswith("0"):
        return None
    return "+" + digits


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.text(max_size=20),
        st.from_regex(r"\+[0-9٠-٩²]{5,17}\n?", fullmatch=True),
        st.text(alphabet="+0123456789 -()", max_size=18),
    )
)
def test_e164_shortcut_agrees_with_the_rules(address: str) -> None:
    assert to_e164(address) == _e164_by_the_rules(address)


def test_a_mutation_never_writes_into_the_shared_values() -> None:
    """Hypothesis hands out the ``{}`` of ``VALUES`` itself: writing a field below it must not
    change the constant every later case (and the mapping equivalence test) is built from."""
    before = orjson.dumps(VALUES)
    ctr: dict[str, Any] = {}
    set_path(ctr, ("Agent",), next(v for v in VALUES if v == {}))
    set_path(ctr, ("Agent", "Username"), "x")
    set_path(ctr, ("Agent", "HierarchyGroups"), ctr["Agent"])
    assert orjson.dumps(VALUES) == before
    assert ctr == {"Agent": {"Username": "x", "HierarchyGroups": {"Username": "x"}}}
