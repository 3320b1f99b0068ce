"""Hostile input for the fuzz scenario, each piece with the quarantine reason it must get.

Deterministic for a seed. Stream records (CTRs) and recording notifications (SQS bodies) in
every shape that must be refused: not JSON (cut short, random bytes, invalid UTF-8, lone
surrogates, NaN, comments, nesting deeper than any parser allows), not an object, missing
fields, wrong types, strings too long, impossible and absurd timestamps, another tenant's
instance, records over the size limit. Good CTRs are made odd but valid: emoji, bidi
controls, combining marks, NUL characters and deep nesting in fields QM does not read,
unknown enum values, unknown fields; they must be imported.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import orjson

OTHER_INSTANCE = "arn:aws:connect:eu-west-2:999999999999:instance/0000aaaa-1111-2222-3333-444455556666"
#: The fuzz run lowers the record limit so that records of 0.6-1 MB (Kinesis allows 1 MiB) are over it.
MAX_RECORD_BYTES = 512 * 1024
ODD_TEXT = [
    "emoji 📞🎧👩🏽‍💼",
    "bidi \u202eevil\u202c text",
    "zero\u200bwidth\u200djoiner",
    "combining e\u0301\u0327\u0308",
    "nul \u0000 inside",
    "ｆｕｌｌｗｉｄｔｈ",
    "𝔪𝔞𝔱𝔥 𝕬𝖑𝖕𝖍𝖆",
    "\ufeffbom first",
    "quotes \"' and \\ backslashes",
]
#: SQS refuses some characters in a message body (NUL among them).
SQS_TEXT = [t for t in ODD_TEXT if "\u0000" not in t]


@dataclass
class Hostile:
    payload: bytes
    reason: str
    key: str


@dataclass
class FuzzCorpus:
    stream: list[Hostile] = field(default_factory=list)
    notifications: list[Hostile] = field(default_factory=list)

    def expected_reasons(self) -> dict[str, int]:
        return dict(Counter(h.reason for h in self.stream + self.notifications))


def _deep(depth: int, leaf: Any = "x") -> Any:
    value: Any = leaf
    for _ in range(depth):
        value = [value]
    return value


DEEP_PLACEHOLDER = "__deep_nesting__"


def odd_but_valid(ctr: dict[str, Any], rng: random.Random) -> bytes:
    """The same contact, made strange in ways QM must accept (as the bytes Connect would send)."""
    out = orjson.loads(orjson.dumps(ctr))
    attributes = dict(out.get("Attributes") or {})
    for i in range(rng.randint(1, 4)):
        attributes[f"odd_{i}_{rng.choice(ODD_TEXT)}"] = rng.choice(ODD_TEXT)
    depth = rng.randint(50, 1000) if rng.random() < 0.3 else 0
    if depth:
        attributes["nested"] = DEEP_PLACEHOLDER  # written as text below: deeper than orjson writes
    if rng.random() < 0.2:
        out["InitiationMethod"] = rng.choice(["TELEPATHY", "CARRIER_PIGEON", "QUANTUM_ENTANGLEMENT"])
    if rng.random() < 0.2:
        out["Channel"] = rng.choice(["HOLOGRAM", "SMOKE_SIGNAL"])
    if rng.random() < 0.3:
        out[f"FutureField{rng.randint(1, 9)}"] = {"x": rng.choice(ODD_TEXT), "n": [1, 2.5, None, True]}
    payload = orjson.dumps(out)
    if depth:
        # Deep, but within what JSON parsers read (orjson: 1024 levels).
        payload = payload.replace(f'"{DEEP_PLACEHOLDER}"'.encode(), b"[" * depth + b'"x"' + b"]" * depth)
    return payload


def stream_corpus(
    good: list[dict[str, Any]], count: int, rng: random.Random, instance_arn: str
) -> list[Hostile]:
    """``count`` hostile CTR records, derived from good ones so that they look real."""
    makers = [
        (3, _bad_json),
        (1, _not_object),
        (4, _schema),
        (1, _bad_timestamp),
        (1, _absurd_timestamp),
        (1, _foreign),
    ]
    weights = [w for w, _ in makers]
    out: list[Hostile] = []
    for i in range(count):
        make = rng.choices([m for _, m in makers], weights=weights)[0]
        base = orjson.loads(orjson.dumps(rng.choice(good)))
        base["InstanceARN"] = instance_arn
        payload, reason = make(base, rng)
        out.append(Hostile(payload, reason, f"h{i}"))
    for i in range(20):  # 0.6-1 MB: over the limit, whether JSON or not
        size = rng.randint(600 * 1024, 1_000_000)
        if i % 2:
            payload = rng.randbytes(size)
        else:
            base = dict(rng.choice(good))
            base["Attributes"] = {"blob": "A" * size}
            payload = orjson.dumps(base)
        out.append(Hostile(payload, "oversized", f"big{i}"))
    rng.shuffle(out)
    return out


def _bad_json(ctr: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    text = orjson.dumps(ctr)
    kind = rng.randrange(10)
    if kind == 0:
        payload = text[: rng.randint(1, len(text) - 1)]  # cut short
    elif kind == 1:
        payload = rng.randbytes(rng.randint(1, 2000))
        if payload.lstrip()[:1] in (b"{", b"[", b'"') or payload.strip() == b"":
            payload = b"\xff" + payload
    elif kind == 2:
        payload = text.replace(b'"ContactId"', b'"Contact\xff\xfeId"', 1)  # not UTF-8
    elif kind == 3:
        payload = (
            text.replace(b'"Channel"', b'"\\ud800Channel"', 1) if b'"Channel"' in text else b'{"a":"\\udc00"}'
        )
    elif kind == 4:
        payload = text[:-1] + b', "Score": NaN}'
    elif kind == 5:
        payload = b"// a comment\n" + text
    elif kind == 6:
        payload = b"[" * 5000 + b"]" * 5000  # deeper than JSON parsers allow
    elif kind == 7:
        payload = text[:-1] + b",}"  # trailing comma
    elif kind == 8:
        payload = b""
    else:
        payload = text + text  # two objects in one record
    return payload, "bad_json"


def _not_object(ctr: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    return orjson.dumps(rng.choice([[ctr], "a CTR", 42, None, True, [], 3.14])), "not_an_object"


def _schema(ctr: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    kind = rng.randrange(12)
    if kind == 0:
        del ctr[rng.choice(["ContactId", "InstanceARN", "LastUpdateTimestamp", "InitiationMethod"])]
    elif kind == 1:
        ctr["ContactId"] = rng.choice([42, None, [], {"id": "x"}, True])
    elif kind == 2:
        ctr["LastUpdateTimestamp"] = rng.choice(
            [1_700_000_000, "yesterday", "2026-05-01", "2026-05-01T10:00:00"]
        )
    elif kind == 3:
        ctr["Agent"] = rng.choice(["agent", 7, ["x"]])
    elif kind == 4:
        ctr["Recordings"] = rng.choice([{"Location": "x"}, "s3://x", [1, 2]])
    elif kind == 5:
        ctr["Recordings"] = [{"Location": f"b/k{i}.wav"} for i in range(65)]
    elif kind == 6:
        ctr["ContactId"] = "c" * 300
    elif kind == 7:
        ctr["InstanceARN"] = "arn:" + "x" * 600
    elif kind == 8:
        ctr["ContactId"] = rng.choice(["ｃｏｎｔａｃｔ", "has space", "emoji📞", "semi;colon", "\u202eid"])
    elif kind == 9:
        ctr["CustomerEndpoint"] = rng.choice([["+14155550100"], "+14155550100", 14155550100])
    elif kind == 10:
        ctr["Agent"] = {"Username": _deep(rng.randint(20, 250))}  # deep, where a string belongs
    else:
        ctr["Agent"] = {"AgentInteractionDuration": rng.choice([-5, "60", 1e12])}
    return orjson.dumps(ctr), "schema"


def _bad_timestamp(ctr: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    field_name = rng.choice(["LastUpdateTimestamp", "InitiationTimestamp", "DisconnectTimestamp"])
    ctr[field_name] = rng.choice(
        ["2026-02-30T10:00:00Z", "2026-13-01T00:00:00Z", "2026-01-01T25:00:00Z", "2026-04-31T23:59:60Z"]
    )
    return orjson.dumps(ctr), "bad_timestamp"


def _absurd_timestamp(ctr: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    field_name = rng.choice(["LastUpdateTimestamp", "InitiationTimestamp", "DisconnectTimestamp"])
    ctr[field_name] = rng.choice(
        ["1970-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2101-01-01T00:00:00Z", "1999-12-31T23:59:59+14:00"]
    )
    return orjson.dumps(ctr), "absurd_timestamp"


def _foreign(ctr: dict[str, Any], rng: random.Random) -> tuple[bytes, str]:
    ctr["InstanceARN"] = OTHER_INSTANCE
    ctr["ContactId"] = f"foreign-{rng.getrandbits(64):x}"
    return orjson.dumps(ctr), "foreign_instance"


def notification_corpus(count: int, bucket: str, rng: random.Random) -> list[Hostile]:
    """``count`` hostile SQS message bodies for the recordings queue (SQS takes them as sent)."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket}, "object": {"key": "connect/x/CallRecordings/a.wav", "size": 10}},
    }
    out: list[Hostile] = []
    for i in range(count):
        kind = rng.randrange(12)
        if kind == 0:
            body, reason = "not json at all " + rng.choice(SQS_TEXT), "bad_json"
        elif kind == 1:
            body, reason = orjson.dumps({"Records": [record]}).decode()[: rng.randint(1, 60)], "bad_json"
        elif kind == 2:
            body, reason = orjson.dumps({"Type": "Notification", "Message": "{broken"}).decode(), "bad_json"
        elif kind == 3:
            body, reason = "x" * rng.randint(100_000, 250_000), "bad_json"  # large, near SQS's 256 KiB
        elif kind == 4:
            body, reason = orjson.dumps({"Records": rng.choice(["x", [], {}, [1]])}).decode(), "schema"
        elif kind == 5:
            broken = orjson.loads(orjson.dumps(record))
            del broken["s3"]["object"]["key"]
            body, reason = orjson.dumps({"Records": [broken]}).decode(), "schema"
        elif kind == 6:
            broken = orjson.loads(orjson.dumps(record))
            broken["s3"]["object"]["size"] = rng.choice([-1, "10", 1.5])
            body, reason = orjson.dumps({"Records": [broken]}).decode(), "schema"
        elif kind == 7:
            body, reason = orjson.dumps(rng.choice([[record], "s3", 7, None])).decode(), "schema"
        elif kind == 8:
            body, reason = orjson.dumps({"Event": "s3:SomethingElse", "Bucket": bucket}).decode(), "schema"
        elif kind == 9:
            wrapped = {"Type": "Notification", "Message": orjson.dumps({"Records": "nope"}).decode()}
            body, reason = orjson.dumps(wrapped).decode(), "schema"
        elif kind == 10:
            body, reason = orjson.dumps({"Records": [record] * 101}).decode(), "schema"  # over 100 records
        else:
            body, reason = (
                orjson.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": _deep(200)}]}).decode(),
                "schema",
            )
        out.append(Hostile(body.encode(), reason, f"n{i}"))
    return out
