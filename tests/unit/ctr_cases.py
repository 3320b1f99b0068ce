"""Every CTR the mapping equivalence test decides, rebuilt deterministically from fixed seeds.

Sets: the real samples (``tests/samples/ctr``, and ``/work/shared/samples/ctr`` when present),
the hostile and odd inputs of the unit tests, the fuzz corpus (``tests/faults/fuzz.py``), the
simulated CTRs the mapping benchmark reads, and seeded mutations of the samples (wrong types,
edge-of-limit lengths, timestamp spellings at the edge of the schema's pattern).

``decide`` runs one case through ``parse_ctr`` + ``check_instance`` + ``map_contact``: the
reference fixture ``data/ctr_reference.json.gz`` holds its answer for every case as the code
was before the fast path (``python -m tests.unit.ctr_cases`` writes it again).
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from processor.core.ctr import check_instance, parse_ctr
from processor.core.ctr_files import iter_ctr_inputs
from processor.core.mapping import map_contact
from processor.core.user_directory import QmUser
from processor.devtools.simulated_centre import DEFAULT_INSTANCE_ARN, build_scenario
from processor.platform.exceptions import InvalidInput
from tests.faults.fuzz import MAX_RECORD_BYTES, odd_but_valid, stream_corpus

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "data" / "ctr_reference.json.gz"
SAMPLES = HERE.parent / "samples" / "ctr"
SHARED_SAMPLES = Path("/work/shared/samples/ctr")


@dataclass(frozen=True)
class Case:
    label: str
    payload: bytes
    max_bytes: int | None = None
    instance_arn: str | None = None


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def sample_objects() -> list[dict[str, Any]]:
    """The CTR objects of the repository's samples, in file order."""
    out = []
    for path in sorted(SAMPLES.glob("*.json")):
        for item in iter_ctr_inputs([path.read_bytes()]):
            out.append(item.value)
    return out


def _sample_cases(root: Path, prefix: str) -> Iterator[Case]:
    for path in sorted(root.glob("*.json")):
        raw = path.read_bytes()
        yield Case(f"{prefix}/{path.name}/raw", raw)
        for n, item in enumerate(iter_ctr_inputs([raw])):
            yield Case(f"{prefix}/{path.name}/{n}", _dumps(item.value))


def _unit_cases() -> Iterator[Case]:
    """The hostile and odd CTRs of test_ctr_parse, test_mapping and test_join_properties."""
    good = orjson.loads((SAMPLES / "voicebase-quickstart-1.json").read_bytes())
    two = orjson.loads((HERE / "data" / "two_recordings.json").read_bytes())
    yield Case("unit/not-json", b"{not json")
    yield Case("unit/not-utf8", b"\xff\xfe")
    yield Case("unit/array", b"[1,2]")
    yield Case("unit/string", b'"text"')
    missing = dict(good)
    del missing["ContactId"]
    yield Case("unit/missing-contact-id", _dumps(missing))
    yield Case("unit/contact-id-int", _dumps(dict(good, ContactId=123)))
    yield Case("unit/username-list", _dumps(dict(good, Agent={"Username": ["x"]})))
    yield Case("unit/username-int", _dumps(dict(good, Agent={"Username": 5})))
    yield Case("unit/month-13", _dumps(dict(good, LastUpdateTimestamp="2019-13-45T00:00:00Z")))
    yield Case("unit/year-9999", _dumps(dict(good, LastUpdateTimestamp="9999-12-31T23:59:59Z")))
    yield Case("unit/epoch", _dumps(dict(good, LastUpdateTimestamp="1970-01-01T00:00:00Z")))
    yield Case("unit/oversized", _dumps(good), max_bytes=100)
    yield Case("unit/deep", b"[" * 5000 + b"]" * 5000)
    yield Case("unit/hologram", _dumps(dict(good, Channel="HOLOGRAM", Brand_New_Field={"x": 1})))
    yield Case("unit/own-instance", _dumps(good), instance_arn=good["InstanceARN"])
    yield Case(
        "unit/other-instance",
        _dumps(good),
        instance_arn="arn:aws:connect:us-east-1:111111111111:instance/other",
    )
    encoded = dict(good, InstanceARN=good["InstanceARN"].replace("instance/", "instance%2F"))
    yield Case("unit/url-encoded-instance", _dumps(encoded), instance_arn=good["InstanceARN"])
    for method in ("TELEPATHY", "OUTBOUND", "CALLBACK", " transfer ", "queue_transfer"):
        yield Case(f"unit/method-{method}", _dumps(dict(good, InitiationMethod=method)))
    never = copy.deepcopy(good)
    never["Agent"]["ConnectedToAgentTimestamp"] = None
    yield Case("unit/never-connected", _dumps(never))
    yield Case("unit/two-recordings", _dumps(two))
    offset = copy.deepcopy(two)
    offset["Agent"]["ConnectedToAgentTimestamp"] = "2024-03-31T23:59:59.900-02:00"
    yield Case("unit/offset-connected", _dumps(offset))
    for version in range(3):
        recordings = [
            {
                "Location": f"bkt/c1/{name}.wav",
                "StorageType": "S3",
                "ParticipantType": "AGENT" if name == "agent" else "IVR",
                "DeletionReason": "policy" if name == "ivr" and version else None,
            }
            for name in ("ivr", "agent")
        ]
        ctr = {
            "ContactId": "contact-1",
            "InstanceARN": "arn:aws:connect:us-east-1:1:instance/x",
            "InitiationMethod": "INBOUND",
            "LastUpdateTimestamp": f"2026-05-01T10:{version:02d}:00Z",
            "Agent": {
                "Username": "agent",
                "ConnectedToAgentTimestamp": "2026-05-01T09:00:00Z",
                "AgentInteractionDuration": 60,
                "CustomerHoldDuration": 0,
            },
            "Recordings": recordings,
        }
        yield Case(f"unit/join-{version}", _dumps(ctr))


def _fuzz_cases() -> Iterator[Case]:
    """As test_fuzz_corpus builds them: 3,000 hostile records and odd-but-valid contacts."""
    scenario = build_scenario(seed=7, contacts=60, start=datetime(2026, 5, 1, 9, tzinfo=UTC))
    good = list(scenario.newest.values())
    for i, hostile in enumerate(stream_corpus(good, 3000, random.Random(1), DEFAULT_INSTANCE_ARN)):
        yield Case(f"fuzz/hostile/{i}", hostile.payload, MAX_RECORD_BYTES, DEFAULT_INSTANCE_ARN)
    rng = random.Random(3)
    for round_ in range(5):
        for i, ctr in enumerate(good):
            payload = odd_but_valid(ctr, rng)
            yield Case(f"fuzz/odd/{round_}/{i}", payload, MAX_RECORD_BYTES, DEFAULT_INSTANCE_ARN)


def _simulated_cases() -> Iterator[Case]:
    """The benchmark's simulated CTRs (with duplicates and updates)."""
    scenario = build_scenario(seed=5, contacts=1000, start=datetime(2026, 1, 1, tzinfo=UTC))
    for i, payload in enumerate(scenario.deliveries):
        yield Case(f"simulated/{i}", payload, 1_048_576)


#: Values at the edges of what the schema and the timestamp parser take.
TIMESTAMPS = [
    "2026-01-01T00:00:00Z",
    "2026-01-01T00:00:00.1Z",
    "2026-01-01T00:00:00.123Z",
    "2026-01-01T00:00:00.123456Z",
    "2026-01-01T00:00:00.1234567Z",
    "2026-01-01T00:00:00.123456789Z",
    "2026-01-01T00:00:00.1234567890Z",
    "2026-01-01T00:00:00z",
    "2026-01-01t00:00:00Z",
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00Z\n",
    "2026-01-01T00:00:00+02:00",
    "2026-01-01T00:00:00+0200",
    "2026-01-01T00:00:00-23:59",
    "2026-01-01T00:00:00+24:00",
    "2026-01-01T00:00:00+00:60",
    "2026-01-01T00:00:00.999999-00:00",
    "2016-12-31T23:59:59.999Z",
    "2017-01-01T00:00:00Z",
    "2017-01-01T01:00:00+01:00",
    "2017-01-01T00:59:59+01:00",
    "2099-12-31T23:59:59.999999999Z",
    "2100-01-01T00:00:00Z",
    "2099-12-31T23:00:00-01:00",
    "2024-02-29T12:00:00Z",
    "2023-02-29T12:00:00Z",
    "2026-01-01T24:00:00Z",
    "2026-01-01T23:59:60Z",
    "2026-00-10T00:00:00Z",
    "2026-01-00T00:00:00Z",
    "0000-01-01T00:00:00Z",
    "２０２６-01-01T00:00:00Z",
    "2026-01-01T00:00:00.Z",
    "2026-01-01T00:00Z",
    "2026-01-01",
    "2026-01-01T00:00:00.123Z" + " " * 16,
    "",
    None,
    1_700_000_000,
]
VALUES: list[Any] = [
    None,
    "",
    " ",
    "x",
    "x\n",
    "a" * 63,
    "a" * 64,
    "a" * 65,
    "a" * 256,
    "a" * 257,
    "a" * 512,
    "a" * 513,
    "é" * 64,
    "😀" * 65,
    "has space",
    "+14155550100",
    " 14155550100",
    "0044 20 7946 0000",
    "sip:+14155550100@host",
    "tel:+1-415-555-0100",
    "anonymous",
    "bkt/key.wav",
    "Bkt/key.wav",
    "bkt/",
    "S3",
    "s3",
    "KINESIS_VIDEO_STREAM",
    "AGENT",
    0,
    1,
    -1,
    60,
    60.0,
    60.5,
    1e12,
    31_536_000,
    31_536_001,
    True,
    False,
    [],
    ["x"],
    {},
    {"Address": "+14155550100"},
]
FIELDS: list[tuple[str, ...]] = [
    ("ContactId",),
    ("InitialContactId",),
    ("PreviousContactId",),
    ("NextContactId",),
    ("InstanceARN",),
    ("Channel",),
    ("InitiationMethod",),
    ("AWSAccountId",),
    ("AWSContactTraceRecordFormatVersion",),
    ("DisconnectReason",),
    ("Agent",),
    ("Agent", "ARN"),
    ("Agent", "Username"),
    ("Agent", "AgentInteractionDuration"),
    ("Agent", "CustomerHoldDuration"),
    ("Agent", "AfterContactWorkDuration"),
    ("Agent", "LongestHoldDuration"),
    ("Agent", "NumberOfHolds"),
    ("SystemEndpoint",),
    ("SystemEndpoint", "Address"),
    ("SystemEndpoint", "Type"),
    ("CustomerEndpoint",),
    ("CustomerEndpoint", "Address"),
    ("CustomerEndpoint", "Type"),
    ("TransferredToEndpoint",),
    ("TransferredToEndpoint", "Address"),
    ("Queue",),
    ("Queue", "Name"),
    ("Queue", "ARN"),
    ("Recording",),
    ("Recording", "Location"),
    ("Recording", "Type"),
    ("Recording", "DeletionReason"),
    ("Recordings",),
    ("Recordings", 0),
    ("Recordings", 0, "Location"),
    ("Recordings", 0, "StorageType"),
    ("Recordings", 0, "ParticipantType"),
    ("Recordings", 0, "DeletionReason"),
    ("Recordings", 1, "Location"),
    ("Recordings", 1, "StorageType"),
]
TIMESTAMP_FIELDS: list[tuple[str, ...]] = [
    ("LastUpdateTimestamp",),
    ("InitiationTimestamp",),
    ("DisconnectTimestamp",),
    ("ConnectedToSystemTimestamp",),
    ("Agent", "ConnectedToAgentTimestamp"),
    ("Agent", "AfterContactWorkEndTimestamp"),
    ("Agent", "AfterContactWorkStartTimestamp"),
    ("Recordings", 0, "StartTimestamp"),
    ("Recordings", 0, "StopTimestamp"),
    ("Recordings", 1, "StopTimestamp"),
]
DELETE = object()


def set_path(ctr: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    """Set (or delete, with ``DELETE``) a field, creating the containers on the way.

    The value is stored as a copy: the containers of ``VALUES`` (``[]``, ``{}``) are shared by
    every caller (hypothesis draws them as they are), and a later step that writes into the CTR
    must never write into them (a run that did made ``{}`` contain itself).
    """
    if value is not DELETE:
        value = copy.deepcopy(value)
    node: Any = ctr
    for step, nxt in itertools.pairwise(path):
        if isinstance(step, int):
            if not isinstance(node, list):
                return
            while len(node) <= step:
                node.append({})
            if not isinstance(node[step], dict):
                node[step] = {}
            node = node[step]
            continue
        child = node.get(step)
        if isinstance(nxt, int):
            if not isinstance(child, list):
                node[step] = child = []
        elif not isinstance(child, dict):
            node[step] = child = {}
        node = child
    last = path[-1]
    if isinstance(last, int):
        if isinstance(node, list):
            while len(node) <= last:
                node.append({})
            node[last] = {} if value is DELETE else value
        return
    if value is DELETE:
        node.pop(last, None)
    else:
        node[last] = value


def mutate(ctr: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """A sample with one to three fields changed to values at the edge of the contract."""
    out = copy.deepcopy(ctr)
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.45:
            path = rng.choice(TIMESTAMP_FIELDS)
            value = rng.choice(TIMESTAMPS)
        else:
            path = rng.choice(FIELDS)
            value = DELETE if rng.random() < 0.1 else copy.deepcopy(rng.choice(VALUES))
        set_path(out, path, value)
    return out


def _mutation_cases() -> Iterator[Case]:
    samples = sample_objects()
    rng = random.Random(11)
    for i in range(4000):
        ctr = mutate(rng.choice(samples), rng)
        yield Case(f"mutation/{i}", _dumps(ctr), 1_048_576)


def all_cases(*, shared: bool = True) -> Iterator[Case]:
    yield from _sample_cases(SAMPLES, "samples")
    if shared and SHARED_SAMPLES.is_dir():
        yield from _sample_cases(SHARED_SAMPLES, "shared")
    yield from _unit_cases()
    yield from _fuzz_cases()
    yield from _simulated_cases()
    yield from _mutation_cases()


def user_for(label: str, acd_id: str | None) -> QmUser | None:
    """Every other known agent gets a QM user (the with-user and without-user mappings)."""
    if acd_id is None or int(hashlib.sha256(label.encode()).hexdigest(), 16) % 2:
        return None
    return QmUser(username=acd_id, first_name=f"First {acd_id}", last_name=f"Last {acd_id}")


#: QM contact fields added after the reference was written, with the value mapping gives them
#: (the join fills them in later): a mapped contact carrying exactly that value decides as before.
ADDED_SINCE_REFERENCE: dict[str, Any] = {"qm_recording_location": None}


def decide(case: Case) -> list[Any]:
    """``[payload digest, reason or "accepted", detail, QM contact dict or None]``."""
    digest = hashlib.sha256(case.payload).hexdigest()[:16]
    try:
        record = parse_ctr(case.payload, max_bytes=case.max_bytes)
        check_instance(record, case.instance_arn)
    except InvalidInput as exc:
        return [digest, exc.reason, exc.detail, None]
    user = user_for(case.label, record.agent.username if record.agent else None)
    contact = map_contact(record, user).to_dict()
    for name, value in ADDED_SINCE_REFERENCE.items():
        if contact.get(name, value) == value:
            contact.pop(name, None)
    return [digest, "accepted", None, contact]


def write_reference() -> dict[str, int]:
    decisions = {case.label: decide(case) for case in all_cases()}
    REFERENCE.write_bytes(gzip.compress(orjson.dumps(decisions), compresslevel=9, mtime=0))
    counts: dict[str, int] = {}
    for _, reason, _, _ in decisions.values():
        counts[reason] = counts.get(reason, 0) + 1
    return counts


def load_reference() -> dict[str, list[Any]]:
    loaded: dict[str, list[Any]] = orjson.loads(gzip.decompress(REFERENCE.read_bytes()))
    return loaded


if __name__ == "__main__":
    print(write_reference(), REFERENCE.stat().st_size)
