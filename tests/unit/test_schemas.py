"""Every sample validates against its schema (with the reference validator), and every
contact we emit validates against the QM contact schema."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from jsonschema import Draft7Validator

from processor.core.ctr import ctr_from_object
from processor.core.ctr_files import iter_ctr_inputs
from processor.core.mapping import map_contact
from processor.core.schemas import load_schema, schema_dir
from processor.devtools.simulated_centre import build_scenario


def strip_comments(text: str) -> str:
    """Remove // comments outside strings (the AWS docs samples are JSONC)."""
    out: list[str] = []
    i, in_string = 0, False
    while i < len(text):
        c = text[i]
        if in_string:
            if c == "\\":
                out.append(text[i : i + 2])
                i += 2
                continue
            in_string = c != '"'
        elif c == '"':
            in_string = True
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = len(text) if end < 0 else end
            continue
        out.append(c)
        i += 1
    return "".join(out)


@pytest.mark.parametrize("path", sorted(p.name for p in schema_dir().glob("*.schema.json")))
def test_schema_files_are_valid_draft7(path: str) -> None:
    Draft7Validator.check_schema(orjson.loads((schema_dir() / path).read_bytes()))


def test_ctr_samples(samples_dir: Path) -> None:
    validator = Draft7Validator(load_schema("ctr"))
    count = 0
    for path in sorted((samples_dir / "ctr").glob("*.json")):
        for item in iter_ctr_inputs([path.read_bytes()]):
            assert item.error is None
            validator.validate(item.value)
            count += 1
    assert count == 14


def test_emitted_contacts(samples_dir: Path) -> None:
    validator = Draft7Validator(load_schema("qm-contact"))
    for path in sorted((samples_dir / "ctr").glob("*.json")):
        for item in iter_ctr_inputs([path.read_bytes()]):
            validator.validate(map_contact(ctr_from_object(item.value)).to_dict())
    scenario = build_scenario(seed=3, contacts=60, start=datetime(2026, 1, 1, tzinfo=UTC))
    for payload in scenario.deliveries:
        validator.validate(map_contact(ctr_from_object(orjson.loads(payload))).to_dict())


def test_s3_notification_samples(samples_dir: Path) -> None:
    validator = Draft7Validator(load_schema("s3-notification"))
    folder = samples_dir / "s3-events"
    for name in (
        "powertools-s3Event.json",
        "powertools-s3EventDecodedKey.json",
        "powertools-s3SqsEvent-body-decoded.json",
        "sqs-trigger-lambda-node-s3-test-event.json",
    ):
        validator.validate(orjson.loads((folder / name).read_bytes()))
    lambda_event = orjson.loads((folder / "powertools-s3SqsEvent.json").read_bytes())
    for record in lambda_event["Records"]:
        validator.validate(orjson.loads(record["body"]))


def test_agent_event_samples(samples_dir: Path) -> None:
    validator = Draft7Validator(load_schema("agent-event"))
    folder = samples_dir / "agent-events"
    events = orjson.loads((folder / "aspect-wfm-quickstart-recorddata.json").read_bytes())
    assert len(events) == 11
    for event in events:
        validator.validate(event)
    wrapped = orjson.loads((folder / "aspect-wfm-quickstart-kinesisevent.json").read_bytes())
    for record in wrapped["Records"] if isinstance(wrapped, dict) else wrapped:
        for inner in record.get("Records", [record]):
            validator.validate(orjson.loads(base64.b64decode(inner["kinesis"]["data"])))
    # The AWS docs sample is documentation, not data: besides // comments and a trailing
    # comma it closes CurrentAgentSnapshot one brace early. Such input must be refused as
    # JSON (and quarantined by the consumer), not half-parsed.
    text = strip_comments((folder / "awsdocs-admin-guide-sample-agent-event-stream.jsonc").read_text())
    text = re.sub(r",(\s*[}\]])", r"\1", text)
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(text)
